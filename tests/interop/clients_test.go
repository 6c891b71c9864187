package interop

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// view is what a client library reports for one outcome: the event its driver
// wrote, the library's numeric code and its text.
type view struct {
	ev   string
	code int
	text string
}

// library is one client library at one protocol version, with what it reports
// where libraries differ.
type library struct {
	name    string
	version int // 4 (MQTT 3.1.1) or 5
	start   func(t *testing.T) *driver
	closed  string // the event that says the connection has ended

	badToken      view // CONNACK 0x86 / 0x04
	notAuthorized view // CONNACK 0x87 / 0x05
	subDenied     view // SUBACK 0x87 / 0x80: code is granted[0]
	subGranted    view // SUBACK granted QoS 1
	pubDenied     view // a refused QoS 1 PUBLISH
	expired       view // the token expires during the session
}

func mqttJS(t *testing.T) *driver {
	nodeModule(t, "mqtt")
	return startDriver(t, "MQTT.js", ".", "node", "mqttjs_driver.mjs")
}

func pahoPy(t *testing.T) *driver {
	py := pahoPython(t)
	return startDriver(t, "paho", ".", py, "paho_driver.py")
}

// libraries are the client libraries and their views. MQTT 3.1.1 has no negative
// PUBACK, so a refused QoS 1 publish there ends the connection.
var libraries = []library{
	{
		name: "MQTT.js", version: 5, start: mqttJS, closed: "close",
		badToken:      view{"error", 134, "Connection refused: Bad User Name or Password"},
		notAuthorized: view{"error", 135, "Connection refused: Not authorized"},
		subDenied:     view{"suback", 135, "Subscribe error: Not authorized"},
		subGranted:    view{"suback", 1, ""},
		pubDenied:     view{"puback", 135, "Publish error: Not authorized"},
		expired:       view{"disconnect", 0xA0, "maximum connect time"},
	},
	{
		name: "MQTT.js", version: 4, start: mqttJS, closed: "close",
		badToken:      view{"error", 4, "Connection refused: Bad username or password"},
		notAuthorized: view{"error", 5, "Connection refused: Not authorized"},
		subDenied:     view{"suback", 128, "Subscribe error: Unspecified error"},
		subGranted:    view{"suback", 1, ""},
		pubDenied:     view{"close", 0, ""},
		expired:       view{"close", 0, ""},
	},
	{
		name: "paho", version: 5, start: pahoPy, closed: "disconnect",
		badToken:      view{"connack", 134, "Bad user name or password"},
		notAuthorized: view{"connack", 135, "Not authorized"},
		subDenied:     view{"suback", 135, "Not authorized"},
		subGranted:    view{"suback", 1, "Granted QoS 1"},
		// paho-mqtt 1.6 reports every PUBACK as success, whatever its reason
		// code: its view of the refusal is a completed publish. Non-delivery is
		// asserted at the subscriber.
		pubDenied: view{"puback", 0, ""},
		expired:   view{"disconnect", 0xA0, "Maximum connect time"},
	},
	{
		name: "paho", version: 4, start: pahoPy, closed: "disconnect",
		badToken:      view{"connack", 4, "Connection Refused: bad user name or password."},
		notAuthorized: view{"connack", 5, "Connection Refused: not authorised."},
		subDenied:     view{"suback", 128, ""},
		subGranted:    view{"suback", 1, ""},
		// 3.1.1 has no negative PUBACK and no server DISCONNECT: the broker closes.
		pubDenied: view{"disconnect", 7, "The connection was lost."},
		expired:   view{"disconnect", 7, "The connection was lost."},
	},
}

// check asserts that got is the view want; code and text are compared when want
// sets them (close carries neither).
func check(t *testing.T, what string, got event, want view) {
	t.Helper()
	code := got.Code
	if got.Ev == "suback" && len(got.Granted) == 1 {
		code = got.Granted[0]
	}
	if got.Ev != want.ev || (want.ev != "close" && (code != want.code || got.Text != want.text)) {
		t.Fatalf("%s: client saw %v; want %s code %d %q", what, got, want.ev, want.code, want.text)
	}
}

func (l library) String() string { return fmt.Sprintf("%s/v%d", l.name, l.version) }

// connect opens a connection with the token as password (and the thing id as user
// name, which MQTT 3.1.1 requires with a password) and expects CONNACK 0.
func (l library) connect(t *testing.T, e *env, clientID, token string, will *willCmd) *driver {
	t.Helper()
	d := l.start(t)
	d.send(connectCmd{url: e.url(), version: l.version, clientID: clientID, username: clientID, password: token, will: will}.cmd())
	if ack := d.expect("connack"); ack.Code != 0 {
		t.Fatalf("%s connect as %s: %v", l, clientID, ack)
	}
	return d
}

func TestClientLibraries(t *testing.T) {
	for _, l := range libraries {
		t.Run(l.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			t.Run("connect refused", func(t *testing.T) { testRefused(t, e, l) })
			t.Run("publish and subscribe", func(t *testing.T) { testPubSub(t, e, l) })
			t.Run("retained and will", func(t *testing.T) { testRetainedWill(t, e, l) })
			t.Run("token expiry", func(t *testing.T) { testExpiry(t, e, l) })
		})
	}
}

func testRefused(t *testing.T, e *env, l library) {
	good := e.thingToken(thing1, time.Hour)
	cases := []struct {
		name, clientID, token string
		will                  *willCmd
		want                  view
	}{
		{"garbage token", thing1, "not-a-token", nil, l.badToken},
		{"expired token", thing1, e.expiredToken(thing1), nil, l.badToken},
		{"client id of another thing", thing2, good, nil, l.notAuthorized},
		{"will to another thing's state", thing1, good, &willCmd{"things/" + thing2 + "/state", "x", 1, false}, l.notAuthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := l.start(t)
			d.send(connectCmd{url: e.url(), version: l.version, clientID: tc.clientID, username: tc.clientID,
				password: tc.token, will: tc.will}.cmd())
			check(t, "connect", d.expect(tc.want.ev), tc.want)
			d.expect(l.closed)
			if slices.ContainsFunc(d.seen, func(e event) bool { return e.Ev == "connack" && e.Code == 0 }) {
				t.Fatalf("refused connection also reported as accepted: %v", d.seen)
			}
		})
	}
}

func testPubSub(t *testing.T, e *env, l library) {
	cloud := l.connect(t, e, cloudApp, e.cloudToken(), nil)
	cloud.send(subscribeCmd("things/+/telemetry/#", 1))
	check(t, "cloud subscribe", cloud.expect("suback"), l.subGranted)

	thing := l.connect(t, e, thing1, e.thingToken(thing1, time.Hour), nil)
	for _, f := range []string{"things/" + thing2 + "/commands/#", "things/+/commands/#", "#", "things/" + thing1 + "/telemetry/#"} {
		thing.send(subscribeCmd(f, 1))
		check(t, "subscribe "+f, thing.expect("suback"), l.subDenied)
	}
	thing.send(subscribeCmd("things/"+thing1+"/commands/#", 1))
	check(t, "subscribe own commands", thing.expect("suback"), l.subGranted)

	for qos := range 2 {
		topic := fmt.Sprintf("things/%s/telemetry/q%d", thing1, qos)
		thing.send(publishCmd(topic, "21.5", qos, false))
		if ack := thing.expect("puback"); ack.Code != 0 {
			t.Fatalf("publish %s: %v", topic, ack)
		}
		if m := cloud.expectMsg(topic); m.Payload != "21.5" || m.QoS != qos || m.Retain {
			t.Fatalf("cloud received %v", m)
		}
	}
	command := "things/" + thing1 + "/commands/setpoint"
	cloud.send(publishCmd(command, "19", 1, false))
	if ack := cloud.expect("puback"); ack.Code != 0 {
		t.Fatalf("cloud command: %v", ack)
	}
	if m := thing.expectMsg(command); m.Payload != "19" {
		t.Fatalf("thing received %v", m)
	}

	// Refused: QoS 0 silently, QoS 1 with the library's view of 0x87 (3.1.1: the
	// connection ends, so that case comes last).
	foreign0, foreign1 := "things/"+thing2+"/telemetry/q0-refused", "things/"+thing2+"/telemetry/q1-refused"
	thing.send(publishCmd(foreign0, "x", 0, false))
	if ack := thing.expect("puback"); ack.Code != 0 {
		t.Fatalf("qos 0 publish: %v", ack)
	}
	thing.send(publishCmd(foreign1, "x", 1, false))
	check(t, "refused qos 1 publish", thing.expect(l.pubDenied.ev), l.pubDenied)

	// Barrier: thing-2 publishes after the refused messages; they would have
	// reached the cloud application before it.
	other := l.connect(t, e, thing2, e.thingToken(thing2, time.Hour), nil)
	other.send(publishCmd("things/"+thing2+"/telemetry/barrier", "b", 1, false))
	other.expect("puback")
	cloud.expectMsg("things/" + thing2 + "/telemetry/barrier")
	cloud.noMsg(foreign0)
	cloud.noMsg(foreign1)
}

func testRetainedWill(t *testing.T, e *env, l library) {
	state := "things/" + thing1 + "/state"
	thing := l.connect(t, e, thing1, e.thingToken(thing1, time.Hour), &willCmd{state, "offline", 1, true})
	thing.send(publishCmd(state, "online", 1, true))
	if ack := thing.expect("puback"); ack.Code != 0 {
		t.Fatalf("retained state: %v", ack)
	}
	// Retain where the policy does not allow it: refused like any other publish.
	thing.send(publishCmd("things/"+thing1+"/telemetry/t", "r", 0, true))
	thing.expect("puback")

	cloud := l.connect(t, e, cloudApp, e.cloudToken(), nil)
	cloud.send(subscribeCmd("things/+/telemetry/#", 1))
	check(t, "subscribe telemetry", cloud.expect("suback"), l.subGranted)
	cloud.send(subscribeCmd("things/+/state", 1))
	check(t, "subscribe state", cloud.expect("suback"), l.subGranted)
	if m := cloud.expectMsg(state); m.Payload != "online" || !m.Retain {
		t.Fatalf("late subscriber got %v, want the retained state", m)
	}
	cloud.noMsg("things/" + thing1 + "/telemetry/t")

	thing.kill()
	if m := cloud.expectMsg(state); m.Payload != "offline" {
		t.Fatalf("will: got %v", m)
	}
	if slices.ContainsFunc(cloud.seen, func(e event) bool { return e.Ev == "disconnect" }) {
		t.Fatalf("cloud application was disconnected: %v", cloud.seen)
	}
}

func testExpiry(t *testing.T, e *env, l library) {
	cloud := l.connect(t, e, cloudApp, e.cloudToken(), nil)
	cloud.send(subscribeCmd("things/+/state", 1))
	check(t, "subscribe state", cloud.expect("suback"), l.subGranted)

	state := "things/" + thing1 + "/state"
	d := l.start(t)
	d.send(connectCmd{url: e.url(), version: l.version, clientID: thing1, username: thing1,
		password: e.thingToken(thing1, 4*time.Second), will: &willCmd{state, "will-after-expiry", 1, false}}.cmd())
	if ack := d.expect("connack"); ack.Code != 0 {
		t.Fatalf("connect: %v", ack)
	}
	check(t, "token expiry", d.expect(l.expired.ev), l.expired)

	// Nothing may be published in the thing's name after its token lapsed: not
	// its will either. Barrier: thing-2's state, published afterwards.
	other := l.connect(t, e, thing2, e.thingToken(thing2, time.Hour), nil)
	other.send(publishCmd("things/"+thing2+"/state", "barrier", 1, false))
	other.expect("puback")
	cloud.expectMsg("things/" + thing2 + "/state")
	cloud.noMatch("will after expiry", func(e event) bool { return e.Ev == "message" && e.Payload == "will-after-expiry" })
}

func TestPahoAuthenticationMethod(t *testing.T) {
	e := newEnv(t)
	d := pahoPy(t)
	d.send(connectCmd{url: e.url(), version: 5, clientID: thing1, authData: e.thingToken(thing1, time.Hour)}.cmd())
	check(t, "connect with OAUTH2-JWT", d.expect("connack"), view{"connack", 0, "Success"})
	d.send(subscribeCmd("things/"+thing1+"/commands/#", 1))
	check(t, "subscribe", d.expect("suback"), view{"suback", 1, "Granted QoS 1"})

	bad := pahoPy(t)
	bad.send(connectCmd{url: e.url(), version: 5, clientID: thing1, authData: "not-a-token"}.cmd())
	check(t, "connect with a bad token", bad.expect("connack"), view{"connack", 134, "Bad user name or password"})
}
