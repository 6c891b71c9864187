package hooks_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/broker"
	"imb/hooks"
	"imb/internal/issuer"
)

// benchBroker starts a broker (imb's hook, or the allow-all baseline with the same
// capabilities), connects subs subscribers to things/+/telemetry/# and one
// publisher t1, and returns the publisher's server-side client.
func benchBroker(b *testing.B, allowAll bool, subs int, policyText string) (*broker.Broker, *mqtt.Client) {
	b.Helper()
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = iss.Close() })
	policy := filepath.Join(b.TempDir(), "topics.yaml")
	if err := os.WriteFile(policy, []byte(policyText), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := broker.Config{
		MQTTAddr: "127.0.0.1:0", PolicyFile: policy, Issuer: iss.URL(), AllowAll: allowAll,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Audit: slog.New(slog.DiscardHandler),
		WritesPending: 8192,
	}
	ctx, cancel := context.WithCancel(context.Background())
	br, err := broker.Start(ctx, cfg)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); _ = br.Close() })
	attach := func(id string, scopes []string, filter string) {
		tok := iss.Mint(issuer.Claims{"sub": id, "scope": scopes}, time.Hour)
		var in bytes.Buffer
		conn := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true,
				ClientIdentifier: id, PasswordFlag: true, Password: []byte(tok)}}
		if err := conn.ConnectEncode(&in); err != nil {
			b.Fatal(err)
		}
		if filter != "" {
			sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 5,
				PacketID: 1, Filters: packets.Subscriptions{{Filter: filter}}}
			if err := sub.SubscribeEncode(&in); err != nil {
				b.Fatal(err)
			}
		}
		c := newScriptConn(in.Bytes())
		b.Cleanup(func() { _ = c.Close() })
		go func() { _ = br.Server().EstablishConnection("bench", c) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if cl, ok := br.Server().Clients.Get(id); ok && (filter == "" || cl.State.Subscriptions.Len() == 1) {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s did not connect", id)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := 0; i < subs; i++ {
		attach(fmt.Sprintf("app-%d", i), []string{"fleet:read"}, "things/+/telemetry/#")
	}
	attach("t1", []string{"publish"}, "")
	cl, ok := br.Server().Clients.Get("t1")
	if !ok {
		b.Fatal("publisher not registered")
	}
	return br, cl
}

// benchLimitsPolicy is testPolicy with limits on the publisher high enough never to
// refuse: the benchmark measures the cost of checking them.
const benchLimitsPolicy = testPolicy + `
limits:
  - subjects: [t1]
    publishes: 1000000000
    publish_bytes: 1000000000
`

// BenchmarkPublishPath measures mochi's whole inbound publish path — write check,
// publish hook, topic match and the read check plus queueing for each of 10
// subscribers — under imb's hook (without and with a publish and byte rate on the
// publisher) and under the allow-all baseline, in one run.
func BenchmarkPublishPath(b *testing.B) {
	for _, mode := range []struct {
		name     string
		allowAll bool
		policy   string
	}{{"allow-all", true, testPolicy}, {"imb", false, testPolicy}, {"imb-limited", false, benchLimitsPolicy}} {
		b.Run(mode.name, func(b *testing.B) {
			br, cl := benchBroker(b, mode.allowAll, 10, mode.policy)
			pk := packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish},
				TopicName:   "things/t1/telemetry/temperature",
				Payload:     []byte(strings.Repeat("x", 64)),
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := br.Server().InjectPacket(cl, pk); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			time.Sleep(10 * time.Millisecond)
		})
	}
}

// BenchmarkACLCheck measures the hook's per-message decisions alone: the write
// check of a publish and the read check of one delivery.
func BenchmarkACLCheck(b *testing.B) {
	br, cl := benchBroker(b, false, 1, testPolicy)
	sub, _ := br.Server().Clients.Get("app-0")
	h := br.Hook()
	b.Run("publish", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if !h.OnACLCheck(cl, "things/t1/telemetry/temperature", true) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("delivery", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if !h.OnACLCheck(sub, "things/t1/telemetry/temperature", false) {
				b.Fatal("denied")
			}
		}
	})
	b.Run("publish-hook", func(b *testing.B) { benchPublishHook(b, h, cl) })
	b.Run("publish-hook-limited", func(b *testing.B) {
		br, cl := benchBroker(b, false, 1, benchLimitsPolicy)
		benchPublishHook(b, br.Hook(), cl)
	})
}

// benchPublishHook measures OnPublish alone on a QoS 1 telemetry message.
func benchPublishHook(b *testing.B, h *hooks.Hook, cl *mqtt.Client) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "things/t1/telemetry/temperature"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.OnPublish(cl, pk); err != nil {
			b.Fatal(err)
		}
	}
}

// scriptConn is a client connection with no network behind it: reads return the
// scripted bytes (CONNECT, SUBSCRIBE) and then block until Close; writes are
// discarded. It keeps socket and client costs out of the broker's measurement.
type scriptConn struct {
	in     *bytes.Reader
	closed chan struct{}
	once   sync.Once
}

func newScriptConn(script []byte) *scriptConn {
	return &scriptConn{in: bytes.NewReader(script), closed: make(chan struct{})}
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if c.in.Len() > 0 {
		return c.in.Read(p)
	}
	<-c.closed
	return 0, io.EOF
}

func (c *scriptConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
		return len(p), nil
	}
}

func (c *scriptConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
