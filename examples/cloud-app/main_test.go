package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"imb/examples/internal/examplestest"
	"imb/sdk"
)

const tokenLifetime = 6 * time.Second

// thingPeer registers a thing by proof of possession and connects it (MQTT 5) to the broker,
// subscribed to its commands.
func thingPeer(t *testing.T, env *examplestest.Env, id string) *examplestest.Peer {
	t.Helper()
	client, err := sdk.NewClient(t.Context(), sdk.Config{BaseURL: env.URL()})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := sdk.GenerateKey(sdk.ES256)
	thing := client.NewThing("auth-reg-tree-pop", &sdk.Authenticator{ThingID: id, Key: key}, &sdk.Registrar{ThingID: id, Key: key})
	return examplestest.DialPeer(t, env, id, thing.TokenSource("publish", "subscribe"), false, "things/"+id+"/commands/#")
}

// The cloud application's session outlives two access tokens, re-authenticating (MQTT 5) or
// reconnecting (MQTT 3.1.1), receives every QoS 1 reading of a thing and sends it a command.
func TestSessionOutlivesTokens(t *testing.T) {
	for _, v311 := range []bool{false, true} {
		name := map[bool]string{false: "mqtt5", true: "mqtt311"}[v311]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := examplestest.Start(t, examplestest.Options{Broker: true, TokenLifetime: tokenLifetime})
			thingID := "sensor-" + name
			thing := thingPeer(t, env, thingID)

			const interval = 250 * time.Millisecond
			count := int(2*tokenLifetime/interval) + 8
			args := []string{"-url", env.URL(), "-broker", env.BrokerAddr(), "-count", fmt.Sprint(count),
				"-thing", thingID, "-command", `{"setpoint":22}`}
			if v311 {
				args = append(args, "-mqtt311")
			}
			p := examplestest.Launch(t, run, args...)
			p.Await(t, regexp.MustCompile(`^Subscribing to things/\+/telemetry/# and things/\+/state\.\.\. Done$`))
			published := make(chan error, 1)
			go func() { published <- publishReadings(t.Context(), thing, thingID, count, interval) }()

			out, err := p.Wait(t)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			if err := <-published; err != nil {
				t.Fatal(err)
			}
			for seq := 1; seq <= count; seq++ {
				line := fmt.Sprintf("things/%s/telemetry/temperature {\"seq\":%d}\n", thingID, seq)
				if !strings.Contains(out, line) {
					t.Fatalf("reading %d lost:\n%s", seq, out)
				}
			}
			for _, want := range []string{
				"Requesting access token for cloud-app... Done\nExpires in: 6\nScope(s): [fleet:read fleet:command]\n",
				"Sending {\"setpoint\":22} to things/" + thingID + "/commands/setpoint... Done\n",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			thing.AwaitMessages(t, "command", func(ms []examplestest.Message) bool {
				return len(ms) == 1 && ms[0] == examplestest.Message{Topic: "things/" + thingID + "/commands/setpoint", Payload: `{"setpoint":22}`}
			})
			env.CheckRenewals(t, v311)
		})
	}
}

func publishReadings(ctx context.Context, thing *examplestest.Peer, id string, count int, interval time.Duration) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for seq := 1; seq <= count; seq++ {
		// Reading 1 goes out twice, as a QoS 1 redelivery would: the application must not count
		// the repeat toward -count (it did, and stopped one reading short).
		for range 1 + boolInt(seq == 1) {
			if err := thing.Publish(ctx, "things/"+id+"/telemetry/temperature", false, fmt.Appendf(nil, `{"seq":%d}`, seq)); err != nil {
				return fmt.Errorf("reading %d: %w", seq, err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
	return nil
}

// Without the fleet:command scope imb refuses the command, and the application says so.
func TestCommandRefusedWithoutScope(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{Broker: true})
	thingID := "sensor-refused"
	thing := thingPeer(t, env, thingID)
	p := examplestest.Launch(t, run, "-url", env.URL(), "-broker", env.BrokerAddr(), "-scope", "fleet:read",
		"-thing", thingID, "-command", `{"setpoint":22}`)
	p.Await(t, regexp.MustCompile(`^Subscribing to .*\.\.\. Done$`))
	if err := thing.Publish(t.Context(), "things/"+thingID+"/telemetry/temperature", false, []byte(`{"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	out, err := p.Wait(t)
	if err == nil || !strings.Contains(out, "Scope(s): [fleet:read]\n") ||
		!strings.HasSuffix(out, "Sending {\"setpoint\":22} to things/"+thingID+"/commands/setpoint... Failed\n") {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
}

func TestBadCredentialsAndFlags(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	out, err := examplestest.Run(t, run, "-url", env.URL(), "-client-secret", "wrong")
	if err == nil || out != "Requesting access token for cloud-app... Failed\n" {
		t.Fatalf("wrong secret: err %v, output %q", err, out)
	}
	for _, args := range [][]string{{"-thing", "x"}, {"-command", "{}"}, {"-thing", "x", "-command", "{"}, {"-count", "-1"}} {
		if _, err := examplestest.Run(t, run, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
