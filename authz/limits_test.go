package authz

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// lim0 is a valid policy prefix with an empty limits section after it; tests
// append entries. The entries start at line 3.
const lim0 = "rules: []\nlimits:\n"

func TestLimitParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // exact error lines
	}{
		{"limits not a list", "rules: []\nlimits: {a: 1}\n", []string{"p.yaml:2:9: limits must be a list of entries"}},
		{"entry not a mapping", lim0 + "  - 5\n", []string{"p.yaml:3:5: a limit entry must be a mapping"}},
		{"unknown key", lim0 + "  - publish: 5\n", []string{`p.yaml:3:5: unknown key "publish" in a limit entry (known: name, anonymous, scopes, all_scopes, claims, subjects, require_bound_token, connects, publishes, publish_burst, publish_bytes, publish_bytes_burst, subscriptions, sessions, inflight, flood_grace)`}},
		{"no limit", lim0 + "  - name: x\n    scopes: [a]\n", []string{"p.yaml:3:5: limit entry sets no limit (known: connects, publishes, publish_burst, publish_bytes, publish_bytes_burst, subscriptions, sessions, inflight, flood_grace, require_bound_token)"}},
		{"zero count", lim0 + "  - sessions: 0\n", []string{"p.yaml:3:15: sessions must be a whole number from 1 to 1073741824, not 0"}},
		{"negative count", lim0 + "  - subscriptions: -3\n", []string{"p.yaml:3:20: subscriptions must be a whole number from 1 to 1073741824, not -3"}},
		{"count as string", lim0 + "  - sessions: \"3\"\n", []string{"p.yaml:3:15: sessions must be a whole number from 1 to 1073741824"}},
		{"inflight above receive maximum", lim0 + "  - inflight: 70000\n", []string{"p.yaml:3:15: inflight must be a whole number from 1 to 65535, not 70000"}},
		{"rate zero", lim0 + "  - publishes: 0\n", []string{`p.yaml:3:16: publishes must be a number per second from 0.001 to 1073741824, not "0"`}},
		{"rate text", lim0 + "  - publishes: fast\n", []string{`p.yaml:3:16: publishes must be a number per second from 0.001 to 1073741824, not "fast"`}},
		{"rate nan", lim0 + "  - publishes: .nan\n", []string{`p.yaml:3:16: publishes must be a number per second from 0.001 to 1073741824, not ".nan"`}},
		{"connects without interval", lim0 + "  - connects: 10\n", []string{`p.yaml:3:15: connects must be "COUNT/INTERVAL", like "10/1m" (1 to 1073741824 per 1s to 24h)`}},
		{"connects bad interval", lim0 + "  - connects: 10/1ms\n", []string{`p.yaml:3:15: connects must be "COUNT/INTERVAL", like "10/1m" (1 to 1073741824 per 1s to 24h), not "10/1ms"`}},
		{"connects bad count", lim0 + "  - connects: x/1m\n", []string{`p.yaml:3:15: connects must be "COUNT/INTERVAL", like "10/1m" (1 to 1073741824 per 1s to 24h), not "x/1m"`}},
		{"burst without rate", lim0 + "  - publish_burst: 5\n", []string{"p.yaml:3:5: publish_burst needs publishes in the same entry"}},
		{"bytes burst without bytes", lim0 + "  - publish_bytes_burst: 5\n", []string{"p.yaml:3:5: publish_bytes_burst needs publish_bytes in the same entry"}},
		{"bytes burst tiny", lim0 + "  - publish_bytes: 1000000\n    publish_bytes_burst: 10\n", []string{"p.yaml:4:26: publish_bytes_burst 10 is less than a millisecond of publish_bytes"}},
		{"flood grace bad", lim0 + "  - flood_grace: soon\n", []string{`p.yaml:3:18: flood_grace must be a duration from 0s (never disconnect) to 1h0m0s, like 10s, not "soon"`}},
		{"flood grace too long", lim0 + "  - flood_grace: 2h\n", []string{`p.yaml:3:18: flood_grace must be a duration from 0s (never disconnect) to 1h0m0s, like 10s, not "2h"`}},
		{"anonymous false", lim0 + "  - anonymous: false\n    sessions: 1\n", []string{"p.yaml:3:16: anonymous: false is the default; remove the key"}},
		{"require_bound_token not a bool", lim0 + "  - subjects: [a]\n    require_bound_token: yes please\n", []string{"p.yaml:4:26: require_bound_token must be true or false"}},
		{"anonymous requiring a bound token", lim0 + "  - anonymous: true\n    require_bound_token: true\n", []string{"p.yaml:4:5: require_bound_token has no meaning for anonymous clients (they have no token)"}},
		{"anonymous with conditions", lim0 + "  - anonymous: true\n    scopes: [a]\n    sessions: 1\n", []string{"p.yaml:4:5: scopes has no meaning for anonymous clients (they have no token)"}},
		{"subject with slash", lim0 + "  - subjects: [a/b]\n    sessions: 1\n", []string{`p.yaml:3:16: subject pattern "a/b": a thing id, or a prefix ending in a single '*' (no / + # or control characters)`}},
		{"subject inner star", lim0 + "  - subjects: [\"a*b\"]\n    sessions: 1\n", []string{`p.yaml:3:16: subject pattern "a*b": a thing id, or a prefix ending in a single '*' (no / + # or control characters)`}},
		{"subject twice", lim0 + "  - subjects: [a, a]\n    sessions: 1\n", []string{`p.yaml:3:19: "a" listed twice in subjects`}},
		{"same selector twice", lim0 + "  - scopes: [a, b]\n    sessions: 1\n  - scopes: [b, a]\n    publishes: 1\n", []string{
			"p.yaml:5:5: limit entry selects the same identities as the entry at line 3; merge the two"}},
		{"name twice", lim0 + "  - {name: x, sessions: 1}\n  - {name: x, scopes: [a], sessions: 2}\n", []string{
			`p.yaml:4:5: limit entry name "x" already used by the entry at line 3`}},
		{"bad claim", lim0 + "  - claims: {\"a.\": b}\n    sessions: 1\n", []string{`p.yaml:3:14: claim path "a." has an empty step: write NAME or NAME.MEMBER`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.src))
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse = %v, want an ErrorList", err)
			}
			got := strings.Split(list.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

const limitPolicy = `rules: []
limits:
  - name: everyone
    connects: 10/1m
    publishes: 10
    subscriptions: 50
    sessions: 2
    flood_grace: 10s
  - name: gateways
    claims: {thingType: gateway}
    publishes: 200
    publish_burst: 400
    sessions: 20
  - name: fleet-prefix
    subjects: ["fleet-*"]
    publishes: 50
  - name: fleet-long-prefix
    subjects: ["fleet-eu-*"]
    publishes: 60
  - name: one-thing
    subjects: [fleet-eu-7, other]
    publish_bytes: 2048
    publishes: 1
  - name: writers
    scopes: [publish]
    all_scopes: [write]
    inflight: 8
    flood_grace: 0s
  - name: anon
    anonymous: true
    publishes: 0.5
    sessions: 1
`

func TestLimitsResolve(t *testing.T) {
	pol, err := Parse("p.yaml", []byte(limitPolicy))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		publishes float64
		burst     int
		sessions  int
		bytes     int
		inflight  int
		grace     time.Duration
		fromPub   string // name of the entry the publish rate came from
	}
	tests := []struct {
		name string
		s    Subject
		want want
	}{
		{"default entry", Subject{ID: "t1"}, want{10, 10, 2, 0, 0, 10 * time.Second, "everyone"}},
		{"claim beats none", Subject{ID: "gw", Claims: map[string]any{"thingType": "gateway"}}, want{200, 400, 20, 0, 0, 10 * time.Second, "gateways"}},
		{"prefix beats claim", Subject{ID: "fleet-1", Claims: map[string]any{"thingType": "gateway"}}, want{50, 50, 20, 0, 0, 10 * time.Second, "fleet-prefix"}},
		{"longer prefix wins", Subject{ID: "fleet-eu-1"}, want{60, 60, 2, 0, 0, 10 * time.Second, "fleet-long-prefix"}},
		{"exact beats prefix", Subject{ID: "fleet-eu-7"}, want{1, 1, 2, 2048, 0, 10 * time.Second, "one-thing"}},
		{"all conditions", Subject{ID: "t2", Scopes: []string{"publish", "write"}}, want{10, 10, 2, 0, 8, FloodGraceNever, "everyone"}},
		{"all_scopes unmet", Subject{ID: "t2", Scopes: []string{"publish"}}, want{10, 10, 2, 0, 0, 10 * time.Second, "everyone"}},
		{"anonymous", Subject{ClientID: "c", Anonymous: true}, want{0.5, 1, 1, 0, 0, 0, "anon"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := pol.Limits(tt.s)
			got := want{l.Publishes, l.PublishBurst, l.Sessions, l.PublishBytes, l.Inflight, l.FloodGrace, l.From[LimitPublishes].Name}
			if got != tt.want {
				t.Fatalf("limits = %+v, want %+v", got, tt.want)
			}
			if l.PublishBytes > 0 && l.PublishBytesBurst != l.PublishBytes {
				t.Fatalf("bytes burst = %d, want one second's worth %d", l.PublishBytesBurst, l.PublishBytes)
			}
		})
	}
	if l := pol.Limits(Subject{ID: "t1"}); l.Connects != 10 || l.ConnectsPer != time.Minute || l.Value(LimitConnects) != "10/1m0s" {
		t.Fatalf("connects = %d/%s (%q)", l.Connects, l.ConnectsPer, l.Value(LimitConnects))
	}
	if !strings.Contains(pol.Summary(), "limits: 7 entries") {
		t.Fatalf("summary %q does not count the limits", pol.Summary())
	}
}

func TestLimitsTieFileOrder(t *testing.T) {
	src := "rules: []\nlimits:\n  - {name: a, scopes: [x], sessions: 1}\n  - {name: b, claims: {k: v}, sessions: 2}\n"
	pol, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	l := pol.Limits(Subject{ID: "t", Scopes: []string{"x"}, Claims: map[string]any{"k": "v"}})
	if l.Sessions != 1 || l.From[LimitSessions].Name != "a" {
		t.Fatalf("equal specificity: got %d from %v, want the earlier entry a", l.Sessions, l.From[LimitSessions])
	}
	if l := pol.Limits(Subject{ID: "t"}); l.Set(LimitSessions) || l.Sessions != 0 {
		t.Fatalf("no entry selects t, yet sessions = %d", l.Sessions)
	}
}

func FuzzParseLimits(f *testing.F) {
	f.Add([]byte(limitPolicy))
	f.Add([]byte(lim0 + "  - {connects: 1/1s, subjects: [\"*\"], publish_bytes: 1, publish_bytes_burst: 1}\n"))
	f.Add([]byte(lim0 + "  - {anonymous: true, inflight: 65535, flood_grace: 0}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pol, err := Parse("f.yaml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %v", err)
			}
			for _, e := range list {
				if e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("unpositioned error %+v", e)
				}
			}
			return
		}
		for _, s := range []Subject{{ID: "fleet-eu-7", Scopes: []string{"publish"}}, {ID: ""}, {Anonymous: true}} {
			l := pol.Limits(s)
			for k := LimitKey(0); k < numLimitKeys; k++ {
				if l.Set(k) && !l.From[k].AppliesTo(s) {
					t.Fatalf("%s came from %s, which does not select %+v", k, l.From[k], s)
				}
				if l.Set(k) && l.Value(k) == "" {
					t.Fatalf("%s is set but renders empty", k)
				}
			}
			if l.Publishes > 0 && l.PublishBurst < 1 {
				t.Fatalf("publishes %g with burst %d", l.Publishes, l.PublishBurst)
			}
		}
	})
}
