package authz

import (
	"testing"
)

// testPolicy exercises every feature of the format; line numbers matter to the
// tests that check Rule.Line.
const testPolicy = `version: 1
rules:
  - name: own-telemetry
    effect: allow
    actions: [publish]
    topics: ["things/{sub}/telemetry/#"]
    scopes: [publish]
    max_qos: 1
  - name: own-state
    effect: allow
    actions: [publish]
    topics: ["things/{sub}/state"]
    scopes: [publish]
    retain: true
  - name: own-commands
    effect: allow
    actions: [subscribe]
    topics: ["things/{sub}/commands/#"]
    scopes: [subscribe]
  - name: per-client
    effect: allow
    actions: [publish, subscribe]
    topics: ["clients/{client_id}/#"]
    all_scopes: [publish, subscribe]
  - name: tenant
    effect: allow
    actions: [publish]
    topics: ["tenants/{claim.tenant}/things/{sub}/#"]
    claims: {tier: gold}
  - name: gateway
    effect: allow
    actions: [publish, subscribe]
    topics: ["things/{claim.things}/telemetry/#", "things/{claim.things}/commands/#"]
    claims: {thingType: gateway}
  - name: no-firmware
    effect: deny
    actions: [publish, subscribe]
    topics: ["things/+/firmware/#"]
  - name: fleet-read
    effect: allow
    actions: [subscribe]
    topics: ["things/+/telemetry/#", "things/+/firmware/#"]
    scopes: ["fleet:read"]
    max_qos: 1
    share_groups: [workers]
  - name: fleet-read-any-group
    effect: allow
    actions: [subscribe]
    topics: ["things/+/state"]
    scopes: ["fleet:read"]
  - name: fleet-no-secrets
    effect: deny
    actions: [subscribe]
    topics: ["things/+/telemetry/secret/#"]
    scopes: ["fleet:read"]
  - name: fleet-command
    effect: allow
    actions: [publish]
    topics: ["things/+/commands/#"]
    scopes: ["fleet:command"]
  - name: monitor
    effect: allow
    actions: [subscribe]
    topics: ["$SYS/#"]
    scopes: ["broker:monitor"]
    max_qos: 0
  - name: everything
    effect: allow
    actions: [subscribe]
    topics: ["#"]
    scopes: ["admin"]
  - name: inbox
    effect: allow
    actions: [receive]
    topics: ["inbox/{sub}"]
  - name: tenant-admin-deny
    effect: deny
    actions: [publish]
    topics: ["tenants/{claim.tenant}/admin/#"]
anonymous:
  - name: public
    effect: allow
    actions: [subscribe]
    topics: ["public/#"]
    max_qos: 0
  - name: anon-hello
    effect: allow
    actions: [publish]
    topics: ["anon/{client_id}/hello"]
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

// thing is a device with AM's default scopes.
func thing(id string) Subject {
	return Subject{ID: id, ClientID: id, Scopes: []string{"publish", "subscribe"}}
}

func TestAllow(t *testing.T) {
	pol := mustParse(t, testPolicy)
	t1 := thing("t1")
	pubOnly := Subject{ID: "t1", ClientID: "t1", Scopes: []string{"publish"}}
	fleet := Subject{ID: "app", ClientID: "app-1", Scopes: []string{"fleet:read", "fleet:command"}}
	gold := Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"tier": "gold", "tenant": "acme"}}
	silver := Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"tier": "silver", "tenant": "acme"}}
	goldList := Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"tier": []any{"silver", "gold"}, "tenant": "acme"}}
	gw := Subject{ID: "gw", ClientID: "gw", Claims: map[string]any{"thingType": "gateway", "things": []any{"s7", "s8"}}}
	monitor := Subject{ID: "ops", ClientID: "ops", Scopes: []string{"broker:monitor"}}
	admin := Subject{ID: "root", ClientID: "root", Scopes: []string{"admin"}}
	anon := Subject{ClientID: "c9", Anonymous: true}
	none := Subject{ID: "nobody", ClientID: "nobody"}

	runAllowCases(t, pol, []allowCase{
		{"own telemetry", t1, Publish, "things/t1/telemetry/temp", 1, false, true, "own-telemetry", ReasonGranted},
		{"own telemetry parent level", t1, Publish, "things/t1/telemetry", 0, false, true, "own-telemetry", ReasonGranted},
		{"other thing's telemetry", t1, Publish, "things/t2/telemetry/temp", 0, false, false, "", ReasonNoRule},
		{"prefix of another id", t1, Publish, "things/t10/telemetry/temp", 0, false, false, "", ReasonNoRule},
		{"qos above rule maximum", t1, Publish, "things/t1/telemetry/temp", 2, false, false, "own-telemetry", "qos 2 above maximum 1"},
		{"retain not allowed on telemetry", t1, Publish, "things/t1/telemetry/temp", 0, true, false, "own-telemetry", ReasonRetain},
		{"retain allowed on state", t1, Publish, "things/t1/state", 2, true, true, "own-state", ReasonGranted},
		{"wildcard in publish topic", t1, Publish, "things/t1/telemetry/+", 0, false, false, "", ReasonInvalidTopic},
		{"empty topic", t1, Publish, "", 0, false, false, "", ReasonEmptyTopic},
		{"qos 3", t1, Publish, "things/t1/state", 3, false, false, "", ReasonInvalidQoS},
		{"unknown action", t1, Action(9), "things/t1/state", 0, false, false, "", ReasonUnknownAction},
		{"subscribe own commands", t1, Subscribe, "things/t1/commands/#", 2, false, true, "own-commands", ReasonGranted},
		{"subscribe narrower commands", t1, Subscribe, "things/t1/commands/+/set", 0, false, true, "own-commands", ReasonGranted},
		{"subscribe all commands", t1, Subscribe, "things/+/commands/#", 0, false, false, "", ReasonNoRule},
		{"subscribe everything", t1, Subscribe, "#", 0, false, false, "", ReasonNoRule},
		{"receive implied by subscribe", t1, Receive, "things/t1/commands/reboot", 1, false, true, "own-commands", ReasonImplied},
		{"receive other's commands", t1, Receive, "things/t2/commands/reboot", 1, false, false, "", ReasonNoRule},
		{"explicit receive rule", t1, Receive, "inbox/t1", 0, false, true, "inbox", ReasonGranted},
		{"receive-only rule does not grant subscribe", t1, Subscribe, "inbox/t1", 0, false, false, "", ReasonNoRule},
		{"scope missing", pubOnly, Subscribe, "things/t1/commands/#", 0, false, false, "", ReasonNoRule},
		{"all_scopes met", t1, Publish, "clients/t1/x", 0, false, true, "per-client", ReasonGranted},
		{"all_scopes not met", pubOnly, Publish, "clients/t1/x", 0, false, false, "", ReasonNoRule},
		{"deny wins over own grant", Subject{ID: "t1", ClientID: "t1", Claims: map[string]any{"thingType": "gateway", "things": []any{"t1"}}}, Publish, "things/t1/firmware/v2", 0, false, false, "no-firmware", ReasonDenied},
		{"deny on subscribe subsumed", fleet, Subscribe, "things/t1/firmware/#", 0, false, false, "no-firmware", ReasonDenied},
		{"deny does not touch publish of others", fleet, Publish, "things/t1/commands/set", 0, false, true, "fleet-command", ReasonGranted},
		{"broader subscription overlapping a deny is allowed", fleet, Subscribe, "things/+/telemetry/#", 1, false, true, "fleet-read", ReasonGranted},
		{"delivery inside the deny is withheld", fleet, Receive, "things/t1/telemetry/secret/key", 0, false, false, "fleet-no-secrets", ReasonDenied},
		{"delivery outside the deny passes", fleet, Receive, "things/t1/telemetry/temp", 0, false, true, "fleet-read", ReasonImplied},
		{"subscription inside the deny", fleet, Subscribe, "things/t1/telemetry/secret/+", 0, false, false, "fleet-no-secrets", ReasonDenied},
		{"subscribe qos capped by rule", fleet, Subscribe, "things/t1/telemetry/temp", 2, false, true, "fleet-read", ReasonGranted},
		{"shared group allowed", fleet, Subscribe, "$share/workers/things/+/telemetry/#", 1, false, true, "fleet-read", ReasonGranted},
		{"shared prefix in upper case", fleet, Subscribe, "$SHARE/workers/things/+/telemetry/#", 1, false, true, "fleet-read", ReasonGranted},
		{"shared prefix in mixed case", fleet, Subscribe, "$ShArE/workers/things/+/telemetry/#", 1, false, true, "fleet-read", ReasonGranted},
		{"shared group not allowed", fleet, Subscribe, "$share/other/things/+/telemetry/#", 1, false, false, "fleet-read", ReasonShareGroup},
		{"shared group any", fleet, Subscribe, "$share/other/things/+/state", 1, false, true, "fleet-read-any-group", ReasonGranted},
		{"shared inner too broad", fleet, Subscribe, "$share/workers/things/#", 1, false, false, "", ReasonNoRule},
		{"shared inner denied", fleet, Subscribe, "$share/workers/things/t1/firmware/#", 1, false, false, "no-firmware", ReasonDenied},
		{"shared without filter", fleet, Subscribe, "$share/workers", 1, false, false, "", ReasonInvalidFilter},
		{"shared with empty filter", fleet, Subscribe, "$share/workers/", 1, false, false, "", ReasonInvalidFilter},
		{"invalid filter", fleet, Subscribe, "things/#/state", 1, false, false, "", ReasonInvalidFilter},
		{"gold claim", gold, Publish, "tenants/acme/things/t1/x", 0, false, true, "tenant", ReasonGranted},
		{"gold claim other tenant", gold, Publish, "tenants/other/things/t1/x", 0, false, false, "", ReasonNoRule},
		{"tenant admin denied", gold, Publish, "tenants/acme/admin/x", 0, false, false, "tenant-admin-deny", ReasonDenied},
		{"silver claim", silver, Publish, "tenants/acme/things/t1/x", 0, false, false, "", ReasonNoRule},
		{"array claim membership", goldList, Publish, "tenants/acme/things/t1/x", 0, false, true, "tenant", ReasonGranted},
		{"gateway publishes for s7", gw, Publish, "things/s7/telemetry/t", 0, false, true, "gateway", ReasonGranted},
		{"gateway publishes for s8", gw, Publish, "things/s8/telemetry/t", 0, false, true, "gateway", ReasonGranted},
		{"gateway not for s9", gw, Publish, "things/s9/telemetry/t", 0, false, false, "", ReasonNoRule},
		{"gateway subscribes for s8", gw, Subscribe, "things/s8/commands/#", 0, false, true, "gateway", ReasonGranted},
		{"gateway cannot subscribe for all", gw, Subscribe, "things/+/commands/#", 0, false, false, "", ReasonNoRule},
		{"gateway firmware denied", gw, Publish, "things/s7/firmware/x", 0, false, false, "no-firmware", ReasonDenied},
		{"$SYS needs a rule naming it", admin, Subscribe, "$SYS/#", 0, false, false, "", ReasonNoRule},
		{"# does not deliver $SYS", admin, Receive, "$SYS/broker/uptime", 0, false, false, "", ReasonNoRule},
		{"# delivers normal topics", admin, Receive, "a/b", 0, false, true, "everything", ReasonImplied},
		{"monitor subscribes $SYS", monitor, Subscribe, "$SYS/broker/+", 1, false, true, "monitor", ReasonGranted},
		{"monitor gets $SYS", monitor, Receive, "$SYS/broker/uptime", 0, false, true, "monitor", ReasonImplied},
		{"monitor cannot read #", monitor, Subscribe, "#", 0, false, false, "", ReasonNoRule},
		{"no scopes, no claims", none, Publish, "things/nobody/state", 0, false, false, "", ReasonNoRule},
		{"anonymous subscribes public", anon, Subscribe, "public/news", 0, false, true, "public", ReasonGranted},
		{"anonymous client_id placeholder", anon, Publish, "anon/c9/hello", 0, false, true, "anon-hello", ReasonGranted},
		{"anonymous other client", anon, Publish, "anon/c8/hello", 0, false, false, "", ReasonNoRule},
		{"anonymous gets no token rules", Subject{ID: "t1", ClientID: "t1", Scopes: []string{"publish"}, Anonymous: true}, Publish, "things/t1/state", 0, false, false, "", ReasonNoRule},
		{"token clients get no anonymous rules", t1, Subscribe, "public/news", 0, false, false, "", ReasonNoRule},
	})
}

// allowCase is one question to a compiled policy and its expected answer.
type allowCase struct {
	name    string
	s       Subject
	a       Action
	topic   string
	qos     byte
	retain  bool
	allowed bool
	rule    string // deciding rule's name, "" for none
	reason  string // "" to leave the reason unchecked
}

// runAllowCases compiles pol for each case's subject and checks the decision.
func runAllowCases(t *testing.T, pol *Policy, cases []allowCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			d := pol.Compile(tt.s).Allow(tt.a, tt.topic, tt.qos, tt.retain)
			name := ""
			if d.Rule != nil {
				name = d.Rule.Name
			}
			if d.Allowed != tt.allowed || name != tt.rule || (tt.reason != "" && d.Reason != tt.reason) {
				t.Errorf("Allow(%v, %q, qos %d, retain %v) = %v by %q (%s), want %v by %q (%s)",
					tt.a, tt.topic, tt.qos, tt.retain, d.Allowed, name, d.Reason, tt.allowed, tt.rule, tt.reason)
			}
		})
	}
}

func TestSubscribeMaxQoS(t *testing.T) {
	pol := mustParse(t, testPolicy)
	fleet := Subject{ID: "app", Scopes: []string{"fleet:read"}}
	g := pol.Compile(fleet)
	if d := g.Allow(Subscribe, "things/t1/telemetry/x", 2, false); !d.Allowed || d.MaxQoS != 1 {
		t.Errorf("fleet-read subscription: %+v, want allowed with MaxQoS 1", d)
	}
	if d := g.Allow(Subscribe, "things/t1/state", 2, false); !d.Allowed || d.MaxQoS != 2 {
		t.Errorf("state subscription: %+v, want allowed with MaxQoS 2", d)
	}
}

// TestSubscribePicksHighestQoS checks that among several covering allow rules the
// most generous QoS wins, whatever their order.
func TestSubscribePicksHighestQoS(t *testing.T) {
	pol := mustParse(t, `rules:
  - {effect: allow, actions: [subscribe], topics: ["a/#"], max_qos: 0}
  - {effect: allow, actions: [subscribe], topics: ["a/b/#"], max_qos: 2}
  - {effect: allow, actions: [subscribe], topics: ["a/b/c"], max_qos: 1}
`)
	d := pol.Compile(Subject{ID: "x"}).Allow(Subscribe, "a/b/c", 2, false)
	if !d.Allowed || d.MaxQoS != 2 || d.Rule.Line != 3 {
		t.Errorf("got %+v (rule %v), want MaxQoS 2 from line 3", d, d.Rule)
	}
}

// TestPublishLimitsAcrossRules checks that a publish refused by one rule's limits
// is still granted by another matching rule that permits it.
func TestPublishLimitsAcrossRules(t *testing.T) {
	pol := mustParse(t, `rules:
  - {effect: allow, actions: [publish], topics: ["a/#"], max_qos: 0}
  - {effect: allow, actions: [publish], topics: ["a/b"], max_qos: 2, retain: true}
`)
	g := pol.Compile(Subject{ID: "x"})
	if d := g.Allow(Publish, "a/b", 2, true); !d.Allowed || d.Rule.Line != 3 {
		t.Errorf("a/b qos 2 retain: %+v, want allowed by line 3", d)
	}
	if d := g.Allow(Publish, "a/c", 1, false); d.Allowed || d.Rule.Line != 2 || d.Reason != "qos 1 above maximum 0" {
		t.Errorf("a/c qos 1: %+v, want refused by line 2", d)
	}
	if d := g.Allow(Publish, "a/c", 0, true); d.Allowed || d.Reason != ReasonRetain {
		t.Errorf("a/c retain: %+v, want retain refused", d)
	}
}

func TestQoSAboveMaximumTexts(t *testing.T) {
	for _, tt := range []struct {
		qos, max byte
		want     string
	}{{1, 0, "qos 1 above maximum 0"}, {2, 0, "qos 2 above maximum 0"}, {2, 1, "qos 2 above maximum 1"}} {
		if got := qosAboveMaximum(tt.qos, tt.max); got != tt.want {
			t.Errorf("qosAboveMaximum(%d, %d) = %q, want %q", tt.qos, tt.max, got, tt.want)
		}
	}
}

// TestSharedSubscriptions judges "$share/<group>/<filter>" on the inner filter,
// with the prefix in any letter case, against the same subsumption rules.
func TestSharedSubscriptions(t *testing.T) {
	pol := mustParse(t, `rules:
  - {name: tele, effect: allow, actions: [subscribe], topics: ["things/+/telemetry/#"], share_groups: [workers, "$odd"]}
  - {name: sys, effect: allow, actions: [subscribe], topics: ["$SYS/broker/#"]}
  - {name: all, effect: allow, actions: [subscribe], topics: ["#"], all_scopes: [admin]}
  - {name: secret, effect: deny, actions: [subscribe], topics: ["things/+/telemetry/secret/#"]}
`)
	app := Subject{ID: "app", ClientID: "app"}
	admin := Subject{ID: "root", ClientID: "root", Scopes: []string{"admin"}}
	runAllowCases(t, pol, []allowCase{
		{"lower case", app, Subscribe, "$share/workers/things/+/telemetry/#", 1, false, true, "tele", ReasonGranted},
		{"upper case", app, Subscribe, "$SHARE/workers/things/t1/telemetry/+", 1, false, true, "tele", ReasonGranted},
		{"mixed case", app, Subscribe, "$sHaRe/workers/things/t1/telemetry", 1, false, true, "tele", ReasonGranted},
		{"group names are case-sensitive", app, Subscribe, "$share/Workers/things/+/telemetry/#", 1, false, false, "tele", ReasonShareGroup},
		{"group starting with $", app, Subscribe, "$share/$odd/things/+/telemetry/#", 1, false, true, "tele", ReasonGranted},
		{"inner filter too broad", app, Subscribe, "$share/workers/things/#", 1, false, false, "", ReasonNoRule},
		{"inner filter #", app, Subscribe, "$share/workers/#", 1, false, false, "", ReasonNoRule},
		{"inner filter inside a deny", app, Subscribe, "$SHARE/workers/things/t1/telemetry/secret/#", 1, false, false, "secret", ReasonDenied},
		{"inner $SYS filter", app, Subscribe, "$share/workers/$SYS/broker/uptime", 1, false, true, "sys", ReasonGranted},
		{"inner $SYS filter too broad", app, Subscribe, "$share/workers/$SYS/#", 1, false, false, "", ReasonNoRule},
		{"not a share prefix", app, Subscribe, "$shared/workers/things/t1/telemetry", 1, false, false, "", ReasonNoRule},
		{"wildcard group", app, Subscribe, "$share/+/things/t1/telemetry", 1, false, false, "", ReasonInvalidFilter},
		{"invalid inner filter", app, Subscribe, "$share/workers/things/#/x", 1, false, false, "", ReasonInvalidFilter},
		{"admin # covers a shared #", admin, Subscribe, "$share/any/#", 0, false, true, "all", ReasonGranted},
		{"admin # does not cover shared $SYS", admin, Subscribe, "$share/any/$SYS/#", 0, false, false, "", ReasonNoRule},
		{"admin # covers shared +/#", admin, Subscribe, "$SHARE/any/+/#", 0, false, true, "all", ReasonGranted},
	})
}
