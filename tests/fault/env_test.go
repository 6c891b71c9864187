// Package fault tests how imb behaves when what it depends on fails: the identity
// provider down, slow, answering 500 or garbage, and the broker process itself
// killed with SIGKILL in the middle of a QoS 1 stream.
package fault

import (
	"context"
	"fmt"
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
	"imb/internal/issuer"
)

// policy: things publish their telemetry, the fleet app reads it.
const policy = `version: 1
rules:
  - name: telemetry
    effect: allow
    actions: [publish]
    topics: ["things/{sub}/telemetry/#"]
    scopes: [publish]
    max_qos: 1
  - name: fleet-read
    effect: allow
    actions: [subscribe]
    topics: ["things/+/telemetry/#"]
    scopes: ["fleet:read"]
`

// writePolicy writes the policy into dir and returns its path.
func writePolicy(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "topics.yaml")
	if err := os.WriteFile(p, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startIssuer starts a token issuer whose Slow mode outlasts the broker's timeout.
func startIssuer(t *testing.T) *issuer.Issuer {
	t.Helper()
	iss, err := issuer.Start(issuer.Config{SlowDelay: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.SetMode(issuer.Healthy); _ = iss.Close() })
	return iss
}

// startBroker starts an in-process broker trusting iss; mod adjusts the config.
func startBroker(t *testing.T, iss *issuer.Issuer, mod ...func(*broker.Config)) *broker.Broker {
	t.Helper()
	return startBrokerWith(t, iss, true, mod...)
}

// startBrokerWith starts a broker; with cleanup, the test's end closes it.
func startBrokerWith(t *testing.T, iss *issuer.Issuer, cleanup bool, mod ...func(*broker.Config)) *broker.Broker {
	t.Helper()
	cfg := broker.Config{
		MQTTAddr:           "127.0.0.1:0",
		PolicyFile:         writePolicy(t, t.TempDir()),
		Issuer:             iss.URL(),
		Audience:           []string{"imb"},
		IntrospectURL:      iss.IntrospectURL(),
		ClientID:           iss.ClientID(),
		ClientSecret:       iss.ClientSecret(),
		ValidateTimeout:    time.Second,
		RevalidateInterval: 300 * time.Millisecond,
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
	if !cleanup {
		t.Cleanup(cancel)
		return b
	}
	t.Cleanup(func() {
		cancel()
		// Let the test's clients go first: see TestShutdownWhileClientsDisconnect.
		deadline := time.Now().Add(5 * time.Second)
		for atomic.LoadInt64(&b.Server().Info.ClientsConnected) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		_ = b.Close()
	})
	return b
}

// client is an MQTT 5 client (paho.golang) and what it received.
type client struct {
	c      *paho.Client
	conn   net.Conn
	ack    *paho.Connack
	err    error
	discon chan *paho.Disconnect
	ended  atomic.Value // error: why the client stopped, when it did

	*sink
}

// sink counts received payloads; a subscriber that reconnects keeps its sink.
type sink struct {
	mu   sync.Mutex
	msgs map[string]int // payload -> times received
}

func newSink() *sink { return &sink{msgs: map[string]int{}} }

// dial connects clientID to addr with token as password; persistent sessions use
// clean=false and a session expiry.
func dial(t *testing.T, addr, clientID, token string, clean bool, expiry uint32) *client {
	t.Helper()
	return dialInto(t, addr, clientID, token, clean, expiry, newSink())
}

// dialInto is dial with the received messages counted in s.
func dialInto(t *testing.T, addr, clientID, token string, clean bool, expiry uint32, s *sink) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return &client{err: err, sink: s}
	}
	r := &client{conn: conn, discon: make(chan *paho.Disconnect, 1), sink: s}
	r.c = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     packets.NewThreadSafeConn(conn), // paho writes a packet in several Writes, from several goroutines
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			r.mu.Lock()
			r.msgs[string(p.Packet.Payload)]++
			r.mu.Unlock()
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			r.ended.Store(fmt.Errorf("server DISCONNECT %#x", d.ReasonCode))
			select {
			case r.discon <- d:
			default:
			}
		},
		OnClientError: func(err error) { r.ended.Store(fmt.Errorf("client error: %w", err)) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.ack, r.err = r.c.Connect(ctx, &paho.Connect{
		ClientID: clientID, KeepAlive: 30, CleanStart: clean,
		Password: []byte(token), PasswordFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
	t.Cleanup(func() { r.close() })
	return r
}

// close disconnects politely if connected, and closes the socket.
func (r *client) close() {
	if r.c != nil && r.err == nil {
		_ = r.c.Disconnect(&paho.Disconnect{})
	}
	if r.conn != nil {
		_ = r.conn.Close()
	}
}

// code is the CONNACK reason code, or -1 when none arrived.
func (r *client) code() int {
	if r.ack == nil {
		return -1
	}
	return int(r.ack.ReasonCode)
}

// publish sends a QoS 1 message and reports whether the broker acknowledged it
// with success.
func (r *client) publish(topic, payload string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	return err == nil && resp != nil && resp.ReasonCode == 0
}

func (r *client) subscribe(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := r.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil || len(ack.Reasons) != 1 || ack.Reasons[0] != 1 {
		t.Fatalf("subscribe %s: %v %+v", filter, err, ack)
	}
}

// received reports how many times payload arrived.
func (r *sink) received(payload string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[payload]
}

// connect3 connects with MQTT 3.1.1 and returns the CONNACK return code.
func connect3(t *testing.T, addr, clientID, token string) byte {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetUsername(clientID).SetPassword(token).SetAutoReconnect(false).
		SetConnectRetry(false).SetProtocolVersion(4).SetConnectTimeout(10 * time.Second)
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		t.Fatal("v3.1.1 connect timed out")
	}
	if tok.Error() == nil {
		c.Disconnect(50)
	}
	return tok.(*mqtt3.ConnectToken).ReturnCode()
}

// waitFor polls cond every 20 ms until it holds or within passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
