package authz

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes the parser panic, that every error is
// positioned, and that whatever parses can be compiled and asked.
func FuzzParse(f *testing.F) {
	f.Add([]byte(testPolicy))
	f.Add([]byte(placeholderPolicy))
	f.Add([]byte("rules:\n  - {effect: allow, actions: [publish], topics: [\"a/{claim.x}/#\"], claims: {t: [1, true, s]}}\n"))
	f.Add([]byte("anonymous:\n  - {effect: allow, actions: [subscribe], topics: [\"p/{client_id}\"], share_groups: []}\n"))
	f.Add([]byte("x: &a [1]\ny: *a\n---\n"))
	f.Add([]byte("rules:\n\t- x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pol, err := Parse("f.yaml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %v", err)
			}
			for _, e := range list {
				if e.File != "f.yaml" || e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("unpositioned error %+v", e)
				}
			}
			return
		}
		if pol.Summary() == "" {
			t.Fatal("empty summary")
		}
		for _, s := range []Subject{
			{ID: "t1", ClientID: "c1", Scopes: []string{"publish", "subscribe"}, Claims: map[string]any{"x": "v", "t": []any{"s", 1.0}}},
			{ID: "+", ClientID: "#", Claims: map[string]any{"x": []any{"a/b"}}},
			{ClientID: "c1", Anonymous: true},
		} {
			g := pol.Compile(s)
			for _, a := range []Action{Publish, Subscribe, Receive} {
				g.Allow(a, "a/v/t1", 1, true)
				g.Allow(a, "$share/g/#", 0, false)
			}
			for _, sk := range g.Skipped() {
				if sk.Rule == nil || sk.Reason == "" {
					t.Fatalf("incomplete skip %+v", sk)
				}
			}
		}
	})
}

// FuzzMatch checks the trie matcher against the naive reference, with two
// filters sharing one trie: the earliest matching filter must be found.
func FuzzMatch(f *testing.F) {
	for _, seed := range [][3]string{
		{"a/+/c", "a/#", "a/b/c"}, {"#", "+", "$SYS/x"}, {"+/#", "a/+", "a"}, {"a/#", "a", "a"}, {"/+", "+/+", "/"},
		{"a//b", "a/+/b", "a//b"}, {"$SYS/#", "#", "$SYS"}, {"+/+", "+", "a"},
		{"things/t1/telemetry/#", "things/+/telemetry/+", "things/t10/telemetry"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, a, b, topic string) {
		if !validFilter(a) || !validFilter(b) || !validTopic(topic) {
			return
		}
		want := int32(-1)
		if refMatch(b, topic) {
			want = 1
		}
		if refMatch(a, topic) {
			want = 0
		}
		if got := mustFilter(t, a, b).firstMatch(topic); got != want {
			t.Fatalf("[%q, %q] on %q: first match %d, reference %d", a, b, topic, got, want)
		}
	})
}

// FuzzSubsume checks subsumption against brute force both ways: when a grant
// subsumes the requested filter, no topic the requested filter matches escapes
// it (fresh-level witnesses plus a topic built from the fuzzer's levels); when
// it does not, a witness topic proves it. Two grants share one trie, and the
// earliest covering one must be found.
func FuzzSubsume(f *testing.F) {
	for _, seed := range [][4]string{
		{"things/t1/telemetry/#", "things/+/telemetry/+", "things/t1/telemetry/+", "x/y"},
		{"things/t1/telemetry/#", "a", "things/+/telemetry/#", "t2/z"},
		{"#", "$SYS/+", "$SYS/#", "a"}, {"+/#", "+", "#", "$x/b"}, {"a/+", "a/b/#", "a/#", "b/c"},
		{"$SYS/#", "+", "$SYS", ""}, {"+/+", "/#", "/", "/"}, {"a//#", "a/+/b", "a//b", "c"}, {"/+", "+", "+", "x"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, a, b, requested, fill string) {
		if !validFilter(a) || !validFilter(b) || !validFilter(requested) {
			return
		}
		tb := mustFilter(t, a, b)
		first := tb.firstCover(requested)
		want := int32(-1)
		for i, g := range []string{a, b} {
			witness, found := counterexample(g, requested)
			covered := mustFilter(t, g).subsumes(requested)
			if covered && found {
				t.Fatalf("%q subsumes %q, yet %q matches only the latter", g, requested, witness)
			}
			if !covered && !found {
				t.Fatalf("%q does not subsume %q, yet no witness topic exists", g, requested)
			}
			if covered {
				topic := fillFilter(requested, strings.Split(fill, "/"))
				if validTopic(topic) && refMatch(requested, topic) && !refMatch(g, topic) {
					t.Fatalf("%q subsumes %q, yet %q matches only the latter", g, requested, topic)
				}
				if want < 0 {
					want = int32(i)
				}
			}
		}
		if first != want {
			t.Fatalf("[%q, %q] covering %q: first %d, want %d", a, b, requested, first, want)
		}
	})
}

// fillFilter builds a topic from filter r: each '+' takes the next fill level,
// '#' takes all remaining ones.
func fillFilter(r string, fill []string) string {
	var out []string
	next := 0
	for _, lv := range strings.Split(r, "/") {
		switch lv {
		case "+":
			if next < len(fill) {
				out = append(out, fill[next])
				next++
			} else {
				out = append(out, "x")
			}
		case "#":
			if next < len(fill) {
				out = append(out, fill[next:]...)
			}
			next = len(fill)
		default:
			out = append(out, lv)
		}
	}
	return strings.Join(out, "/")
}
