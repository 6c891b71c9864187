package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"imb/examples/internal/examplestest"
)

var verificationLine = regexp.MustCompile(`^\t(http://\S+/oauth2/device/user\?user_code=\S+)$`)

// The seed's story end to end: device flow, HTTPS publish with the user's token, received by the
// cloud application over MQTT.
func TestTVPostsWhatItPlays(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{DevicePollInterval: time.Second, Broker: true, HTTPDoor: true})
	cloud := examplestest.CloudPeer(t, env, false, "things/+/telemetry/#")
	p := examplestest.Launch(t, run, "-url", env.URL(), "-door", env.DoorURL())
	link := p.Await(t, verificationLine)[1]
	if page, err := examplestest.DecideDevice(t.Context(), link, true); err != nil || !strings.Contains(page, "Access granted") {
		t.Fatalf("approval: %v\n%s", err, page)
	}
	out, err := p.Wait(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Waiting for approval... Done\nPosting to things/bjensen/telemetry/now-playing as bjensen... Done\n") {
		t.Fatalf("output:\n%s", out)
	}
	got := cloud.AwaitMessages(t, "the TV's post", func(m []examplestest.Message) bool { return len(m) > 0 })
	if got[0].Topic != "things/bjensen/telemetry/now-playing" || !strings.Contains(got[0].Payload, `"channel":7`) {
		t.Fatalf("cloud application got %+v", got)
	}
}

// A topic the user's grants do not cover is refused with 403, and nothing reaches the cloud.
func TestTVPostRefused(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{DevicePollInterval: time.Second, Broker: true, HTTPDoor: true})
	cloud := examplestest.CloudPeer(t, env, false, "things/+/telemetry/#")
	p := examplestest.Launch(t, run, "-url", env.URL(), "-door", env.DoorURL(), "-topic", "things/someone-else/telemetry/now-playing")
	link := p.Await(t, verificationLine)[1]
	if _, err := examplestest.DecideDevice(t.Context(), link, true); err != nil {
		t.Fatal(err)
	}
	out, err := p.Wait(t)
	if err == nil || !strings.Contains(out, "The door answered 403 not_authorized (MQTT reason 0x87)") {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if m := cloud.Messages(); len(m) != 0 {
		t.Fatalf("a refused post reached the cloud: %+v", m)
	}
}
