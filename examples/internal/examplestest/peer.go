package examplestest

import (
	"context"
	"sync"
	"testing"

	"imb/examples/internal/link"
	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

// Peer is the other side of an MQTT example in a test: a connection that records what it receives.
type Peer struct {
	link.Link
	mu       sync.Mutex
	messages []Message
	arrived  chan struct{}
}

// Message is one delivery to a Peer.
type Message struct {
	Topic   string
	Payload string
}

// DialPeer connects to the environment's broker as clientID with tokens and subscribes to filters.
func DialPeer(t testing.TB, env *Env, clientID string, tokens sdk.TokenSource, v311 bool, filters ...string) *Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitLong)
	defer cancel()
	p := &Peer{arrived: make(chan struct{}, 1)}
	d := &sdkmqtt.Dialer{Tokens: tokens, Username: clientID, ClientID: clientID, Persistent: true}
	conn, err := link.Dial(ctx, d, env.BrokerAddr(), v311, func(topic string, payload []byte) {
		p.mu.Lock()
		p.messages = append(p.messages, Message{topic, string(payload)})
		p.mu.Unlock()
		select {
		case p.arrived <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatalf("peer %s: %v", clientID, err)
	}
	p.Link = conn
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if err := conn.Subscribe(ctx, filters...); err != nil {
		t.Fatalf("peer %s: %v", clientID, err)
	}
	return p
}

// CloudPeer connects as amdev's cloud application with a client-credentials token.
func CloudPeer(t testing.TB, env *Env, v311 bool, filters ...string) *Peer {
	t.Helper()
	app, _ := env.AM.CloudAppClient()
	return DialPeer(t, env, app.ID, link.NewClientCredentials(env.URL(), app.ID, app.Secret, app.Scopes), v311, filters...)
}

// Messages returns what arrived so far.
func (p *Peer) Messages() []Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Message(nil), p.messages...)
}

// AwaitMessages waits until done holds for the messages received, failing the test after WaitLong.
func (p *Peer) AwaitMessages(t testing.TB, what string, done func([]Message) bool) []Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitLong)
	defer cancel()
	for {
		if m := p.Messages(); done(m) {
			return m
		}
		select {
		case <-p.arrived:
		case <-ctx.Done():
			t.Fatalf("peer: no %s within %s; got %d messages: %v", what, WaitLong, len(p.Messages()), p.Messages())
		}
	}
}
