package authz

import (
	"fmt"
	"strings"
	"testing"
)

// benchPolicy gives a thing 20 publish grants (the contract's sizing case), plus
// a deny rule that every publish is checked against first.
func benchPolicy(tb testing.TB) *Policy {
	tb.Helper()
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range 18 {
		fmt.Fprintf(&b, "  - {effect: allow, actions: [publish, subscribe], topics: [\"things/{sub}/telemetry/sensor%d/#\"], scopes: [publish], max_qos: 1}\n", i)
	}
	b.WriteString("  - {effect: allow, actions: [publish], topics: [\"things/{sub}/state\"], scopes: [publish], retain: true}\n")
	b.WriteString("  - {effect: allow, actions: [publish, subscribe], topics: [\"fleet/{claim.site}/+/{client_id}/#\"], scopes: [publish]}\n")
	b.WriteString("  - {effect: deny, actions: [publish, subscribe], topics: [\"things/+/firmware/#\"]}\n")
	return mustParse(tb, b.String())
}

func benchSubject() Subject {
	return Subject{ID: "thermostat-1", ClientID: "thermostat-1-c", Scopes: []string{"publish", "subscribe"},
		Claims: map[string]any{"site": "paris"}}
}

// BenchmarkAllow measures the per-message decision with 20 grants: a topic the
// last grant allows (all others scanned), and a topic nothing allows.
func BenchmarkAllow(b *testing.B) {
	g := benchPolicy(b).Compile(benchSubject())
	if n := len(g.actions[Publish].grants); n != 21 {
		b.Fatalf("%d publish grants, want 20 allow and 1 deny", n)
	}
	cases := []struct {
		name, topic string
		want        bool
	}{
		{"last-grant", "fleet/paris/zone-3/thermostat-1-c/setpoint", true},
		{"first-grant", "things/thermostat-1/telemetry/sensor0/temperature", true},
		{"default-deny", "things/thermostat-2/telemetry/sensor17/temperature", false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if d := g.Allow(Publish, c.topic, 1, false); d.Allowed != c.want {
				b.Fatalf("Allow(%q) = %+v", c.topic, d)
			}
			b.ReportAllocs()
			for b.Loop() {
				g.Allow(Publish, c.topic, 1, false)
			}
		})
	}
}

// BenchmarkSubscribe measures a subscribe decision (subsumption over 19
// subscribe grants and a deny), plain and shared.
func BenchmarkSubscribe(b *testing.B) {
	g := benchPolicy(b).Compile(benchSubject())
	for _, c := range []struct{ name, filter string }{
		{"plain", "fleet/paris/+/thermostat-1-c/#"},
		{"shared", "$SHARE/g/fleet/paris/+/thermostat-1-c/#"},
	} {
		b.Run(c.name, func(b *testing.B) {
			if d := g.Allow(Subscribe, c.filter, 1, false); !d.Allowed {
				b.Fatalf("Allow(%q) = %+v", c.filter, d)
			}
			b.ReportAllocs()
			for b.Loop() {
				g.Allow(Subscribe, c.filter, 1, false)
			}
		})
	}
}

// BenchmarkSubsumes measures one filter-in-filter check.
func BenchmarkSubsumes(b *testing.B) {
	f := mustFilter(b, "things/thermostat-1/telemetry/#")
	b.ReportAllocs()
	for b.Loop() {
		if !f.subsumes("things/thermostat-1/telemetry/+/celsius") {
			b.Fatal("not subsumed")
		}
	}
}

// BenchmarkCompile measures the once-per-session cost.
func BenchmarkCompile(b *testing.B) {
	pol := benchPolicy(b)
	s := benchSubject()
	b.ReportAllocs()
	for b.Loop() {
		pol.Compile(s)
	}
}

// TestAllowDoesNotAllocate keeps the hot path allocation-free in ordinary test runs.
func TestAllowDoesNotAllocate(t *testing.T) {
	g := benchPolicy(t).Compile(benchSubject())
	calls := []func(){
		func() { g.Allow(Publish, "fleet/paris/zone-3/thermostat-1-c/setpoint", 1, false) },
		func() { g.Allow(Publish, "things/thermostat-1/telemetry/sensor0/t", 2, true) },
		func() { g.Allow(Receive, "things/thermostat-1/telemetry/sensor3/t", 0, false) },
		func() { g.Allow(Subscribe, "$share/g/things/thermostat-1/telemetry/sensor4/+", 1, false) },
		func() { g.Allow(Subscribe, "things/+/firmware/#", 1, false) },
	}
	for i, call := range calls {
		if n := testing.AllocsPerRun(100, call); n != 0 {
			t.Errorf("call %d: %v allocations per run", i, n)
		}
	}
}
