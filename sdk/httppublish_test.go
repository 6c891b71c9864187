package sdk_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/amdev"
	"imb/broker"
	"imb/sdk"
)

// startDoor runs a real broker with its HTTP door, trusting srv.
func startDoor(t *testing.T, srv *amdev.Server) *broker.Broker {
	t.Helper()
	bc, _ := srv.BrokerClient()
	cfg := broker.Defaults()
	cfg.MQTTAddr, cfg.WSAddr, cfg.AdminAddr, cfg.HTTPAddr = "127.0.0.1:0", "", "", "127.0.0.1:0"
	cfg.PolicyFile = filepath.Join("..", "topics.yaml")
	cfg.Issuer, cfg.IntrospectURL = srv.Issuer(), srv.IntrospectionURL()
	cfg.Audience = []string{amdev.DefaultClientID, amdev.CloudAppClientID}
	cfg.ClientID, cfg.ClientSecret = bc.ID, bc.Secret
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = b.Close() })
	return b
}

// flakyTokens hands out a forged token until it is reset, then the thing's own.
type flakyTokens struct {
	real   sdk.TokenSource
	resets atomic.Int32
}

func (f *flakyTokens) Token(ctx context.Context) (*sdk.Token, error) {
	if f.resets.Load() == 0 {
		return &sdk.Token{AccessToken: "forged", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}, nil
	}
	return f.real.Token(ctx)
}
func (f *flakyTokens) Reset() { f.resets.Add(1) }

func TestHTTPPublisher(t *testing.T) {
	key := mustKey(t, sdk.ES256)
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"http-thing": key}})
	b := startDoor(t, srv)
	ctx := testContext(t)

	app, _ := srv.CloudAppClient()
	appTok, err := srv.IssueClientToken(ctx, app.ID, app.Scopes)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", b.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *paho.Publish, 4)
	sub := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil }}})
	if _, err := sub.Connect(ctx, &paho.Connect{ClientID: app.ID, Username: app.ID, UsernameFlag: true,
		Password: []byte(appTok), PasswordFlag: true, KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Disconnect(&paho.Disconnect{}) }()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "things/+/telemetry/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	thing := newClient(t, srv, "/").NewThing("auth-tree", &sdk.Authenticator{ThingID: "http-thing", Key: key})
	tokens := &flakyTokens{real: thing.TokenSource("publish")}
	pub := &sdk.HTTPPublisher{BaseURL: "http://" + b.Addr("http"), Tokens: tokens}

	// The forged token is refused with 401; the publisher resets its source and succeeds once more.
	err = pub.Publish(ctx, "things/http-thing/telemetry/a b?1%", []byte("21.5"), sdk.PublishOptions{
		ContentType: "text/plain", MessageExpiry: time.Minute, UserProperties: [][2]string{{"unit", "°C"}, {"k=", "v,w"}}})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if tokens.resets.Load() != 1 {
		t.Fatalf("token source reset %d times, want 1", tokens.resets.Load())
	}
	select {
	case m := <-msgs:
		if m.Topic != "things/http-thing/telemetry/a b?1%" || string(m.Payload) != "21.5" || m.Properties.ContentType != "text/plain" ||
			len(m.Properties.User) != 2 || m.Properties.User[0].Value != "°C" || m.Properties.User[1].Key != "k=" || m.Properties.User[1].Value != "v,w" {
			t.Fatalf("received %q %q %+v", m.Topic, m.Payload, m.Properties)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
	}

	err = pub.Publish(ctx, "things/other-thing/telemetry/t", []byte("1"), sdk.PublishOptions{})
	var pe *sdk.PublishError
	if !errors.Is(err, sdk.ErrForbidden) || !errors.As(err, &pe) || pe.Code != "not_authorized" || pe.ReasonCode != "0x87" {
		t.Fatalf("another thing's topic: %v", err)
	}
	if err := pub.Publish(ctx, "things/http-thing/telemetry/q0", []byte("1"), sdk.PublishOptions{AtMostOnce: true}); err != nil {
		t.Fatalf("qos 0: %v", err)
	}
	if err := (&sdk.HTTPPublisher{BaseURL: "ftp://x", Tokens: tokens}).Publish(ctx, "a", nil, sdk.PublishOptions{}); err == nil {
		t.Fatal("an ftp base URL was accepted")
	}
}
