package attack

import (
	"imb/internal/mqtttest"

	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/broker"
)

// escapeCase is one attempt to get past the topic grants. property names what the
// case protects; run fails the test on an escape.
type escapeCase struct {
	name     string
	property string
	mod      []func(*broker.Config)
	run      func(t *testing.T, e *env)
}

// observer connects an identity allowed to subscribe to "#": it sees every message
// the broker delivers (except the receive-denied vault), so that anything a denied
// publish let through shows up in its inbox.
func (e *env) observer(t testing.TB) *v5 {
	t.Helper()
	o := e.mustConnect5("observer", e.idp.token("observer", "observe"), opts5{clean: true})
	if got := o.subscribe(t, 1, "#"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("observer subscribe #: %v", got)
	}
	return o
}

// thing connects thing id with publish and subscribe scopes.
func (e *env) thing(t *testing.T, id string) *v5 {
	t.Helper()
	return e.mustConnect5(id, e.idp.token(id, "publish", "subscribe"), opts5{clean: true})
}

// fleet connects the cloud application (fleet:read, fleet:command).
func (e *env) fleet(t *testing.T) *v5 {
	t.Helper()
	return e.mustConnect5("cloud-app", e.idp.token("cloud-app", "fleet:read", "fleet:command"), opts5{clean: true})
}

// barrier publishes an allowed QoS 1 message from pub and waits for sub to receive
// it: what pub sent before it has been delivered, or not, by then.
func barrier(t *testing.T, pub, sub *v5, topic string) {
	t.Helper()
	if got := pub.publish(t, topic, 1, false, "barrier"); got != 0 {
		t.Fatalf("barrier publish %s: %#x", topic, got)
	}
	sub.inbox.wait(t, topic)
}

// onlyUnder fails on any message received outside prefix.
func onlyUnder(t *testing.T, r *v5, prefix string) {
	t.Helper()
	r.inbox.mu.Lock()
	defer r.inbox.mu.Unlock()
	for _, m := range r.inbox.msgs {
		if !strings.HasPrefix(m.topic, prefix) {
			t.Fatalf("ESCAPE: received %s (%q), outside %s", m.topic, m.payload, prefix)
		}
	}
}

// denied reports whether a SUBACK code (or a refused SUBSCRIBE, nil) grants nothing.
func denied(codes []byte, i int) bool { return codes == nil || codes[i] >= 0x80 }

// subscribeEscape has thing t2 ask for filter next to its own commands, then has the
// fleet and t1 publish on every kind of topic: t2 may receive its own commands only.
func subscribeEscape(filter string) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		spy := e.thing(t, "t2")
		codes := spy.subscribe(t, 1, "things/t2/commands/#", filter)
		if codes == nil {
			return // the broker ended the connection: nothing can leak to it
		}
		if codes[0] != 1 || !denied(codes, 1) {
			t.Fatalf("SUBACK %x, want [01 >=80]", codes)
		}
		app, t1 := e.fleet(t), e.thing(t, "t1")
		app.publish(t, "things/t1/commands/reboot", 1, false, "for t1 only")
		t1.publish(t, "things/t1/telemetry/temp", 1, false, "t1 telemetry")
		t1.publish(t, "things/t1/state", 1, true, "t1 state")
		barrier(t, app, spy, "things/t2/commands/barrier")
		onlyUnder(t, spy, "things/t2/commands/")
	}
}

// publishEscape has t1 publish where it must not, then a barrier: the observer must
// not see the denied message. ack is the expected v5 PUBACK code (-1: none).
func publishEscape(topic string, qos byte, retain bool, ack int) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		obs := e.observer(t)
		t1 := e.thing(t, "t1")
		if got := t1.publish(t, topic, qos, retain, "escaped"); qos > 0 && got != ack {
			t.Fatalf("PUBACK %#x, want %#x", got, ack)
		}
		barrier(t, t1, obs, "things/t1/telemetry/barrier")
		obs.inbox.none(t, topic)
		if retain {
			late := e.mustConnect5("observer-2", e.idp.token("observer-2", "observe"), opts5{clean: true})
			late.subscribe(t, 1, "#")
			barrier(t, t1, late, "things/t1/telemetry/barrier-2")
			late.inbox.none(t, topic)
		}
	}
}

// willRefused connects t1 with a will the grants do not allow: CONNACK 0x87.
func willRefused(topic string, qos byte, retain bool) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		w := &paho.WillMessage{Topic: topic, QoS: qos, Retain: retain, Payload: []byte("forged will")}
		r := e.connect5("t1", e.idp.token("t1", "publish"), opts5{clean: true, will: w})
		if r.code() != 0x87 {
			t.Fatalf("CONNACK %#x, want 0x87", r.code())
		}
	}
}

// wildIdentity connects a thing whose identity holds MQTT topic syntax, with a
// client id equal to it, and checks that the identity opens no topic beyond its own
// literal one: if the broker accepts it at all, every probe must be denied.
func wildIdentity(sub string, probes ...string) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		r := e.connect5(sub, e.idp.token(sub, "publish", "subscribe"), opts5{clean: true})
		if r.err != nil {
			return // refused at CONNECT: the strictest answer
		}
		obs := e.observer(t)
		for _, p := range probes {
			if codes := r.subscribe(t, 1, p); !denied(codes, 0) {
				t.Fatalf("identity %q may subscribe to %s: SUBACK %x", sub, p, codes)
			}
			if strings.ContainsAny(p, "+#") {
				continue
			}
			if got := r.publish(t, p, 1, false, "as "+sub); got != 0x87 && got != -1 {
				t.Fatalf("identity %q may publish to %s: PUBACK %#x", sub, p, got)
			}
		}
		t1 := e.thing(t, "t1")
		barrier(t, t1, obs, "things/t1/telemetry/barrier")
		onlyUnder(t, obs, "things/t1/telemetry/")
	}
}

func escapeCases() []escapeCase {
	return []escapeCase{
		// Subscriptions beyond the grant.
		{"subscribe things/+/commands/#", "a thing reads only its own commands", nil, subscribeEscape("things/+/commands/#")},
		{"subscribe #", "no identity without a grant reads everything", nil, subscribeEscape("#")},
		{"subscribe +/#", "a leading + does not widen a grant", nil, subscribeEscape("+/#")},
		{"subscribe things/#", "a parent filter is not covered by a child grant", nil, subscribeEscape("things/#")},
		{"subscribe +/+/commands/#", "wildcards at any level are judged by subsumption", nil, subscribeEscape("+/+/commands/#")},
		{"subscribe another thing's commands", "commands are per thing", nil, subscribeEscape("things/t1/commands/#")},
		{"subscribe own whole subtree things/t2/#", "a grant on a subtree is not a grant on its parent", nil, subscribeEscape("things/t2/#")},
		{"subscribe fleet telemetry things/+/telemetry/#", "fleet reads need fleet:read", nil, subscribeEscape("things/+/telemetry/#")},
		{"subscribe $share/g/things/+/commands/#", "a shared subscription is judged on its filter", nil, subscribeEscape("$share/g/things/+/commands/#")},
		{"subscribe $SHARE/G/things/#", "the $share prefix is recognised in any letter case", nil, subscribeEscape("$SHARE/G/things/#")},
		{"subscribe $ShArE/g/#", "the $share prefix is recognised in any letter case", nil, subscribeEscape("$ShArE/g/#")},
		{"subscribe $share/g/things/t1/commands/#", "a share group does not pool grants", nil, subscribeEscape("$share/g/things/t1/commands/#")},
		{"subscribe $share//things/t1/commands/# (empty group)", "a malformed share filter grants nothing", nil, subscribeEscape("$share//things/t1/commands/#")},
		{"subscribe $SYS/#", "$SYS is not readable without a grant", nil, subscribeEscape("$SYS/#")},
		{"subscribe $sys/broker/clients/# (lower case)", "$-topics are denied in any case", nil, subscribeEscape("$sys/broker/clients/#")},
		{"subscribe Things/+/commands/# (letter case)", "topics are case-sensitive: no rule grants another spelling", nil, subscribeEscape("Things/+/commands/#")},

		// Publishing beyond the grant.
		{"publish another thing's telemetry (QoS 1)", "a thing publishes only under its own id", nil, publishEscape("things/t2/telemetry/temp", 1, false, 0x87)},
		{"publish another thing's telemetry (QoS 0)", "QoS 0 denials are dropped, not delivered", nil, publishEscape("things/t2/telemetry/temp", 0, false, 0)},
		{"publish a command (cloud app only)", "only fleet:command publishes commands", nil, publishEscape("things/t1/commands/unlock", 1, false, 0x87)},
		{"publish firmware", "an explicit deny beats any allow", nil, publishEscape("things/t1/firmware/v2", 1, false, 0x87)},
		{"publish QoS 2 where max_qos is 1", "QoS limits hold", nil, publishEscape("things/t1/telemetry/temp", 2, false, 0x87)},
		{"publish retained telemetry", "retain is allowed only where a rule says so; nothing reaches the retained store", nil, publishEscape("things/t1/telemetry/temp", 1, true, 0x87)},
		{"publish to $SYS", "no client writes $SYS", nil, publishEscape("$SYS/broker/uptime", 1, false, -1)},
		{"publish things//telemetry/x (empty level)", "an empty level is not a wildcard", nil, publishEscape("things//telemetry/x", 1, false, 0x87)},
		{"publish Things/t1/telemetry/x (letter case)", "topics are case-sensitive", nil, publishEscape("Things/t1/telemetry/x", 1, false, 0x87)},
		{"publish things/t1/state/extra", "a concrete grant does not cover children", nil, publishEscape("things/t1/state/extra", 1, false, 0x87)},

		// Wills.
		{"will to another thing's state", "a will is a publish and needs the grant", nil, willRefused("things/t2/state", 1, false)},
		{"will retained on telemetry", "a will's retain flag is judged", nil, willRefused("things/t1/telemetry/last", 1, true)},
		{"will QoS 2 on telemetry", "a will's QoS is judged", nil, willRefused("things/t1/telemetry/last", 2, false)},
		{"will to $SYS", "a will cannot write $SYS", nil, willRefused("$SYS/broker/clients/connected", 0, false)},
		{"will to a foreign topic, drop mode", "a dropped will is never delivered", []func(*broker.Config){func(c *broker.Config) { c.WillDenied = "drop" }}, func(t *testing.T, e *env) {
			obs := e.observer(t)
			w := &paho.WillMessage{Topic: "things/t2/state", QoS: 1, Payload: []byte("forged will")}
			r := e.mustConnect5("t1", e.idp.token("t1", "publish"), opts5{clean: true, will: w})
			_ = r.conn.Close() // abnormal end: a will would be published now
			t3 := e.thing(t, "t3")
			barrier(t, t3, obs, "things/t3/telemetry/barrier")
			obs.inbox.none(t, "things/t2/state")
		}},

		// Retained messages.
		{"retained vault state to a fleet subscriber", "a receive deny also withholds retained messages", nil, func(t *testing.T, e *env) {
			vault, t1 := e.thing(t, "vault"), e.thing(t, "t1")
			vault.publish(t, "things/vault/state", 1, true, "secret")
			t1.publish(t, "things/t1/state", 1, true, "open")
			app := e.fleet(t)
			app.subscribe(t, 1, "things/+/state")
			app.inbox.wait(t, "things/t1/state")
			app.subscribe(t, 1, "things/+/telemetry/#")
			barrier(t, t1, app, "things/t1/telemetry/barrier")
			app.inbox.none(t, "things/vault/state")
		}},
		{"retained state of t1 to thing t2", "retained messages follow the subscribe grant", nil, func(t *testing.T, e *env) {
			t1 := e.thing(t, "t1")
			t1.publish(t, "things/t1/state", 1, true, "t1 state")
			spy := e.thing(t, "t2")
			if codes := spy.subscribe(t, 1, "things/t2/commands/#", "things/t1/state", "things/+/state"); codes != nil && (!denied(codes, 1) || !denied(codes, 2)) {
				t.Fatalf("SUBACK %x", codes)
			}
			app := e.fleet(t)
			barrier(t, app, spy, "things/t2/commands/barrier")
			onlyUnder(t, spy, "things/t2/commands/")
		}},
		{"resubscribe after a reload removed the grant", "a reload applies to new subscriptions and retained messages", nil, func(t *testing.T, e *env) {
			t1 := e.thing(t, "t1")
			t1.publish(t, "things/t1/state", 1, true, "t1 state")
			app := e.fleet(t)
			app.subscribe(t, 1, "things/+/state", "things/+/telemetry/#")
			app.inbox.wait(t, "things/t1/state")
			reload(t, e, strings.Replace(policy, `"things/+/telemetry/#", "things/+/state", "things/+/status"`, `"things/+/telemetry/#"`, 1))
			if _, err := app.c.Unsubscribe(ctxT(t), &paho.Unsubscribe{Topics: []string{"things/+/state"}}); err != nil {
				t.Fatal(err)
			}
			if codes := app.subscribe(t, 1, "things/+/state"); !denied(codes, 0) {
				t.Fatalf("resubscribe after reload: SUBACK %x", codes)
			}
			t1.publish(t, "things/t1/state", 1, true, "after reload")
			barrier(t, t1, app, "things/t1/telemetry/barrier")
			for _, m := range app.inbox.find("things/t1/state") {
				if m.payload == "after reload" {
					t.Fatal("ESCAPE: state published after the reload was delivered")
				}
			}
		}},

		// Client ids and sessions.
		{"live takeover by another identity", "a client id in use belongs to its identity", []func(*broker.Config){anyClientID}, func(t *testing.T, e *env) {
			owner := e.mustConnect5("shared", e.idp.token("cloud-app", "fleet:read", "fleet:command"), opts5{clean: true})
			owner.subscribe(t, 1, "things/+/telemetry/#")
			if r := e.connect5("shared", e.idp.token("t2", "publish", "subscribe"), opts5{clean: true}); r.code() != 0x87 {
				t.Fatalf("takeover: CONNACK %#x, want 0x87", r.code())
			}
			barrier(t, e.thing(t, "t1"), owner, "things/t1/telemetry/still-mine")
		}},
		{"v3.1.1 takeover by another identity", "the binding holds for 3.1.1 clients", []func(*broker.Config){anyClientID}, func(t *testing.T, e *env) {
			e.mustConnect5("shared", e.idp.token("cloud-app", "fleet:read"), opts5{clean: true})
			if code, _ := connect3(t, e.addr, "shared", e.idp.token("t2", "publish"), true); code != 0x05 {
				t.Fatalf("takeover: CONNACK %#x, want 0x05", code)
			}
		}},
		{"resume another identity's offline session", "a stored session is never inherited by another identity", []func(*broker.Config){anyClientID}, func(t *testing.T, e *env) {
			owner := e.mustConnect5("shared", e.idp.token("cloud-app", "fleet:read"), opts5{clean: true, expiry: 3600})
			owner.subscribe(t, 1, "things/+/telemetry/#")
			_ = owner.c.Disconnect(&paho.Disconnect{})
			waitFor(t, "owner offline", func() bool {
				cl, ok := e.b.Server().Clients.Get("shared")
				return ok && cl.Closed()
			})
			t1 := e.thing(t, "t1")
			t1.publish(t, "things/t1/telemetry/queued", 1, false, "queued for cloud-app")
			spy := e.mustConnect5("shared", e.idp.token("t2", "publish", "subscribe"), opts5{clean: false, expiry: 3600})
			if spy.ack.SessionPresent {
				t.Fatal("ESCAPE: another identity was told the session is present")
			}
			spy.subscribe(t, 1, "things/t2/commands/#")
			t1.publish(t, "things/t1/telemetry/live", 1, false, "live")
			barrier(t, e.fleet(t), spy, "things/t2/commands/barrier")
			onlyUnder(t, spy, "things/t2/commands/")
		}},
		{"client id of another thing", "by default the client id is the thing id", nil, func(t *testing.T, e *env) {
			if r := e.connect5("t1", e.idp.token("t2", "publish"), opts5{clean: true}); r.code() != 0x87 {
				t.Fatalf("CONNACK %#x, want 0x87", r.code())
			}
		}},
		{"empty client id is assigned the own thing id", "an assigned id is bound to the identity", nil, func(t *testing.T, e *env) {
			r := e.mustConnect5("", e.idp.token("t2", "publish"), opts5{clean: true})
			if r.ack.Properties == nil || r.ack.Properties.AssignedClientID != "t2" {
				t.Fatalf("assigned %+v, want t2", r.ack.Properties)
			}
		}},

		// Identity values holding topic syntax.
		{"identity +", "a wildcard identity opens no wildcard", []func(*broker.Config){anyClientID}, wildIdentity("+", "things/+/commands/#", "things/t1/telemetry/x", "things/+/telemetry/x")},
		{"identity #", "a wildcard identity opens no wildcard", []func(*broker.Config){anyClientID}, wildIdentity("#", "things/#", "things/t1/telemetry/x")},
		{"identity a/b", "a level separator in an identity does not reach other levels", []func(*broker.Config){anyClientID}, wildIdentity("a/b", "things/a/b/commands/#", "things/a/b/telemetry/x")},
		{"identity t1/telemetry", "an identity cannot reach into another thing's subtree", []func(*broker.Config){anyClientID}, wildIdentity("t1/telemetry", "things/t1/telemetry/telemetry/x", "things/t1/telemetry/commands/#")},

		// Tokens over time.
		{"re-auth as another identity", "re-authentication cannot change who the session is", nil, func(t *testing.T, e *env) {
			r := e.mustConnect5("t1", e.idp.token("t1", "publish"), opts5{clean: true, authData: true})
			resp, err := r.c.Authenticate(ctxT(t), &paho.Auth{ReasonCode: 0x19,
				Properties: &paho.AuthProperties{AuthMethod: "OAUTH2-JWT", AuthData: []byte(e.idp.token("cloud-app", "fleet:read", "fleet:command"))}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Success || resp.ReasonCode != 0x87 {
				t.Fatalf("re-auth as cloud-app: %+v, want DISCONNECT 0x87", resp)
			}
			if got := r.publish(t, "things/t2/commands/x", 1, false, "as cloud-app"); got == 0 {
				t.Fatal("ESCAPE: published a command after re-authenticating as the cloud app")
			}
		}},
		{"publish after expiry", "nothing is published in a thing's name after its token expired", nil, func(t *testing.T, e *env) {
			obs := e.observer(t)
			exp := time.Now().Add(2 * time.Second)
			r := e.mustConnect5("t1", e.idp.tokenWith("t1", func(m map[string]any) { m["exp"] = exp.Unix() }), opts5{clean: true})
			select {
			case d := <-r.discon:
				if d.ReasonCode != 0xA0 {
					t.Fatalf("DISCONNECT %#x, want 0xa0", d.ReasonCode)
				}
			case <-time.After(time.Until(exp) + 5*time.Second):
				t.Fatal("no DISCONNECT at expiry")
			}
			r.publish(t, "things/t1/telemetry/late", 1, false, "after expiry")
			barrier(t, e.thing(t, "t3"), obs, "things/t3/telemetry/barrier")
			obs.inbox.none(t, "things/t1/telemetry/late")
			if late := e.connect5("t1", e.idp.tokenWith("t1", func(m map[string]any) { m["exp"] = exp.Unix() }), opts5{clean: true}); late.code() != 0x86 {
				t.Fatalf("reconnect with the expired token: CONNACK %#x, want 0x86", late.code())
			}
		}},

		// Topic aliases (raw packets: clients do not send what the broker never offered).
		{"topic alias set on an allowed topic", "aliases are refused, so no alias can later stand for a checked topic", nil, aliasEscape(false)},
		{"topic alias alone, empty topic", "a publish naming no topic is never delivered", nil, aliasEscape(true)},

		// Shared subscriptions and options.
		{"NoLocal on a shared subscription", "an invalid option combination grants nothing", nil, func(t *testing.T, e *env) {
			spy := e.thing(t, "t2")
			if codes := spy.subscribeOpts(t, 1, true, "$share/g/things/t2/commands/#"); !denied(codes, 0) {
				t.Fatalf("SUBACK %x, want a refusal", codes)
			}
		}},
		{"two identities in one share group", "a share group does not share messages with an identity lacking the grant", nil, func(t *testing.T, e *env) {
			t1, spy := e.thing(t, "t1"), e.thing(t, "t2")
			if codes := t1.subscribe(t, 1, "$share/g/things/t1/commands/#"); denied(codes, 0) {
				t.Fatalf("own shared subscription refused: %x", codes)
			}
			if codes := spy.subscribe(t, 1, "things/t2/commands/#", "$share/g/things/t1/commands/#"); !denied(codes, 1) {
				t.Fatalf("SUBACK %x", codes)
			}
			app := e.fleet(t)
			const n = 20
			for i := 0; i < n; i++ {
				app.publish(t, "things/t1/commands/c", 1, false, "command")
			}
			barrier(t, app, spy, "things/t2/commands/barrier")
			onlyUnder(t, spy, "things/t2/commands/")
			waitFor(t, "all commands at t1", func() bool { return len(t1.inbox.find("things/t1/commands/c")) == n })
		}},
		{"overlapping filters in one SUBSCRIBE", "each filter is judged alone; a granted one carries no denied one", nil, subscribeEscape("things/+/+/#")},
		{"receive deny overlapping a granted subscription", "a receive deny beats a matching subscription", nil, func(t *testing.T, e *env) {
			app := e.fleet(t)
			app.subscribe(t, 1, "things/+/telemetry/#")
			vault, t1 := e.thing(t, "vault"), e.thing(t, "t1")
			vault.publish(t, "things/vault/telemetry/secret", 1, false, "secret")
			barrier(t, t1, app, "things/t1/telemetry/barrier")
			app.inbox.none(t, "things/vault/telemetry/secret")
		}},
		{"subscribe QoS 2 where max_qos is 1", "QoS limits hold on subscriptions", nil, func(t *testing.T, e *env) {
			t1 := e.thing(t, "t1")
			if codes := t1.subscribe(t, 2, "things/t1/commands/#"); codes == nil || codes[0] != 1 {
				t.Fatalf("SUBACK %x, want granted QoS 1", codes)
			}
			e.fleet(t).publish(t, "things/t1/commands/x", 2, false, "qos2")
			if m := t1.inbox.wait(t, "things/t1/commands/x"); m.qos > 1 {
				t.Fatalf("delivered at QoS %d, grant is 1", m.qos)
			}
		}},
		{"v3.1.1 denied QoS 1 publish", "3.1.1 has no negative PUBACK: the connection ends and nothing is delivered", nil, func(t *testing.T, e *env) {
			obs := e.observer(t)
			code, c := connect3(t, e.addr, "t1", e.idp.token("t1", "publish"), true)
			if code != 0 {
				t.Fatalf("connect %#x", code)
			}
			c.Publish("things/t2/telemetry/x", 1, false, "escaped")
			waitFor(t, "connection closed", func() bool { return !c.IsConnectionOpen() })
			barrier(t, e.thing(t, "t3"), obs, "things/t3/telemetry/barrier")
			obs.inbox.none(t, "things/t2/telemetry/x")
		}},

		// Identities that share a plain id: a thing named like an OAuth2 client, a
		// subject of another issuer.
		{"thing (usr!cloud-app) takes over the client (age!cloud-app)", "a client id belongs to the whole principal, not the plain id", nil, sameNameTakeover("(age!cloud-app)", "(usr!cloud-app)")},
		{"client (age!cloud-app) takes over the thing (usr!cloud-app)", "a client id belongs to the whole principal, not the plain id", nil, sameNameTakeover("(usr!cloud-app)", "(age!cloud-app)")},
		{"thing (usr!cloud-app) resumes the offline client (age!cloud-app)", "a stored session is never inherited by a same-named identity of another kind", nil, func(t *testing.T, e *env) {
			owner := e.mustConnect5("cloud-app", e.idp.token("(age!cloud-app)", "fleet:read"), opts5{expiry: 3600})
			owner.subscribe(t, 1, "things/+/telemetry/#")
			_ = owner.c.Disconnect(&paho.Disconnect{})
			waitFor(t, "owner offline", func() bool {
				cl, ok := e.b.Server().Clients.Get("cloud-app")
				return ok && cl.Closed()
			})
			rogue := e.mustConnect5("cloud-app", e.idp.token("(usr!cloud-app)", "publish", "subscribe"), opts5{expiry: 3600})
			if rogue.ack.SessionPresent {
				t.Fatal("ESCAPE: a thing named like the client was given the client's stored session")
			}
		}},
		{"same subject from another issuer takes over", "a subject of one issuer is not the same identity as that subject of another", []func(*broker.Config){introspectionOnly}, func(t *testing.T, e *env) {
			owner := e.mustConnect5("cloud-app", e.idp.opaqueWith("cloud-app", func(m map[string]any) { m["scope"] = "fleet:read" }), opts5{expiry: 3600})
			owner.subscribe(t, 1, "things/+/telemetry/#")
			other := e.idp.opaqueWith("cloud-app", func(m map[string]any) { m["iss"] = "https://other.example" })
			if r := e.connect5("cloud-app", other, opts5{clean: true}); r.code() != 0x87 {
				t.Fatalf("takeover by another issuer's cloud-app: CONNACK %#x, want 0x87", r.code())
			}
			t1 := e.mustConnect5("t1", e.idp.opaqueToken("t1", time.Hour, "publish"), opts5{clean: true})
			barrier(t, t1, owner, "things/t1/telemetry/still-mine")
			select {
			case d := <-owner.discon:
				t.Fatalf("the owner was disconnected (%#x)", d.ReasonCode)
			default:
			}
		}},
		{"re-auth as a same-named identity of another kind", "re-authentication cannot change the principal, even when the plain id stays", nil, func(t *testing.T, e *env) {
			r := e.mustConnect5("cloud-app", e.idp.token("(age!cloud-app)", "fleet:read"), opts5{clean: true, authData: true})
			resp, err := r.c.Authenticate(ctxT(t), &paho.Auth{ReasonCode: 0x19,
				Properties: &paho.AuthProperties{AuthMethod: "OAUTH2-JWT", AuthData: []byte(e.idp.token("(usr!cloud-app)", "publish", "subscribe"))}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Success || resp.ReasonCode != 0x87 {
				t.Fatalf("re-auth as (usr!cloud-app): %+v, want DISCONNECT 0x87", resp)
			}
		}},

		// What a re-check of an introspected token learns is put in force.
		{"re-check narrows the scopes", "a subscription the token's current scopes no longer allow is removed", []func(*broker.Config){recheckEvery200ms}, func(t *testing.T, e *env) {
			tok := e.idp.opaqueWith("cloud-app", func(m map[string]any) { m["scope"] = "fleet:read" })
			app := e.mustConnect5("cloud-app", tok, opts5{clean: true})
			if codes := app.subscribe(t, 1, "things/+/telemetry/#"); denied(codes, 0) {
				t.Fatalf("SUBACK %x", codes)
			}
			e.idp.setClaims(tok, func(m map[string]any) { m["scope"] = "publish" })
			waitFor(t, "the subscription removed after a re-check", func() bool {
				cl, ok := e.b.Server().Clients.Get("cloud-app")
				return ok && len(cl.State.Subscriptions.GetAll()) == 0
			})
			obs := e.observer(t)
			t1 := e.mustConnect5("t1", e.idp.opaqueToken("t1", time.Hour, "publish"), opts5{clean: true})
			t1.publish(t, "things/t1/telemetry/after", 1, false, "after the scope was withdrawn")
			barrier(t, t1, obs, "things/t1/telemetry/barrier")
			app.inbox.none(t, "things/t1/telemetry/after")
		}},
		{"re-check learns an exp", "an exp first learnt by a re-check ends the session at that time (0xA0)", []func(*broker.Config){recheckEvery200ms}, func(t *testing.T, e *env) {
			tok := e.idp.opaqueWith("t1", func(m map[string]any) { m["exp"] = nil })
			r := e.mustConnect5("t1", tok, opts5{clean: true})
			exp := time.Now().Add(1500 * time.Millisecond)
			e.idp.setClaims(tok, func(m map[string]any) { m["exp"] = float64(exp.UnixMilli()) / 1000 })
			select {
			case d := <-r.discon:
				if d.ReasonCode != 0xA0 {
					t.Fatalf("DISCONNECT %#x, want 0xa0 (the expiry timer, not a later re-check)", d.ReasonCode)
				}
				if early := time.Until(exp); early > 50*time.Millisecond {
					t.Fatalf("disconnected %s before exp", early)
				}
			case <-time.After(time.Until(exp) + 5*time.Second):
				t.Fatal("no DISCONNECT at the exp a re-check learnt")
			}
		}},
		{"no exp and re-checks disabled", "a session must have an end: exp or a re-check", []func(*broker.Config){func(c *broker.Config) { c.RevalidateInterval = -1 }}, func(t *testing.T, e *env) {
			tok := e.idp.opaqueWith("t1", func(m map[string]any) { m["exp"] = nil })
			if r := e.connect5("t1", tok, opts5{clean: true}); r.code() != 0x86 {
				t.Fatalf("CONNACK %#x, want 0x86", r.code())
			}
		}},
		{"delayed will after a reload removed the grant", "a delayed will is judged by the policy in force when it is sent", nil, delayedWillEscape(willAfterReload)},
		{"delayed will after the token expired", "no delayed will goes out in a thing's name after its token expired", nil, delayedWillEscape(willAfterExpiry)},
		{"delayed will after the token was revoked", "no delayed will goes out in a thing's name after its token was revoked", nil, delayedWillEscape(willAfterRevocation)},
	}
}

// sameNameTakeover has the principal owner hold a persistent session under client id
// cloud-app and the principal rogue, whose plain id is the same, connect under it:
// CONNACK 0x87, the owner stays connected and keeps receiving, and its stored session
// resumes whole.
func sameNameTakeover(owner, rogue string) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		ownerTok := e.idp.token(owner, "fleet:read")
		o := e.mustConnect5("cloud-app", ownerTok, opts5{expiry: 3600})
		if codes := o.subscribe(t, 1, "things/+/telemetry/#"); denied(codes, 0) {
			t.Fatalf("SUBACK %x", codes)
		}
		for _, clean := range []bool{true, false} {
			if r := e.connect5("cloud-app", e.idp.token(rogue, "publish", "subscribe"), opts5{clean: clean, expiry: 3600}); r.code() != 0x87 {
				t.Fatalf("%s as cloud-app (clean %v): CONNACK %#x, want 0x87", rogue, clean, r.code())
			}
		}
		t1 := e.thing(t, "t1")
		barrier(t, t1, o, "things/t1/telemetry/still-mine")
		select {
		case d := <-o.discon:
			t.Fatalf("the owner was disconnected (%#x)", d.ReasonCode)
		default:
		}
		_ = o.c.Disconnect(&paho.Disconnect{})
		waitFor(t, "owner offline", func() bool {
			cl, ok := e.b.Server().Clients.Get("cloud-app")
			return ok && cl.Closed()
		})
		t1.publish(t, "things/t1/telemetry/queued", 1, false, "queued for the owner")
		back := e.mustConnect5("cloud-app", ownerTok, opts5{expiry: 3600})
		if !back.ack.SessionPresent {
			t.Fatal("the owner's stored session is gone")
		}
		back.inbox.wait(t, "things/t1/telemetry/queued")
		barrier(t, t1, back, "things/t1/telemetry/after")
	}
}

// introspectionOnly has every token introspected, with no issuer configured: the
// answers' issuers are not checked, as for a provider serving several realms.
func introspectionOnly(c *broker.Config) { c.Issuer = "" }

// recheckEvery200ms re-checks introspected tokens every 200 ms.
func recheckEvery200ms(c *broker.Config) { c.RevalidateInterval = 200 * time.Millisecond }

// aliasEscape sends an alias-setting PUBLISH on an allowed topic and then, unless
// aliasOnly, an alias-only one; the broker must refuse the alias (DISCONNECT 0x94)
// and deliver neither.
func aliasEscape(aliasOnly bool) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		obs := e.observer(t)
		r := mqtttest.Connect(t, e.addr, "t1", e.idp.token("t1", "publish"))
		topic := "things/t1/telemetry/aliased"
		if aliasOnly {
			topic = ""
		}
		_ = r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1,
			TopicName: topic, Properties: packets.Properties{TopicAlias: 1, TopicAliasFlag: true}, Payload: []byte("x")})
		if pk, ok := r.Read(5 * time.Second); ok {
			if pk.FixedHeader.Type == packets.Puback && pk.ReasonCode == 0 {
				t.Fatal("ESCAPE: a PUBLISH with a topic alias was accepted")
			}
			if pk.FixedHeader.Type == packets.Disconnect && pk.ReasonCode != packets.ErrTopicAliasInvalid.Code {
				t.Logf("DISCONNECT %#x (0x94 expected)", pk.ReasonCode)
			}
		}
		_ = r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 0},
			Properties: packets.Properties{TopicAlias: 1, TopicAliasFlag: true}, Payload: []byte("via alias")})
		barrier(t, e.thing(t, "t3"), obs, "things/t3/telemetry/barrier")
		obs.inbox.none(t, "things/t1/telemetry/aliased")
	}
}

// reload rewrites the policy file and makes the broker read it.
func reload(t *testing.T, e *env, text string) {
	t.Helper()
	tmp := e.policy + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.policy); err != nil {
		t.Fatal(err)
	}
	if err := e.b.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
}

// ctxT is a context bounded to 10 s for one client call.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAuthorizationEscapeCorpus(t *testing.T) {
	p := newIDP(t)
	cases := escapeCases()
	var passed atomic.Int64
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Logf("protects: %s", c.property)
			c.run(t, newEnv(t, p, c.mod...))
			if !t.Failed() {
				passed.Add(1)
			}
		})
	}
	if len(cases) < 30 {
		t.Fatalf("corpus has %d cases, want at least 30", len(cases))
	}
	t.Logf("authorization escapes: %d cases tried, %d held (0 escapes in those)", len(cases), passed.Load())
}
