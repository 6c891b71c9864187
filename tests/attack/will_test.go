package attack

import (
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// willEscape is what happens between a thing's connection dropping and its delayed
// will falling due.
type willEscape int

const (
	willControl         willEscape = iota // nothing: the will must arrive
	willAfterReload                       // a policy reload removes the grant
	willAfterExpiry                       // the token expires
	willAfterRevocation                   // the token is revoked at the identity provider
)

// delayedWillEscape connects t1 with a retained will on its own status topic (granted
// when it connects) and a 2 s will delay, drops the connection, lets the escape
// happen during the delay and checks that the will reaches neither a subscriber nor
// the retained store. The control case checks the opposite, so that a broker that
// never sends delayed wills cannot pass.
func delayedWillEscape(kind willEscape) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		obs := e.observer(t)
		const topic = "things/t1/status"
		token := e.idp.token("t1", "publish")
		var opaque string
		switch kind {
		case willAfterExpiry:
			// Valid for the connection, lapsed before the will is due.
			token = e.idp.tokenWith("t1", func(c map[string]any) { c["exp"] = time.Now().Unix() + 2 })
		case willAfterRevocation:
			opaque = e.idp.opaqueToken("t1", time.Hour, "publish")
			token = opaque
		}
		w := &paho.WillMessage{Topic: topic, QoS: 1, Retain: true, Payload: []byte("delayed will")}
		r := e.mustConnect5("t1", token, opts5{expiry: 60, will: w, delay: 2})
		denials := willDenials(t, e)
		_ = r.conn.Close() // an unclean end: the will is due after its delay
		waitFor(t, "t1 disconnected", func() bool { return e.b.Hook().ActiveSessions() == 1 })

		switch kind {
		case willAfterReload:
			reload(t, e, strings.Replace(policy, `"things/{sub}/state", "things/{sub}/status"`, `"things/{sub}/state"`, 1))
		case willAfterRevocation:
			e.idp.mu.Lock()
			delete(e.idp.opaque, opaque)
			e.idp.mu.Unlock()
		}

		if kind == willControl {
			obs.inbox.wait(t, topic)
		} else {
			// The decision is made once the delay has passed; wait for it instead of
			// guessing a time.
			waitFor(t, "the delayed will judged", func() bool {
				return willDenials(t, e) > denials || len(obs.inbox.find(topic)) > 0
			})
			barrier(t, e.thing(t, "t3"), obs, "things/t3/telemetry/barrier")
			obs.inbox.none(t, topic)
		}
		late := e.mustConnect5("observer-2", e.idp.token("observer-2", "observe"), opts5{clean: true})
		late.subscribe(t, 1, topic, "things/t3/state")
		if got := e.thing(t, "t3").publish(t, "things/t3/state", 1, true, "barrier"); got != 0 {
			t.Fatalf("barrier publish: %#x", got)
		}
		late.inbox.wait(t, "things/t3/state")
		if kind == willControl {
			late.inbox.wait(t, topic)
		} else {
			late.inbox.none(t, topic) // not retained either
		}
	}
}

// TestDelayedWillControl is the control of the delayed-will escape cases: a delayed
// will that is still allowed when due is delivered and retained.
func TestDelayedWillControl(t *testing.T) {
	delayedWillEscape(willControl)(t, newEnv(t, newIDP(t)))
}

// willDenials reads imb_will_denials_total from the broker's registry.
func willDenials(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.b.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "imb_will_denials_total" {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

// TestDelayedWillCancelledByReconnect: a thing that reconnects before its will delay
// has passed gets no will sent in its name [MQTT-3.1.3-9], now that the broker, not
// mochi, holds delayed wills.
func TestDelayedWillCancelledByReconnect(t *testing.T) {
	e := newEnv(t, newIDP(t))
	obs := e.observer(t)
	const topic = "things/t1/status"
	w := &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("delayed will")}
	r := e.mustConnect5("t1", e.idp.token("t1", "publish"), opts5{expiry: 60, will: w, delay: 1})
	_ = r.conn.Close()
	waitFor(t, "t1 disconnected", func() bool { return e.b.Hook().ActiveSessions() == 1 })
	back := e.mustConnect5("t1", e.idp.token("t1", "publish"), opts5{expiry: 60})
	time.Sleep(2 * time.Second) // past the delay: no event marks a will that is not sent
	barrier(t, back, obs, "things/t1/telemetry/barrier")
	obs.inbox.none(t, topic)
}
