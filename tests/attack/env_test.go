// Package attack holds imb's adversarial suites: forged and malformed access tokens,
// attempts to escape the topic grants, and hostile traffic, all sent to a real broker
// over real MQTT connections on loopback, plus fuzz targets for packet handling
// through the identity hook.
package attack

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"imb/broker"
)

// policy is the topics.yaml every broker of this package runs under.
const policy = `version: 1
rules:
  - name: telemetry
    effect: allow
    actions: [publish]
    topics: ["things/{sub}/telemetry/#"]
    scopes: [publish]
    max_qos: 1
  - name: state
    effect: allow
    actions: [publish]
    topics: ["things/{sub}/state", "things/{sub}/status"]
    scopes: [publish]
    retain: true
  - name: commands
    effect: allow
    actions: [subscribe]
    topics: ["things/{sub}/commands/#"]
    scopes: [subscribe]
    max_qos: 1
  - name: fleet-read
    effect: allow
    actions: [subscribe]
    topics: ["things/+/telemetry/#", "things/+/state", "things/+/status"]
    scopes: ["fleet:read"]
  - name: fleet-command
    effect: allow
    actions: [publish]
    topics: ["things/+/commands/#"]
    scopes: ["fleet:command"]
  - name: observer
    effect: allow
    actions: [subscribe]
    topics: ["#"]
    scopes: ["observe"]
  - name: no-firmware
    effect: deny
    actions: [publish]
    topics: ["things/+/firmware/#"]
  - name: vault-private
    effect: deny
    actions: [receive]
    topics: ["things/vault/#"]
`

// maxPacket is the broker's MaximumPacketSize in this package: small enough that a
// CONNECT can exceed it with a password (at most 65,535 bytes).
const maxPacket = 32 << 10

// env is one broker on a loopback port trusting one idp.
type env struct {
	t      testing.TB
	idp    *idp
	b      *broker.Broker
	addr   string
	policy string
}

// newEnv starts a broker that validates JWTs of p locally and introspects every
// other token at p; mod may adjust the configuration.
func newEnv(t testing.TB, p *idp, mod ...func(*broker.Config)) *env {
	t.Helper()
	file := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(file, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := broker.Config{
		MQTTAddr:           "127.0.0.1:0",
		PolicyFile:         file,
		Issuer:             p.url(),
		Audience:           []string{audience},
		IntrospectURL:      p.url() + "/introspect",
		ClientID:           brokerClientID,
		ClientSecret:       brokerClientSecret,
		ValidateTimeout:    2 * time.Second,
		RevalidateInterval: time.Hour,
		MaxPacketSize:      maxPacket,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		// mochi v2.7.9 can deadlock in Server.Close when a client disconnects at the
		// same moment (Clients.GetByListener read-locks twice; see
		// tests/fault TestShutdownWhileClientsDisconnect): let the test's clients go first.
		waitDisconnected(b)
		_ = b.Close()
	})
	return &env{t: t, idp: p, b: b, addr: b.Addr("tcp"), policy: file}
}

// waitDisconnected waits, for up to 5 s, until no client is connected.
func waitDisconnected(b *broker.Broker) {
	deadline := time.Now().Add(5 * time.Second)
	for atomic.LoadInt64(&b.Server().Info.ClientsConnected) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// jwtOnly configures local JWT validation alone: no introspection fallback.
func jwtOnly(c *broker.Config) {
	c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", ""
}

// anyClientID lifts the client id binding, so that identity takeovers are possible.
func anyClientID(c *broker.Config) { c.ClientIDBinding = []string{"*"} }

// v5 is an MQTT 5 client (paho.golang) and what it received.
type v5 struct {
	c      *paho.Client
	conn   net.Conn
	ack    *paho.Connack
	err    error
	inbox  *inbox
	discon chan *paho.Disconnect
}

// opts5 are the CONNECT settings a case varies.
type opts5 struct {
	clean    bool
	expiry   uint32
	will     *paho.WillMessage
	delay    uint32      // Will Delay Interval, seconds
	authData bool        // token as OAUTH2-JWT Authentication Data instead of password
	noToken  bool        // no password at all
	method   string      // this Authentication Method with the token as data (IMB-POP)
	auther   paho.Auther // the enhanced-authentication handler (default: passAuth)
}

// connect5 dials and sends CONNECT; a refused client has ack set and err non-nil.
func (e *env) connect5(clientID, token string, o opts5) *v5 {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &v5{conn: conn, inbox: newInbox(), discon: make(chan *paho.Disconnect, 1)}
	var auther paho.Auther = passAuth{}
	if o.auther != nil {
		auther = o.auther
	}
	r.c = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     packets.NewThreadSafeConn(conn), // paho writes a packet in several Writes, from several goroutines
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			r.inbox.add(p.Packet.Topic, p.Packet.QoS, p.Packet.Payload)
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case r.discon <- d:
			default:
			}
		},
		OnClientError: func(error) {},
		AuthHandler:   auther,
	})
	cp := &paho.Connect{
		ClientID:    clientID,
		KeepAlive:   30,
		CleanStart:  o.clean,
		WillMessage: o.will,
		Properties:  &paho.ConnectProperties{SessionExpiryInterval: &o.expiry},
	}
	if o.delay > 0 {
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &o.delay}
	}
	switch {
	case o.noToken:
	case o.method != "":
		cp.Properties.AuthMethod = o.method
		cp.Properties.AuthData = []byte(token)
	case o.authData:
		cp.Properties.AuthMethod = "OAUTH2-JWT"
		cp.Properties.AuthData = []byte(token)
	default:
		cp.Password, cp.PasswordFlag = []byte(token), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.ack, r.err = r.c.Connect(ctx, cp)
	e.t.Cleanup(func() {
		if r.err == nil {
			_ = r.c.Disconnect(&paho.Disconnect{})
		}
		_ = conn.Close()
	})
	return r
}

// mustConnect5 connects and fails the test unless the broker accepts.
func (e *env) mustConnect5(clientID, token string, o opts5) *v5 {
	e.t.Helper()
	r := e.connect5(clientID, token, o)
	if r.err != nil {
		e.t.Fatalf("connect %s: CONNACK %#x: %v", clientID, r.code(), r.err)
	}
	return r
}

// code is the CONNACK reason code, or -1 when no CONNACK arrived.
func (r *v5) code() int {
	if r.ack == nil {
		return -1
	}
	return int(r.ack.ReasonCode)
}

// subscribe returns the SUBACK reason codes, one per filter; a nil slice means the
// broker answered with a DISCONNECT or closed the connection instead.
func (r *v5) subscribe(t testing.TB, qos byte, filters ...string) []byte {
	t.Helper()
	return r.subscribeOpts(t, qos, false, filters...)
}

func (r *v5) subscribeOpts(t testing.TB, qos byte, noLocal bool, filters ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: qos, NoLocal: noLocal})
	}
	ack, err := r.c.Subscribe(ctx, s)
	if ack != nil && len(ack.Reasons) == len(filters) {
		return ack.Reasons
	}
	t.Logf("subscribe %v: %v", filters, err)
	return nil
}

// publish sends a message and returns the PUBACK reason code; 0 for QoS 0; -1 when
// no acknowledgement came (the broker closed the connection or dropped the packet).
func (r *v5) publish(t testing.TB, topic string, qos byte, retain bool, payload string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	switch {
	case qos == 0 && err == nil:
		return 0
	case resp != nil && err == nil:
		return int(resp.ReasonCode)
	case resp != nil:
		return int(resp.ReasonCode)
	}
	return -1
}

// inbox collects received messages for later assertions.
type inbox struct {
	mu     sync.Mutex
	msgs   []received
	notify chan struct{}
}

type received struct {
	topic   string
	qos     byte
	payload string
}

func newInbox() *inbox { return &inbox{notify: make(chan struct{}, 1)} }

func (b *inbox) add(topic string, qos byte, payload []byte) {
	b.mu.Lock()
	b.msgs = append(b.msgs, received{topic, qos, string(payload)})
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// find returns the messages on topic.
func (b *inbox) find(topic string) []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []received
	for _, m := range b.msgs {
		if m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// wait blocks until a message on topic arrived, for up to 10 s.
func (b *inbox) wait(t testing.TB, topic string) received {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if m := b.find(topic); len(m) > 0 {
			return m[0]
		}
		select {
		case <-b.notify:
		case <-deadline:
			t.Fatalf("no message on %s within 10s", topic)
		}
	}
}

// none fails if any message on one of topics has arrived. Call it after a barrier
// message that travelled the same path, so that "none" does not depend on timing.
func (b *inbox) none(t testing.TB, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		if m := b.find(topic); len(m) > 0 {
			t.Fatalf("ESCAPE: received %d message(s) on %s: %q", len(m), topic, m[0].payload)
		}
	}
}

type passAuth struct{}

func (passAuth) Authenticate(a *paho.Auth) *paho.Auth { return a }
func (passAuth) Authenticated()                       {}

// connect3 connects with MQTT 3.1.1 (paho.mqtt.golang) and returns the CONNACK
// return code, and the client when accepted.
func connect3(t testing.TB, addr, clientID, token string, clean bool) (byte, mqtt3.Client) {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).
		SetProtocolVersion(4).SetConnectTimeout(10 * time.Second)
	if token != "" {
		o.SetUsername("thing").SetPassword(token)
	}
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		t.Fatal("v3.1.1 connect timed out")
	}
	ct := tok.(*mqtt3.ConnectToken)
	if tok.Error() != nil {
		return ct.ReturnCode(), nil
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return ct.ReturnCode(), c
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
