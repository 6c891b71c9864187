package hooks_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/broker"
)

// fleet connects the cloud application: it may read every thing's telemetry and
// state and command any thing.
func (e *env) fleet(t *testing.T) *v5 {
	t.Helper()
	app := e.connect5("cloud-app", e.jwt("cloud-app", "fleet:read", "fleet:command"), v5opts{clean: true})
	if app.err != nil {
		t.Fatal(app.err)
	}
	return app
}

// barrier publishes an allowed message from t1 and waits for app to receive it:
// anything published before it on the same path has been delivered or not by then.
func barrier(t *testing.T, thing, app *v5, thingID string) {
	t.Helper()
	thing.publish(t, "things/"+thingID+"/telemetry/barrier", 1, false, "barrier")
	app.expectMsg(t, "things/"+thingID+"/telemetry/barrier")
}

func TestPublishDecisions(t *testing.T) {
	e := newEnv(t)
	app := e.fleet(t)
	if got := app.subscribe(t, "things/+/telemetry/#", 1); got != 1 {
		t.Fatalf("fleet subscribe: %#x", got)
	}
	if got := app.subscribe(t, "things/+/state", 1); got != 1 {
		t.Fatalf("fleet subscribe state: %#x", got)
	}
	thing := e.connect5("t1", e.jwt("t1", "publish", "subscribe"), v5opts{clean: true})
	if thing.err != nil {
		t.Fatal(thing.err)
	}

	cases := []struct {
		name   string
		topic  string
		qos    byte
		retain bool
		want   byte
	}{
		{"own telemetry qos1", "things/t1/telemetry/temp", 1, false, 0x00},
		{"another thing's telemetry", "things/t2/telemetry/temp", 1, false, 0x87},
		{"qos above the rule's maximum", "things/t1/telemetry/temp", 2, false, 0x87},
		{"retain where the rule forbids it", "things/t1/telemetry/temp", 1, true, 0x87},
		{"retained state", "things/t1/state", 1, true, 0x00},
		{"firmware deny wins", "things/t1/firmware/v2", 1, false, 0x87},
		{"command to itself (no fleet:command)", "things/t1/commands/set", 1, false, 0x87},
	}
	for _, c := range cases {
		if got := thing.publish(t, c.topic, c.qos, c.retain, c.name); got != c.want {
			t.Errorf("%s: PUBACK %#x, want %#x", c.name, got, c.want)
		}
	}
	// QoS 0 denials are dropped silently: the subscriber never sees them.
	thing.publish(t, "things/t2/telemetry/temp", 0, false, "qos0 foreign")
	barrier(t, thing, app, "t1")
	app.expectNoMsg(t, "things/t2/telemetry/temp", 200*time.Millisecond)
	if len(e.audit.find("deny")) == 0 {
		t.Fatal("denials are not audited")
	}
}

func TestPublishDeniedV311ClosesConnection(t *testing.T) {
	e := newEnv(t)
	code, c := connect3(t, e.addr, "t1", e.jwt("t1", "publish"), true)
	if code != 0 {
		t.Fatalf("connect: %#x", code)
	}
	tok := c.Publish("things/t1/telemetry/a", 1, false, "ok")
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("allowed publish: %v", tok.Error())
	}
	c.Publish("things/t2/telemetry/a", 1, false, "denied")
	deadline := time.Now().Add(10 * time.Second)
	for c.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c.IsConnectionOpen() {
		t.Fatal("v3.1.1 client publishing a denied QoS 1 message is still connected")
	}
}

func TestSubscribeDecisions(t *testing.T) {
	e := newEnv(t)
	thing := e.connect5("t1", e.jwt("t1", "publish", "subscribe"), v5opts{clean: true})
	if thing.err != nil {
		t.Fatal(thing.err)
	}
	cases := []struct {
		filter string
		qos    byte
		want   byte
	}{
		{"things/t1/commands/#", 1, 1},
		{"things/t1/commands/+", 2, 2},
		{"things/+/commands/#", 1, 0x87},
		{"#", 0, 0x87},
		{"+/t1/commands/#", 0, 0x87},
		{"things/t2/commands/#", 0, 0x87},
		{"$share/g/things/t1/commands/#", 1, 1},
		{"$SHARE/g/things/+/commands/#", 1, 0x87},
		{"$Share/g/#", 1, 0x87},
		{"$SYS/#", 0, 0x87},
		{"things/t1/telemetry/#", 0, 0x87}, // publish-only grant
	}
	for _, c := range cases {
		if got := thing.subscribe(t, c.filter, c.qos); got != c.want {
			t.Errorf("subscribe %s: SUBACK %#x, want %#x", c.filter, got, c.want)
		}
	}
}

func TestSubscribeDeniedV311Gets0x80(t *testing.T) {
	e := newEnv(t)
	code, c := connect3(t, e.addr, "t1", e.jwt("t1", "subscribe"), true)
	if code != 0 {
		t.Fatalf("connect: %#x", code)
	}
	defer c.Disconnect(100)
	for filter, want := range map[string]byte{"things/t1/commands/#": 0, "things/+/commands/#": 0x80, "#": 0x80} {
		tok := c.Subscribe(filter, 0, nil)
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("suback timed out")
		}
		got := tok.(interface{ Result() map[string]byte }).Result()[filter]
		if got != want {
			t.Errorf("subscribe %s: %#x, want %#x", filter, got, want)
		}
	}
}

func TestSharedSubscriptionCannotWidenGrant(t *testing.T) {
	e := newEnv(t)
	spy := e.connect5("t2", e.jwt("t2", "subscribe"), v5opts{clean: true})
	if spy.err != nil {
		t.Fatal(spy.err)
	}
	for _, f := range []string{"$share/g/things/t1/commands/#", "$SHARE/g/things/+/commands/#", "$sHaRe/x/things/#"} {
		if got := spy.subscribe(t, f, 0); got != 0x87 {
			t.Fatalf("%s: SUBACK %#x, want 0x87", f, got)
		}
	}
	app := e.fleet(t)
	app.subscribe(t, "things/+/telemetry/#", 0)
	thing := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	app.publish(t, "things/t1/commands/x", 0, false, "cmd")
	barrier(t, thing, app, "t1")
	spy.expectNoMsg(t, "things/t1/commands/x", 200*time.Millisecond)
}

func TestRetainedMessageDoesNotLeak(t *testing.T) {
	e := newEnv(t)
	vault := e.connect5("vault", e.jwt("vault", "publish"), v5opts{clean: true})
	t1 := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	if vault.err != nil || t1.err != nil {
		t.Fatal(vault.err, t1.err)
	}
	if got := vault.publish(t, "things/vault/state", 1, true, "secret"); got != 0 {
		t.Fatalf("vault state: %#x", got)
	}
	if got := t1.publish(t, "things/t1/state", 1, true, "open"); got != 0 {
		t.Fatalf("t1 state: %#x", got)
	}
	app := e.fleet(t)
	if got := app.subscribe(t, "things/+/state", 1); got != 1 {
		t.Fatalf("subscribe: %#x", got)
	}
	app.expectMsg(t, "things/t1/state")
	app.expectNoMsg(t, "things/vault/state", 300*time.Millisecond)
	app.subscribe(t, "things/+/telemetry/#", 1)
	// Live messages are withheld the same way.
	vault.publish(t, "things/vault/state", 1, true, "secret2")
	barrier(t, t1, app, "t1")
	app.expectNoMsg(t, "things/vault/state", 200*time.Millisecond)
}

func TestWillToForeignTopicRefused(t *testing.T) {
	e := newEnv(t)
	will := &paho.WillMessage{Topic: "things/t2/state", Payload: []byte("offline"), QoS: 1}
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, will: will})
	if r.code() != 0x87 {
		t.Fatalf("CONNACK %#x, want 0x87", r.code())
	}
	own := &paho.WillMessage{Topic: "things/t1/status", Payload: []byte("offline"), QoS: 1}
	if r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, will: own}); r.code() != 0 {
		t.Fatalf("own will: CONNACK %#x", r.code())
	}
}

func TestWillDroppedNeverDelivered(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.WillDenied = "drop" })
	app := e.fleet(t)
	app.subscribe(t, "things/+/state", 1)
	app.subscribe(t, "things/+/status", 1)
	app.subscribe(t, "things/+/telemetry/#", 1)
	will := &paho.WillMessage{Topic: "things/t2/state", Payload: []byte("forged"), QoS: 1}
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, will: will})
	if r.code() != 0 {
		t.Fatalf("CONNACK %#x, want success with the will dropped", r.code())
	}
	r.conn.Close() // abnormal end: a will would be sent now
	other := e.connect5("t3", e.jwt("t3", "publish"), v5opts{clean: true})
	barrier(t, other, app, "t3")
	app.expectNoMsg(t, "things/t2/state", 300*time.Millisecond)
}

func TestWillRejudgedWhenSent(t *testing.T) {
	e := newEnv(t)
	app := e.fleet(t)
	app.subscribe(t, "things/+/status", 1)
	app.subscribe(t, "things/+/telemetry/#", 1)
	will := &paho.WillMessage{Topic: "things/t1/status", Payload: []byte("offline"), QoS: 1}
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, will: will})
	if r.code() != 0 {
		t.Fatalf("CONNACK %#x", r.code())
	}
	// The grant behind the will goes away while t1 is connected.
	writePolicy(t, e, withoutRule(testPolicy, "state"))
	waitFor(t, "policy reload", func() bool { return len(e.audit.find("policy_reload")) > 0 })
	r.conn.Close()
	other := e.connect5("t3", e.jwt("t3", "publish"), v5opts{clean: true})
	barrier(t, other, app, "t3")
	app.expectNoMsg(t, "things/t1/status", 300*time.Millisecond)

	// And with the grant in place, the will is delivered (the test can fail).
	writePolicy(t, e, testPolicy)
	waitFor(t, "policy reload", func() bool { return len(e.audit.find("policy_reload")) > 1 })
	r = e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, will: will})
	r.conn.Close()
	app.expectMsg(t, "things/t1/status")
}
