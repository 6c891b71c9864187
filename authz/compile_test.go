package authz

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

const placeholderPolicy = `rules:
  - name: by-sub
    effect: allow
    actions: [publish]
    topics: ["s/{sub}/x"]
  - name: by-client
    effect: allow
    actions: [publish]
    topics: ["c/{client_id}"]
  - name: by-claim
    effect: allow
    actions: [publish]
    topics: ["k/{claim.site}/#"]
  - name: first-level
    effect: allow
    actions: [publish]
    topics: ["{sub}/y"]
  - name: deny-by-claim
    effect: deny
    actions: [publish]
    topics: ["k/{claim.blocked}/#"]
`

// TestPlaceholders fills every placeholder and tries to inject wildcards,
// separators, NUL, empty values and $-prefixed values through each.
func TestPlaceholders(t *testing.T) {
	pol := mustParse(t, placeholderPolicy)
	tests := []struct {
		name    string
		s       Subject
		topic   string
		allowed bool
		rule    string
		skipped string // substring of the first Skip, "" when none expected
	}{
		{"sub fills its level", Subject{ID: "t1", ClientID: "t1"}, "s/t1/x", true, "by-sub", ""},
		{"sub does not match others", Subject{ID: "t1", ClientID: "t1"}, "s/t2/x", false, "", ""},
		{"client_id fills its level", Subject{ID: "t1", ClientID: "c-1"}, "c/c-1", true, "by-client", ""},
		{"claim fills its level", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": "paris"}}, "k/paris/a/b", true, "by-claim", ""},
		{"array claim expands", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": []any{"paris", "lyon"}}}, "k/lyon/a", true, "by-claim", ""},
		{"sub at the first level", Subject{ID: "t1", ClientID: "t1"}, "t1/y", true, "first-level", ""},
		{"sub '+' is not a wildcard", Subject{ID: "+", ClientID: "ok"}, "s/t2/x", false, "", `{sub} value "+" contains '+'`},
		{"sub '+' matches nothing literally", Subject{ID: "+", ClientID: "ok"}, "s/+/x", false, "", "{sub}"},
		{"sub '#'", Subject{ID: "#", ClientID: "ok"}, "s/t2/x", false, "", `contains '#'`},
		{"sub with a separator", Subject{ID: "t2/x/..", ClientID: "ok"}, "s/t2/x/../x", false, "", `contains '/'`},
		{"sub with NUL", Subject{ID: "t\x00", ClientID: "ok"}, "s/t/x", false, "", `contains '\x00'`},
		{"empty sub", Subject{ID: "", ClientID: "ok"}, "s//x", false, "", "{sub} value is empty"},
		{"client_id '#' (CVE-2017-7650)", Subject{ID: "t1", ClientID: "#"}, "c/anything", false, "", `{client_id} value "#" contains '#'`},
		{"client_id '+' (CVE-2017-7650)", Subject{ID: "t1", ClientID: "+"}, "c/other", false, "", `contains '+'`},
		{"empty client_id", Subject{ID: "t1", ClientID: ""}, "c/", false, "", "{client_id} value is empty"},
		{"claim with wildcard", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": "+"}}, "k/paris/a", false, "", `{claim.site} value "+"`},
		{"claim with separator", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": "a/b"}}, "k/a/b/c", false, "", `contains '/'`},
		{"claim missing", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{}}, "k/paris", false, "", `claim "site" is missing`},
		{"claim a number", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": 7.0}}, "k/7", false, "", `is a number, not a string`},
		{"claim an object", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": map[string]any{}}}, "k/x", false, "", `is a object, not a string`},
		{"array claim with a bad entry", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": []any{"paris", "#"}}}, "k/paris/a", false, "", `contains '#'`},
		{"array claim with a number", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": []any{"paris", 1.0}}}, "k/paris/a", false, "", `lists a number`},
		{"empty array claim", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"site": []any{}}}, "k/x", false, "", `empty list`},
		{"$ value at the first level", Subject{ID: "$SYS", ClientID: "ok"}, "$SYS/y", false, "", `starts with '$' at the first level`},
		{"$ value deeper is fine", Subject{ID: "$x", ClientID: "ok"}, "s/$x/x", true, "by-sub", `starts with '$'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.s.Claims == nil {
				tt.s.Claims = map[string]any{"site": "paris"}
			}
			if _, ok := tt.s.Claims["blocked"]; !ok {
				tt.s.Claims["blocked"] = "b"
			}
			g := pol.Compile(tt.s)
			d := g.Allow(Publish, tt.topic, 0, false)
			name := ""
			if d.Rule != nil {
				name = d.Rule.Name
			}
			if d.Allowed != tt.allowed || name != tt.rule {
				t.Errorf("Allow(%q) = %v by %q (%s), want %v by %q", tt.topic, d.Allowed, name, d.Reason, tt.allowed, tt.rule)
			}
			skips := g.Skipped()
			if tt.skipped == "" {
				if len(skips) != 0 {
					t.Errorf("unexpected skips: %v", skips)
				}
				return
			}
			if len(skips) == 0 {
				t.Fatalf("no skips, want some containing %q", tt.skipped)
			}
			for _, s := range skips {
				if !strings.Contains(s.String(), tt.skipped) {
					t.Errorf("skip %v does not contain %q", s, tt.skipped)
				}
				if s.Widened || s.Rule.Effect != Allow || !strings.HasSuffix(s.String(), "; rule skipped") {
					t.Errorf("allow rule skip marked widened: %+v", s)
				}
			}
		})
	}
}

// TestSkippedRuleDoesNotAffectOthers checks that one unusable placeholder skips
// only its own rule.
func TestSkippedRuleDoesNotAffectOthers(t *testing.T) {
	pol := mustParse(t, placeholderPolicy)
	g := pol.Compile(Subject{ID: "t1", ClientID: "#", Claims: map[string]any{"blocked": "b", "site": "a+"}})
	if d := g.Allow(Publish, "s/t1/x", 0, false); !d.Allowed {
		t.Errorf("by-sub must still apply: %+v", d)
	}
	skips := g.Skipped()
	if len(skips) != 2 {
		t.Fatalf("skips = %v, want by-client and by-claim", skips)
	}
	if skips[0].Rule.Name != "by-client" || skips[1].Rule.Name != "by-claim" {
		t.Errorf("skips = %v", skips)
	}
}

// TestDenyWidening checks that a deny rule whose placeholder cannot be filled
// denies more, never less.
func TestDenyWidening(t *testing.T) {
	pol := mustParse(t, `rules:
  - {effect: allow, actions: [publish], topics: ["k/#"]}
  - {name: d, effect: deny, actions: [publish], topics: ["k/{claim.blocked}/#"]}
`)
	tests := []struct {
		name    string
		claims  map[string]any
		topic   string
		allowed bool
	}{
		{"filled deny blocks its value", map[string]any{"blocked": "b"}, "k/b/x", false},
		{"filled deny leaves others", map[string]any{"blocked": "b"}, "k/c/x", true},
		{"array deny blocks each value", map[string]any{"blocked": []any{"b", "c"}}, "k/c/x", false},
		{"missing claim widens", nil, "k/c/x", false},
		{"wildcard claim widens", map[string]any{"blocked": "#"}, "k/c/x", false},
		{"widened deny keeps its depth", map[string]any{"blocked": "#"}, "k", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := pol.Compile(Subject{ID: "t1", ClientID: "t1", Claims: tt.claims})
			if d := g.Allow(Publish, tt.topic, 0, false); d.Allowed != tt.allowed {
				t.Errorf("Allow(%q) = %+v, want allowed %v", tt.topic, d, tt.allowed)
			}
			for _, s := range g.Skipped() {
				if !s.Widened || !strings.Contains(s.String(), "widened") {
					t.Errorf("deny skip not marked widened: %v", s)
				}
			}
		})
	}
}

// TestExpansionLimit checks that an array claim too long to expand skips an
// allow rule and widens a deny rule.
func TestExpansionLimit(t *testing.T) {
	pol := mustParse(t, `rules:
  - {name: a, effect: allow, actions: [publish], topics: ["x/{claim.ids}/{claim.ids}"]}
  - {name: b, effect: allow, actions: [publish], topics: ["y/#"]}
  - {name: d, effect: deny, actions: [publish], topics: ["y/{claim.ids}/{claim.ids}"]}
`)
	ids := make([]any, 40)
	for i := range ids {
		ids[i] = "id" + strings.Repeat("x", i)
	}
	g := pol.Compile(Subject{ID: "t", ClientID: "t", Claims: map[string]any{"ids": ids}})
	if d := g.Allow(Publish, "x/id/id", 0, false); d.Allowed {
		t.Errorf("over-expanded allow rule applied: %+v", d)
	}
	if d := g.Allow(Publish, "y/anything/else", 0, false); d.Allowed {
		t.Errorf("over-expanded deny rule did not widen: %+v", d)
	}
	if d := g.Allow(Publish, "y/a", 0, false); !d.Allowed || d.Rule.Name != "b" {
		t.Errorf("widened deny must keep its depth: %+v", d)
	}
	skips := g.Skipped()
	if len(skips) != 2 || !strings.Contains(skips[0].Reason, "more than 1024") || !skips[1].Widened {
		t.Errorf("skips = %v", skips)
	}
}

func TestConditions(t *testing.T) {
	pol := mustParse(t, `rules:
  - {name: any, effect: allow, actions: [publish], topics: [a], scopes: [s1, s2]}
  - {name: all, effect: allow, actions: [publish], topics: [b], all_scopes: [s1, s2]}
  - {name: str, effect: allow, actions: [publish], topics: [c], claims: {type: gateway}}
  - {name: oneof, effect: allow, actions: [publish], topics: [d], claims: {type: [gateway, hub]}}
  - {name: bool, effect: allow, actions: [publish], topics: [e], claims: {verified: true}}
  - {name: num, effect: allow, actions: [publish], topics: [f], claims: {level: 3}}
  - {name: quoted, effect: allow, actions: [publish], topics: [g], claims: {level: "3"}}
  - {name: both, effect: allow, actions: [publish], topics: [h], claims: {type: gateway, site: paris}}
`)
	tests := []struct {
		topic  string
		s      Subject
		wanted bool
	}{
		{"a", Subject{Scopes: []string{"s2"}}, true},
		{"a", Subject{Scopes: []string{"s3"}}, false},
		{"b", Subject{Scopes: []string{"s2"}}, false},
		{"b", Subject{Scopes: []string{"s2", "s1"}}, true},
		{"c", Subject{Claims: map[string]any{"type": "gateway"}}, true},
		{"c", Subject{Claims: map[string]any{"type": "Gateway"}}, false},
		{"c", Subject{Claims: map[string]any{"type": []any{"device", "gateway"}}}, true},
		{"c", Subject{Claims: map[string]any{"type": []any{"device"}}}, false},
		{"c", Subject{Claims: map[string]any{}}, false},
		{"d", Subject{Claims: map[string]any{"type": "hub"}}, true},
		{"e", Subject{Claims: map[string]any{"verified": true}}, true},
		{"e", Subject{Claims: map[string]any{"verified": "true"}}, false},
		{"f", Subject{Claims: map[string]any{"level": 3.0}}, true},
		{"f", Subject{Claims: map[string]any{"level": "3"}}, false},
		{"g", Subject{Claims: map[string]any{"level": "3"}}, true},
		{"g", Subject{Claims: map[string]any{"level": 3.0}}, false},
		{"h", Subject{Claims: map[string]any{"type": "gateway", "site": "paris"}}, true},
		{"h", Subject{Claims: map[string]any{"type": "gateway"}}, false},
	}
	for _, tt := range tests {
		tt.s.ID, tt.s.ClientID = "t", "t"
		if d := pol.Compile(tt.s).Allow(Publish, tt.topic, 0, false); d.Allowed != tt.wanted {
			t.Errorf("%s for %+v: %+v, want allowed %v", tt.topic, tt.s, d, tt.wanted)
		}
	}
}

func TestRuleStringAndConditions(t *testing.T) {
	pol := mustParse(t, testPolicy)
	rules := pol.Rules()
	if got := rules[0].String(); got != "test.yaml:3 (own-telemetry)" {
		t.Errorf("String() = %q", got)
	}
	if got := rules[0].Conditions(); got != "scopes any of [publish]" {
		t.Errorf("Conditions() = %q", got)
	}
	if got := rules[4].Conditions(); got != `claim tier in ["gold"]` {
		t.Errorf("Conditions() = %q", got)
	}
	unnamed := mustParse(t, "rules:\n  - {effect: deny, actions: [publish], topics: [a]}\n").Rules()[0]
	if got := unnamed.String(); got != "test.yaml:2" {
		t.Errorf("String() = %q", got)
	}
	if got := unnamed.Conditions(); got != "none" {
		t.Errorf("Conditions() = %q", got)
	}
	if !rules[0].AppliesTo(thing("t1")) || rules[0].AppliesTo(Subject{ID: "t1"}) {
		t.Error("AppliesTo disagrees with the scope condition")
	}
}

func TestSummaryAndAnonymous(t *testing.T) {
	pol := mustParse(t, testPolicy)
	if got, want := pol.Summary(), "test.yaml: valid: 15 rules (12 allow, 3 deny); anonymous: 2 rules (2 allow, 0 deny)"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if !pol.AllowsAnonymous() {
		t.Error("AllowsAnonymous() = false with an anonymous allow rule")
	}
	closed := mustParse(t, "rules:\n  - {effect: allow, actions: [publish], topics: [a]}\nanonymous:\n  - {effect: deny, actions: [publish], topics: [a]}\n")
	if closed.AllowsAnonymous() {
		t.Error("AllowsAnonymous() = true with only a deny rule")
	}
	none := mustParse(t, "rules: []\n")
	if none.AllowsAnonymous() || !strings.Contains(none.Summary(), "anonymous: none") {
		t.Errorf("no anonymous section: %q", none.Summary())
	}
	g := none.Compile(Subject{ID: "t", Anonymous: true})
	if d := g.Allow(Subscribe, "#", 0, false); d.Allowed || d.Rule != nil {
		t.Errorf("empty policy allowed something: %+v", d)
	}
}

// TestCompileConcurrent checks that Grants are safe to share (run with -race).
func TestCompileConcurrent(t *testing.T) {
	pol := mustParse(t, testPolicy)
	g := pol.Compile(thing("t1"))
	done := make(chan bool)
	for range 4 {
		go func() {
			ok := true
			for range 1000 {
				ok = ok && g.Allow(Publish, "things/t1/state", 0, true).Allowed
				_ = pol.Compile(thing("t2"))
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("concurrent Allow gave a wrong answer")
		}
	}
}

// TestWideGateway gives a gateway more things than a trie node compares one by
// one, so lookups go through the node's map, and checks every thing and a few
// strangers.
func TestWideGateway(t *testing.T) {
	pol := mustParse(t, `rules:
  - {name: gw, effect: allow, actions: [publish, subscribe], topics: ["things/{claim.things}/telemetry/#", "things/{claim.things}/state"], claims: {thingType: gateway}}
  - {name: no-firmware, effect: deny, actions: [publish], topics: ["things/{claim.things}/firmware/#"]}
`)
	var things []any
	for i := range 3 * mapThreshold {
		things = append(things, fmt.Sprintf("sensor-%d", i))
	}
	g := pol.Compile(Subject{ID: "gw", ClientID: "gw", Claims: map[string]any{"thingType": "gateway", "things": things}})
	for _, th := range things {
		id := th.(string)
		for _, c := range []struct {
			a     Action
			topic string
			want  bool
		}{
			{Publish, "things/" + id + "/telemetry/temp", true},
			{Publish, "things/" + id + "/state", true},
			{Publish, "things/" + id + "/firmware/v1", false},
			{Subscribe, "things/" + id + "/telemetry/+", true},
			{Receive, "things/" + id + "/state", true},
			{Publish, "things/" + id + "x/state", false},
		} {
			if d := g.Allow(c.a, c.topic, 0, false); d.Allowed != c.want {
				t.Errorf("Allow(%v, %q) = %+v, want allowed %v", c.a, c.topic, d, c.want)
			}
		}
	}
	for _, topic := range []string{"things/sensor-x/state", "things/sensor-/state", "things//state", "things/+/state", "things"} {
		if d := g.Allow(Publish, topic, 0, false); d.Allowed {
			t.Errorf("Allow(%q) = %+v, want denied", topic, d)
		}
	}
	if g.actions[Publish].root.lits[0].next.byLit == nil {
		t.Error("the wide node has no map; the test does not exercise it")
	}
}

// TestNestedClaims fills placeholders and checks conditions through dotted claim paths, the way Keycloak and
// Cognito nest what a policy needs.
func TestNestedClaims(t *testing.T) {
	pol := mustParse(t, `rules:
  - {name: by-role, effect: allow, actions: [publish], topics: ["r/{claim.realm_access.roles}"]}
  - {name: by-client-role, effect: allow, actions: [publish], topics: ["cr/{claim.resource_access.mqtt-broker.roles}"]}
  - {name: by-group, effect: allow, actions: [publish], topics: ["g/{claim.cognito:groups}"]}
  - {name: nested-cond, effect: allow, actions: [publish], topics: [n], claims: {realm_access.roles: gateway}}
`)
	claims := map[string]any{
		"realm_access":    map[string]any{"roles": []any{"gateway", "reader"}},
		"resource_access": map[string]any{"mqtt-broker": map[string]any{"roles": []any{"line-1"}}},
		"cognito:groups":  []any{"plant-a"},
	}
	tests := []struct {
		topic  string
		claims map[string]any
		rule   string // "" when refused
	}{
		{"r/reader", claims, "by-role"},
		{"r/admin", claims, ""},
		{"cr/line-1", claims, "by-client-role"},
		{"g/plant-a", claims, "by-group"},
		{"n", claims, "nested-cond"},
		{"n", map[string]any{"realm_access": map[string]any{"roles": []any{"reader"}}}, ""},
		{"n", map[string]any{"realm_access": "gateway"}, ""},
		{"n", map[string]any{"realm_access.roles": "gateway"}, "nested-cond"}, // a flat claim of that name wins
	}
	for _, tt := range tests {
		d := pol.Compile(Subject{ID: "t", ClientID: "t", Claims: tt.claims}).Allow(Publish, tt.topic, 0, false)
		name := ""
		if d.Rule != nil {
			name = d.Rule.Name
		}
		if d.Allowed != (tt.rule != "") || name != tt.rule {
			t.Errorf("%s with %v: allowed %v by %q (%s), want %q", tt.topic, tt.claims, d.Allowed, name, d.Reason, tt.rule)
		}
	}
}

func TestClaimPaths(t *testing.T) {
	pol := mustParse(t, `rules:
  - {effect: allow, actions: [publish], topics: ["r/{claim.realm_access.roles}/{claim.site}"], claims: {site: [a, b], type: gw}}
  - {effect: allow, actions: [publish], topics: ["x/{sub}"]}
  - {effect: deny, actions: [publish], topics: ["z/{claim.cognito:groups}"]}
anonymous:
  - {effect: allow, actions: [publish], topics: ["p/{client_id}"]}
`)
	if got, want := pol.Rules()[0].ClaimPaths(), []string{"realm_access.roles", "site", "type"}; !slices.Equal(got, want) {
		t.Errorf("rule claim paths %q, want %q", got, want)
	}
	if got, want := pol.ClaimPaths(), []string{"cognito:groups", "realm_access.roles", "site", "type"}; !slices.Equal(got, want) {
		t.Errorf("policy claim paths %q, want %q", got, want)
	}
}
