package main

import (
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"imb/loadtest/wire"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		run     bool
		args    []string
		wantErr string
		check   func(t *testing.T, o Options)
	}{
		{name: "defaults per scenario", args: []string{"--scenario", "connect"}, check: func(t *testing.T, o Options) {
			if o.Clients != 1000 || o.QoS != 1 || !slices.Equal(o.Targets, defaultTargets) || o.MQTT != "5" {
				t.Errorf("clients %d qos %d targets %v mqtt %q", o.Clients, o.QoS, o.Targets, o.MQTT)
			}
		}},
		{name: "things is clients", args: []string{"--scenario", "memory", "--things", "123"}, check: func(t *testing.T, o Options) {
			if o.Clients != 123 {
				t.Errorf("clients %d", o.Clients)
			}
		}},
		{name: "target list", args: []string{"--targets", "baseline, mosquitto"}, check: func(t *testing.T, o Options) {
			if strings.Join(o.Targets, "|") != "baseline|mosquitto" {
				t.Errorf("targets %v", o.Targets)
			}
		}},
		{name: "mqtt 3.1.1 for every target", args: []string{"--mqtt", "3.1.1", "--targets", "imb-jwt,mosquitto,rabbitmq-oauth2"}, check: func(t *testing.T, o Options) {
			for _, tg := range o.Targets {
				if v := o.mqttVersion(tg); v != wire.V311 {
					t.Errorf("%s: version %d, want 3.1.1", tg, v)
				}
			}
		}},
		{name: "mqtt 5 except where a target has only 3.1.1", args: []string{"--mqtt", "5", "--targets", "imb-jwt,mosquitto,rabbitmq-oauth2"}, check: func(t *testing.T, o Options) {
			want := map[string]byte{targetJWT: wire.V5, targetMosquitto: wire.V5, targetRabbitMQ: wire.V311}
			for _, tg := range o.Targets {
				if v := o.mqttVersion(tg); v != want[tg] {
					t.Errorf("%s: version %d, want %d", tg, v, want[tg])
				}
			}
		}},
		{name: "mqtt 4 is not a version name", args: []string{"--mqtt", "4"}, wantErr: `--mqtt "4": want 5 or 3.1.1`},
		{name: "unknown scenario", args: []string{"--scenario", "flood"}, wantErr: `--scenario "flood"`},
		{name: "unknown target", args: []string{"--targets", "emqx"}, wantErr: `unknown target "emqx"`},
		{name: "qos 2", args: []string{"--qos", "2"}, wantErr: "--qos 2"},
		{name: "payload too small for the timestamp", args: []string{"--payload", "4"}, wantErr: "--payload 4"},
		{name: "unbounded", args: []string{"--duration", "0"}, wantErr: "--duration"},
		{name: "remote url refused", run: true, args: []string{"--url", "mqtt://10.1.2.3:1883"}, wantErr: "--allow-remote"},
		{name: "remote url allowed", run: true, args: []string{"--url", "mqtt://10.1.2.3:1883", "--allow-remote"}},
		{name: "loopback url", run: true, args: []string{"--url", "mqtt://127.0.0.1:1883"}},
		{name: "url without scheme", run: true, args: []string{"--url", "127.0.0.1:1883"}, wantErr: "want mqtt://HOST:PORT"},
		{name: "bad auth", run: true, args: []string{"--url", "mqtt://127.0.0.1:1883", "--auth", "basic"}, wantErr: "--auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions("test", tt.args, io.Discard, tt.run)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}
}

func TestSummarizeMediansAndRatios(t *testing.T) {
	runs := []Run{
		{Target: "baseline", Values: map[string]float64{"rate": 100, "lat": 2}},
		{Target: "baseline", Values: map[string]float64{"rate": 300, "lat": 4}},
		{Target: "baseline", Values: map[string]float64{"rate": 200, "lat": 3}},
		{Target: "x", Values: map[string]float64{"rate": 150, "lat": 6}, Errors: map[string]int64{"connack 0x86": 2}},
		{Target: "x", Values: map[string]float64{"rate": 170, "lat": 0}},
		{Target: "x", Failure: "broker exited", Errors: map[string]int64{"connack 0x86": 1}},
	}
	got := summarize(runs, []string{"baseline", "x"}, "baseline")
	tests := []struct {
		target, key    string
		median, ratio  float64
		runs, failures int
	}{
		{"baseline", "rate", 200, 1, 3, 0},
		{"baseline", "lat", 3, 1, 3, 0},
		{"x", "rate", 160, 0.8, 3, 1},
		{"x", "lat", 3, 1, 3, 1},
	}
	for _, tt := range tests {
		var s *Summary
		for i := range got {
			if got[i].Target == tt.target {
				s = &got[i]
			}
		}
		if s == nil {
			t.Fatalf("no summary for %s", tt.target)
		}
		if s.Median[tt.key] != tt.median || math.Abs(s.Ratio[tt.key]-tt.ratio) > 1e-12 || s.Runs != tt.runs || s.Failed != tt.failures {
			t.Errorf("%s %s: median %g ratio %g runs %d failed %d; want %g %g %d %d", tt.target, tt.key,
				s.Median[tt.key], s.Ratio[tt.key], s.Runs, s.Failed, tt.median, tt.ratio, tt.runs, tt.failures)
		}
	}
	if got[1].Errors["connack 0x86"] != 3 {
		t.Errorf("errors of failed runs not counted: %v", got[1].Errors)
	}
}

func TestReadProcSelf(t *testing.T) {
	st, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RSSBytes < 1<<20 || st.CPUSeconds < 0 {
		t.Fatalf("own process: rss %d cpu %g", st.RSSBytes, st.CPUSeconds)
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

func TestCheckFDs(t *testing.T) {
	if err := checkFDs(10); err != nil {
		t.Fatal(err)
	}
	err := checkFDs(1 << 30)
	if err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Fatalf("err = %v", err)
	}
}
