package hooks_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"imb/broker"
	"imb/internal/issuer"
)

// testPolicy is the policy the integration tests run under.
const testPolicy = `version: 1
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
  - name: no-firmware
    effect: deny
    actions: [publish]
    topics: ["things/+/firmware/#"]
  - name: vault-private
    effect: deny
    actions: [receive]
    topics: ["things/vault/#"]
`

// env is one real broker on a loopback port, trusting one real token issuer.
type env struct {
	t      *testing.T
	iss    *issuer.Issuer
	b      *broker.Broker
	addr   string
	policy string
	audit  *auditLog
}

// newEnv starts an issuer and a broker; mod may adjust the broker's config.
func newEnv(t *testing.T, mod ...func(*broker.Config)) *env {
	t.Helper()
	iss, err := issuer.Start(issuer.Config{SlowDelay: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	dir := t.TempDir()
	policy := filepath.Join(dir, "topics.yaml")
	if err := os.WriteFile(policy, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := &auditLog{}
	cfg := broker.Config{
		MQTTAddr:           "127.0.0.1:0",
		AdminAddr:          "127.0.0.1:0",
		PolicyFile:         policy,
		Issuer:             iss.URL(),
		Audience:           []string{"imb"},
		IntrospectURL:      iss.IntrospectURL(),
		ClientID:           iss.ClientID(),
		ClientSecret:       iss.ClientSecret(),
		ValidateTimeout:    time.Second,
		RevalidateInterval: time.Hour,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		Audit:              slog.New(audit),
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
	t.Cleanup(func() { cancel(); _ = b.Close() })
	return &env{t: t, iss: iss, b: b, addr: b.Addr("tcp"), policy: policy, audit: audit}
}

// jwt mints a one-hour JWT for a thing with scopes.
func (e *env) jwt(sub string, scopes ...string) string {
	return e.iss.Mint(issuer.Claims{"sub": sub, "scope": scopes}, time.Hour)
}

// v5 is a connected (or refused) MQTT 5 client and what it received.
type v5 struct {
	c      *paho.Client
	conn   net.Conn
	ack    *paho.Connack
	err    error
	msgs   chan *paho.Publish
	seen   []*paho.Publish // received, not yet expected (used by one goroutine: the test's)
	discon chan *paho.Disconnect
	closed chan struct{}
}

type v5opts struct {
	authMethod bool   // token as Authentication Data instead of password
	method     string // another Authentication Method name
	clean      bool
	expiry     uint32
	will       *paho.WillMessage
	user       string
	auther     paho.Auther              // the enhanced-authentication handler (default: one that answers nothing)
	dial       func() (net.Conn, error) // the connection to CONNECT on (default: TCP to the broker's MQTT listener)
}

// connect5 dials the broker with MQTT 5 and sends CONNECT with the token.
func (e *env) connect5(clientID, token string, o v5opts) *v5 {
	e.t.Helper()
	dial := o.dial
	if dial == nil {
		dial = func() (net.Conn, error) { return net.Dial("tcp", e.addr) }
	}
	conn, err := dial()
	if err != nil {
		e.t.Fatal(err)
	}
	r := &v5{
		conn:   conn,
		msgs:   make(chan *paho.Publish, 100),
		discon: make(chan *paho.Disconnect, 1),
		closed: make(chan struct{}),
	}
	var once sync.Once
	var auther paho.Auther = noAuther{}
	if o.auther != nil {
		auther = o.auther
	}
	r.c = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     packets.NewThreadSafeConn(conn), // paho writes a packet in several Writes, from several goroutines
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			r.msgs <- p.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { r.discon <- d },
		OnClientError:      func(error) { once.Do(func() { close(r.closed) }) },
		AuthHandler:        auther,
	})
	cp := &paho.Connect{
		ClientID:    clientID,
		KeepAlive:   30,
		CleanStart:  o.clean,
		WillMessage: o.will,
		Properties:  &paho.ConnectProperties{SessionExpiryInterval: &o.expiry},
	}
	if o.user != "" {
		cp.Username, cp.UsernameFlag = o.user, true
	}
	if o.method != "" {
		cp.Properties.AuthMethod = o.method
		cp.Properties.AuthData = []byte(token)
	} else if o.authMethod {
		cp.Properties.AuthMethod = "OAUTH2-JWT"
		cp.Properties.AuthData = []byte(token)
	} else if token != "" {
		cp.Password, cp.PasswordFlag = []byte(token), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.ack, r.err = r.c.Connect(ctx, cp)
	if r.err == nil {
		e.t.Cleanup(func() { _ = r.c.Disconnect(&paho.Disconnect{}) })
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

func (r *v5) subscribe(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := r.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if ack != nil && len(ack.Reasons) == 1 {
		return ack.Reasons[0]
	}
	t.Fatalf("subscribe %s: %v", filter, err)
	return 0
}

// publish sends a message and returns the PUBACK reason (0 for QoS 0).
func (r *v5) publish(t *testing.T, topic string, qos byte, retain bool, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	if qos == 0 {
		if err != nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
		return 0
	}
	if resp != nil {
		return resp.ReasonCode
	}
	t.Fatalf("publish %s: %v", topic, err)
	return 0
}

// expectMsg waits for a message on topic. Messages on other topics are kept for
// expectNoMsg, so a barrier never hides what arrived before it.
func (r *v5) expectMsg(t *testing.T, topic string) *paho.Publish {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for i, m := range r.seen {
			if m.Topic == topic {
				r.seen = append(r.seen[:i], r.seen[i+1:]...)
				return m
			}
		}
		select {
		case m := <-r.msgs:
			r.seen = append(r.seen, m)
		case <-deadline:
			t.Fatalf("no message on %s", topic)
			return nil
		}
	}
}

// expectNoMsg asserts that no message on topic has arrived, or arrives within wait.
// It is used after a barrier message, so that "nothing" is not a matter of timing.
func (r *v5) expectNoMsg(t *testing.T, topic string, wait time.Duration) {
	t.Helper()
	deadline := time.After(wait)
	for {
		for _, m := range r.seen {
			if m.Topic == topic {
				t.Fatalf("unexpected message on %s: %q", topic, m.Payload)
			}
		}
		select {
		case m := <-r.msgs:
			r.seen = append(r.seen, m)
		case <-deadline:
			return
		}
	}
}

// expectDisconnect waits for a server DISCONNECT and returns its reason code.
func (r *v5) expectDisconnect(t *testing.T, within time.Duration) byte {
	t.Helper()
	select {
	case d := <-r.discon:
		return d.ReasonCode
	case <-time.After(within):
		t.Fatalf("no DISCONNECT within %s", within)
		return 0
	}
}

type noAuther struct{}

func (noAuther) Authenticate(a *paho.Auth) *paho.Auth { return a }
func (noAuther) Authenticated()                       {}

// auditLog is an slog.Handler that keeps the audit lines for assertions.
type auditLog struct {
	mu    sync.Mutex
	lines []map[string]string
}

func (a *auditLog) Enabled(context.Context, slog.Level) bool { return true }
func (a *auditLog) WithAttrs([]slog.Attr) slog.Handler       { return a }
func (a *auditLog) WithGroup(string) slog.Handler            { return a }
func (a *auditLog) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message}
	r.Attrs(func(at slog.Attr) bool {
		m[at.Key] = at.Value.String()
		return true
	})
	a.mu.Lock()
	a.lines = append(a.lines, m)
	a.mu.Unlock()
	return nil
}

// find returns the audit lines whose event is ev.
func (a *auditLog) find(ev string) []map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []map[string]string
	for _, l := range a.lines {
		if l["event"] == ev {
			out = append(out, l)
		}
	}
	return out
}

// all returns every audit line's text, for leak checks.
func (a *auditLog) all() []map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]string(nil), a.lines...)
}

// writePolicy replaces the broker's policy file (the broker reloads it on change).
func writePolicy(t *testing.T, e *env, text string) {
	t.Helper()
	tmp := e.policy + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.policy); err != nil {
		t.Fatal(err)
	}
}

// withoutRule returns the policy text without the rule named name.
func withoutRule(policy, name string) string {
	lines := strings.Split(policy, "\n")
	var out []string
	skip := false
	for _, l := range lines {
		if strings.HasPrefix(l, "  - name: ") {
			skip = l == "  - name: "+name
		}
		if !skip {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
