package httpdoor_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/amdev"
	"imb/broker"
	"imb/sdk"
)

const testTimeout = 60 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startAM runs a real amdev on loopback with the given things registered (each with its own key).
func startAM(t testing.TB, tweak func(*amdev.Settings), things ...string) *amdev.Server {
	t.Helper()
	s := amdev.DefaultSettings()
	for _, id := range things {
		k, err := sdk.GenerateKey(sdk.ES256)
		if err != nil {
			t.Fatal(err)
		}
		j, err := k.PublicJWKS()
		if err != nil {
			t.Fatal(err)
		}
		s.Things[id] = &amdev.Thing{Realm: "/", ThingType: "device", ThingKeys: j}
	}
	if tweak != nil {
		tweak(&s)
	}
	am, err := amdev.Start(testContext(t), amdev.Config{Listen: "127.0.0.1:0", InMemory: true, Settings: &s,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("amdev.Start: %v", err)
	}
	t.Cleanup(func() { _ = am.Close() })
	return am
}

// brokerConfig is a broker on loopback trusting am, with the repository's topics.yaml and the HTTP
// door on.
func brokerConfig(t testing.TB, am *amdev.Server) broker.Config {
	t.Helper()
	bc, ok := am.BrokerClient()
	if !ok {
		t.Fatal("amdev has no broker client")
	}
	cfg := broker.Defaults()
	cfg.MQTTAddr, cfg.WSAddr, cfg.AdminAddr, cfg.HTTPAddr = "127.0.0.1:0", "", "", "127.0.0.1:0"
	cfg.PolicyFile = filepath.Join("..", "topics.yaml")
	cfg.Issuer = am.Issuer()
	cfg.Audience = []string{amdev.DefaultClientID, amdev.CloudAppClientID}
	cfg.IntrospectURL = am.IntrospectionURL()
	cfg.ClientID, cfg.ClientSecret = bc.ID, bc.Secret
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

func startBroker(t testing.TB, cfg broker.Config) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("broker.Start: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = b.Close() })
	return b
}

// thingToken is an access token of a registered thing, as get_access_token issues it.
func thingToken(t testing.TB, am *amdev.Server, thing string) string {
	t.Helper()
	tok, err := am.IssueAccessToken(testContext(t), thing, "", []string{"publish", "subscribe"})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// cloudApp is a real MQTT 5 client of the cloud application on addr.
func cloudApp(t testing.TB, am *amdev.Server, addr string, onMsg func(*paho.Publish)) *paho.Client {
	t.Helper()
	ctx := testContext(t)
	app, _ := am.CloudAppClient()
	tok, err := am.IssueClientToken(ctx, app.ID, app.Scopes)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{Conn: conn}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onMsg(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cfg)
	if ack, err := c.Connect(ctx, &paho.Connect{ClientID: app.ID, Username: app.ID, UsernameFlag: true,
		Password: []byte(tok), PasswordFlag: true, KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatalf("cloud app connect: %v %+v", err, ack)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// subscriber is the cloud application subscribed to filter; messages arrive on the channel.
func subscriber(t testing.TB, am *amdev.Server, addr, filter string) chan *paho.Publish {
	t.Helper()
	msgs := make(chan *paho.Publish, 64)
	c := cloudApp(t, am, addr, func(p *paho.Publish) { msgs <- p })
	if _, err := c.Subscribe(testContext(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func receive(t testing.TB, msgs chan *paho.Publish) *paho.Publish {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("the MQTT subscriber got nothing")
		return nil
	}
}

func nothing(t testing.TB, msgs chan *paho.Publish) {
	t.Helper()
	select {
	case m := <-msgs:
		t.Fatalf("a refused publish reached the subscriber: %s %q", m.Topic, m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
}

func pahoPublish(topic, payload string) *paho.Publish {
	return &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}
}
