package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"imb/examples/internal/examplestest"
)

// tokenLifetime is short so that a session outlives two tokens within a few seconds.
const tokenLifetime = 6 * time.Second

// The thermostat's MQTT session outlives two access tokens, re-authenticating in the session (MQTT 5)
// or reconnecting (MQTT 3.1.1), and no QoS 1 reading is lost; it obeys the cloud's set-point command
// and ignores a malformed one.
func TestSessionOutlivesTokens(t *testing.T) {
	for _, v311 := range []bool{false, true} {
		name := map[bool]string{false: "mqtt5", true: "mqtt311"}[v311]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := examplestest.Start(t, examplestest.Options{Broker: true, TokenLifetime: tokenLifetime})
			thingID := "thermostat-" + name
			cloud := examplestest.CloudPeer(t, env, false, "things/"+thingID+"/telemetry/#", "things/"+thingID+"/state")

			const interval = 250 * time.Millisecond
			count := int(2*tokenLifetime/interval) + 8
			args := []string{"-url", env.URL(), "-broker", env.BrokerAddr(), "-name", thingID,
				"-interval", interval.String(), "-count", fmt.Sprint(count)}
			if v311 {
				args = append(args, "-mqtt311")
			}
			p := examplestest.Launch(t, run, args...)
			p.Await(t, regexp.MustCompile(`^Telemetry: `))

			ctx := t.Context()
			commands := "things/" + thingID + "/commands/setpoint"
			if err := cloud.Publish(ctx, commands, false, []byte(`{"setpoint":"warm"}`)); err != nil {
				t.Fatal(err)
			}
			if err := cloud.Publish(ctx, commands, false, []byte(`{"setpoint":23}`)); err != nil {
				t.Fatal(err)
			}
			out, err := p.Wait(t)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			for _, want := range []string{
				"Creating Thing " + thingID + "... Done\n",
				"Connecting to imb at tcp://" + env.BrokerAddr() + " with MQTT ",
				"Subscribing to things/" + thingID + "/commands/#... Done\n",
				"Command ignored: not a JSON command",
				"Command: set-point 23.0\nState: {\"setpoint\":23,\"heating\":true}\n",
				fmt.Sprintf("Stopped after %d messages\n", count),
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			if n := strings.Count(out, "Access token renewed, expires in "); n < 2 {
				t.Errorf("%d token renewals in %s, want at least 2", n, time.Duration(count)*interval)
			}

			seqs := map[int]bool{}
			var last Telemetry
			cloud.AwaitMessages(t, fmt.Sprintf("%d readings", count), func(ms []examplestest.Message) bool {
				for _, m := range ms {
					var r Telemetry
					if strings.HasSuffix(m.Topic, "/telemetry/temperature") && json.Unmarshal([]byte(m.Payload), &r) == nil {
						seqs[r.Seq] = true
						last = r
					}
				}
				return len(seqs) == count
			})
			if last.Setpoint != 23 {
				t.Errorf("last reading %+v, want set-point 23", last)
			}
			env.CheckRenewals(t, v311)
			// Over MQTT 5 the thermostat's tokens are bound to its key and proven with IMB-POP.
			bound := env.Metric(t, "imb_connects_total", map[string]string{"result": "accepted", "reason": "bound_key"})
			if want := map[bool]float64{false: 1, true: 0}[v311]; bound != want {
				t.Errorf("%v CONNECTs with a proven key-bound token, want %v", bound, want)
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		wantErr string
	}{
		{`{"setpoint":21}`, 21, ""},
		{`{"setpoint":5}`, 5, ""},
		{`{"setpoint":21.5,"extra":true}`, 21.5, ""},
		{`{"setpoint":4.9}`, 0, "outside"},
		{`{"setpoint":31}`, 0, "outside"},
		{`{"setpoint":"21"}`, 0, "not a JSON command"},
		{`{}`, 0, `no "setpoint"`},
		{`21`, 0, "not a JSON command"},
		{``, 0, "not a JSON command"},
	}
	for _, tt := range tests {
		got, err := parseCommand([]byte(tt.in))
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("parseCommand(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseCommand(%q) error %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}

// Commands come from the network: any input yields a set-point within range or an error.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{`{"setpoint":21}`, `{"setpoint":1e400}`, `{"setpoint":null}`, `[]`, `{"setpoint":-0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		sp, err := parseCommand(in)
		if err == nil && (sp < minSetpoint || sp > maxSetpoint) {
			t.Fatalf("parseCommand(%q) = %v without error", in, sp)
		}
	})
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-interval", "0"}, {"-count", "-1"}, {"-bogus"}, {"extra"}} {
		if _, err := examplestest.Run(t, run, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// Through the IoT Gateway (as imb dev --gateway runs it) the thermostat registers and gets its
// tokens over CoAP/DTLS and publishes to imb over MQTT as before; the cloud receives its readings.
func TestThroughGateway(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{Broker: true, GatewayTree: "auth-reg-tree"})
	const thingID = "thermostat-gw"
	cloud := examplestest.CloudPeer(t, env, false, "things/"+thingID+"/telemetry/#")
	out, err := examplestest.Run(t, run, "-url", env.GatewayURL(), "-broker", env.BrokerAddr(), "-name", thingID,
		"-interval", "100ms", "-count", "3")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	for _, want := range []string{"Creating Thing " + thingID + "... Done\n", "Stopped after 3 messages\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	cloud.AwaitMessages(t, "3 readings", func(ms []examplestest.Message) bool { return len(ms) >= 3 })
}
