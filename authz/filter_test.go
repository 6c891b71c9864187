package authz

import (
	"strings"
	"testing"
)

// mustFilter builds a table holding the literal filters fs (no placeholders),
// grant i from fs[i].
func mustFilter(t testing.TB, fs ...string) *table {
	t.Helper()
	tb := &table{}
	for _, f := range fs {
		if !validFilter(f) {
			t.Fatalf("test filter %q is invalid", f)
		}
		tb.add(grant{rule: &Rule{Effect: Allow, MaxQoS: 2}}, strings.Split(f, "/"))
	}
	tb.finish()
	return tb
}

// firstMatch returns the earliest (allow) grant of tb matching the valid topic, or -1.
func (t *table) firstMatch(topic string) int32 {
	s := newSearch(t, modeAny)
	t.root.walk(&s, topic, 0, true)
	return s.best
}

// firstCover returns the earliest grant of tb subsuming the valid filter r, or -1.
func (t *table) firstCover(r string) int32 {
	s := newSearch(t, modeAny)
	t.root.walk(&s, r, 0, true)
	return s.best
}

func (t *table) matchTopic(topic string) bool { return t.firstMatch(topic) >= 0 }

func (t *table) subsumes(r string) bool { return t.firstCover(r) >= 0 }

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/bc", false},
		{"a/b", "a", false},
		{"a/b", "a/b/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "ab/c", false},
		{"#", "a", true},
		{"#", "/", true},
		{"#", "$SYS/x", false},
		{"+/#", "$SYS/x", false},
		{"+/#", "a", true},
		{"+", "$SYS", false},
		{"+/x", "$a/x", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"$SYS/+", "$SYS/a", true},
		{"a/+/c", "a/$b/c", true},
		{"/+", "/x", true},
		{"/+", "x", false},
		{"/#", "/", true},
		{"+/+", "/", true},
		{"+/+", "a", false},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"things/t1/telemetry/#", "things/t1/telemetry/temp", true},
		{"things/t1/telemetry/#", "things/t10/telemetry/temp", false},
	}
	for _, tt := range tests {
		f := mustFilter(t, tt.filter)
		if got := f.matchTopic(tt.topic); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
		if got := refMatch(tt.filter, tt.topic); got != tt.want {
			t.Errorf("reference: %q matches %q = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestSubsumes(t *testing.T) {
	tests := []struct {
		grant, requested string
		want             bool
	}{
		// the issue's own example
		{"things/t1/telemetry/#", "things/t1/telemetry/+", true},
		{"things/t1/telemetry/#", "things/+/telemetry/#", false},
		{"things/t1/telemetry/#", "#", false},
		{"things/t1/telemetry/#", "things/t1/telemetry/#", true},
		{"things/t1/telemetry/#", "things/t1/telemetry", true},
		{"things/t1/telemetry/#", "things/t1/telemetry/a/b/+", true},
		{"things/t1/telemetry/#", "things/t1/+", false},
		{"things/t1/telemetry/#", "things/t1/#", false},
		{"things/t1/telemetry/#", "things/t10/telemetry/x", false},
		{"things/t1/telemetry/#", "things/t1/telemetryx", false},
		// literal grants cover only themselves
		{"a/b", "a/b", true},
		{"a/b", "a/+", false},
		{"a/b", "a/#", false},
		{"a/b", "a", false},
		{"a/b", "a/b/c", false},
		// '+' covers '+' and literals, never '#'
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/+/c", true},
		{"a/+/c", "a/b/+", false},
		{"+/+", "a/+", true},
		{"+/+", "+/b", true},
		// '#' covers anything at or below its level
		{"a/#", "a/+/c/#", true},
		{"a/#", "a", true},
		{"a/#", "+/b", false},
		{"#", "a/b/#", true},
		{"#", "+", true},
		{"#", "+/#", true},
		{"#", "#", true},
		{"+/#", "#", true},
		{"+/#", "a/b", true},
		{"+", "#", false},
		{"+", "a/b", false},
		// $ topics: first-level wildcards never cover them
		{"#", "$SYS/#", false},
		{"#", "$SYS/broker/uptime", false},
		{"+/#", "$SYS/#", false},
		{"+/broker", "$SYS/broker", false},
		{"$SYS/#", "$SYS/broker/+", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/#", "#", false},
		{"$SYS/#", "+/broker", false},
		{"$SYS/broker/#", "$SYS/#", false},
		{"a/+", "a/$b", true},
		// empty levels are levels
		{"/+", "/x", true},
		{"/+", "x", false},
		{"+/+", "/", true},
		{"a//#", "a//b", true},
		{"a//#", "a/b", false},
	}
	for _, tt := range tests {
		f := mustFilter(t, tt.grant)
		if got := f.subsumes(tt.requested); got != tt.want {
			t.Errorf("%q subsumes %q = %v, want %v", tt.grant, tt.requested, got, tt.want)
		}
		if witness, found := counterexample(tt.grant, tt.requested); found == tt.want {
			t.Errorf("brute force disagrees on %q ⊇ %q (witness %q)", tt.grant, tt.requested, witness)
		}
	}
}

func TestValidFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   bool
	}{
		{"a", true}, {"/", true}, {"#", true}, {"+", true}, {"a/+/#", true}, {"+/+/+", true}, {"$share", true},
		{"", false}, {"a#", false}, {"a/#/b", false}, {"a+/b", false}, {"a/b+", false}, {"##", false},
		{"a/\x00", false}, {"#/", false}, {"++", false},
	}
	for _, tt := range tests {
		if got := validFilter(tt.filter); got != tt.want {
			t.Errorf("validFilter(%q) = %v, want %v", tt.filter, got, tt.want)
		}
	}
}

func TestSplitShare(t *testing.T) {
	tests := []struct {
		in, group, inner string
		shared, ok       bool
	}{
		{"a/b", "", "a/b", false, true},
		{"$share/g/a/#", "g", "a/#", true, true},
		{"$SHARE/g/a", "g", "a", true, true},
		{"$ShArE/workers/things/+/state", "workers", "things/+/state", true, true},
		{"$share/g/", "", "", true, false},
		{"$share//a", "", "", true, false},
		{"$share/g", "", "", true, false},
		{"$share/+/a", "", "", true, false},
		{"$share/#/a", "", "", true, false},
		{"$sharex/g/a", "", "$sharex/g/a", false, true},
		{"$shar", "", "$shar", false, true},
	}
	for _, tt := range tests {
		group, inner, shared, ok := splitShare(tt.in)
		if group != tt.group || inner != tt.inner || shared != tt.shared || ok != tt.ok {
			t.Errorf("splitShare(%q) = %q, %q, %v, %v; want %q, %q, %v, %v",
				tt.in, group, inner, shared, ok, tt.group, tt.inner, tt.shared, tt.ok)
		}
	}
}
