package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/client"

	"imb/amdev"
	"imb/broker"
	"imb/gateway"
	"imb/internal/mqtttest"
	"imb/sdk"
)

// startBroker runs a real imb broker on loopback trusting e's amdev, with the repository's topics.yaml.
func startBroker(t *testing.T, am *amdev.Server) *broker.Broker {
	t.Helper()
	bc, ok := am.BrokerClient()
	if !ok {
		t.Fatal("amdev has no broker client")
	}
	cfg := broker.Defaults()
	cfg.MQTTAddr, cfg.WSAddr, cfg.AdminAddr = "127.0.0.1:0", "", "127.0.0.1:0"
	// The repository's policy, and a publish limit for the things named ps-lim*.
	cfg.PolicyFile = mqtttest.PolicyWith(t, filepath.Join("..", "topics.yaml"),
		"limits:\n  - name: slow\n    subjects: [\"ps-lim*\"]\n    publishes: 1\n    publish_burst: 1\n")
	cfg.Issuer = am.Issuer()
	cfg.Audience = []string{amdev.DefaultClientID, amdev.CloudAppClientID}
	cfg.IntrospectURL = am.IntrospectionURL()
	cfg.ClientID, cfg.ClientSecret = bc.ID, bc.Secret
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("broker.Start: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = b.Close() })
	return b
}

// subscriber is a real MQTT 5 client of the cloud application, subscribed to filter.
func subscriber(t *testing.T, am *amdev.Server, addr, filter string) chan *paho.Publish {
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
	msgs := make(chan *paho.Publish, 16)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil },
	}})
	if ack, err := c.Connect(ctx, &paho.Connect{ClientID: app.ID, Username: app.ID, UsernameFlag: true,
		Password: []byte(tok), PasswordFlag: true, KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatalf("subscriber connect: %v %+v", err, ack)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// startPubSubEnv is startEnv with a broker behind the gateway.
func startPubSubEnv(t *testing.T, things ...string) (*env, *broker.Broker, *gateway.Gateway) {
	t.Helper()
	return startPubSubEnvWith(t, nil, things...)
}

func startPubSubEnvWith(t *testing.T, tweak func(*amdev.Settings), things ...string) (*env, *broker.Broker, *gateway.Gateway) {
	t.Helper()
	e := startEnvWith(t, "auth-tree", false, tweak, things...)
	b := startBroker(t, e.am)
	ctx := testContext(t)
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: e.am.URL(), Realm: "/"})
	if err != nil {
		t.Fatal(err)
	}
	gwKey := mustKey(t)
	jwks, _ := gwKey.PublicJWKS()
	if err := e.am.EnsureThing(ctx, amdev.DemoThing{ID: "ps-gateway", ThingType: "gateway", ThingKeys: jwks}); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.Start(ctx, gateway.Config{Client: client, Tree: "auth-tree", Address: "127.0.0.1:0",
		Handlers: []sdk.CallbackHandler{&sdk.Authenticator{ThingID: "ps-gateway", Key: gwKey}},
		Broker:   b.Addr("tcp"), Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	return e, b, gw
}

func TestCoAPPublish(t *testing.T) {
	e, b, gw := startPubSubEnv(t, "ps-thing")
	ctx := testContext(t)
	msgs := subscriber(t, e.am, b.Addr("tcp"), "things/+/telemetry/#")

	c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: "coaps://" + gw.Addr().String(), Key: e.things["ps-thing"]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	thing := c.NewThing("auth-tree", &sdk.Authenticator{ThingID: "ps-thing", Key: e.things["ps-thing"]})
	tok, err := thing.AccessToken(ctx, "publish")
	if err != nil {
		t.Fatal(err)
	}
	wrap := func(token, payload string) []byte {
		b, _ := json.Marshal(map[string]string{"token": token, "payload": payload})
		return b
	}
	conn := rawConn(t, gw.Addr().String())
	tests := []struct {
		name    string
		path    string
		format  message.MediaType
		body    []byte
		queries []string
		want    codes.Code
	}{
		{"own telemetry", "/ps/things/ps-thing/telemetry/temperature", gateway.FormatJSON, wrap(tok.AccessToken, "21.5"), nil, codes.Changed},
		{"another thing's topic", "/ps/things/other-thing/telemetry/temperature", gateway.FormatJSON, wrap(tok.AccessToken, "99"), nil, codes.Forbidden},
		{"bad token", "/ps/things/ps-thing/telemetry/temperature", gateway.FormatJSON, wrap("not-a-token", "1"), nil, codes.Unauthorized},
		{"wildcard topic", "/ps/things/+/telemetry", gateway.FormatJSON, wrap(tok.AccessToken, "1"), nil, codes.BadRequest},
		{"no token", "/ps/things/ps-thing/telemetry/t", gateway.FormatJSON, []byte(`{"payload":"1"}`), nil, codes.BadRequest},
		{"bad query", "/ps/things/ps-thing/telemetry/t", gateway.FormatJSON, wrap(tok.AccessToken, "1"), []string{"qos=2"}, codes.BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, conn, tt.path, tt.format, tt.body, tt.queries...)
			if code != tt.want {
				t.Fatalf("code %v (%s), want %v", code, body, tt.want)
			}
		})
	}
	select {
	case m := <-msgs:
		if m.Topic != "things/ps-thing/telemetry/temperature" || string(m.Payload) != "21.5" {
			t.Fatalf("subscriber got %s %q", m.Topic, m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the MQTT subscriber got nothing")
	}
	select {
	case m := <-msgs:
		t.Fatalf("a refused publish reached the subscriber: %s %q", m.Topic, m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestCoAPPublishBrokerDown(t *testing.T) {
	e := startEnv(t, "auth-tree", false)
	ctx := testContext(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: e.am.URL(), Realm: "/"})
	if err != nil {
		t.Fatal(err)
	}
	gwKey := mustKey(t)
	jwks, _ := gwKey.PublicJWKS()
	_ = e.am.EnsureThing(ctx, amdev.DemoThing{ID: "ps-gateway", ThingType: "gateway", ThingKeys: jwks})
	gw, err := gateway.Start(ctx, gateway.Config{Client: client, Tree: "auth-tree", Address: "127.0.0.1:0",
		Handlers: []sdk.CallbackHandler{&sdk.Authenticator{ThingID: "ps-gateway", Key: gwKey}}, Broker: dead})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	conn := rawConn(t, gw.Addr().String())
	body, _ := json.Marshal(map[string]string{"token": "t", "payload": "1"})
	if code, reply := post(t, conn, "/ps/things/x/telemetry", gateway.FormatJSON, body); code != codes.ServiceUnavailable {
		t.Fatalf("broker down: %v %s, want 5.03", code, reply)
	}
}

func TestCoAPObserveEndsAtTokenExpiry(t *testing.T) {
	const lifetime = 3 * time.Second
	e, b, gw := startPubSubEnvWith(t, func(s *amdev.Settings) { s.OAuth2.AccessTokenLifetime = amdev.Duration(lifetime) }, "obs-thing")
	ctx := testContext(t)
	c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: "coaps://" + gw.Addr().String(), Key: e.things["obs-thing"]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	thing := c.NewThing("auth-tree", &sdk.Authenticator{ThingID: "obs-thing", Key: e.things["obs-thing"]})
	tok, err := thing.AccessToken(ctx, "subscribe")
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now()
	conn := rawConn(t, gw.Addr().String())
	got := make(chan *pool.Message, 16)
	observe := func(path string, token string) (client.Observation, error) {
		req, err := conn.NewObserveRequest(ctx, path)
		if err != nil {
			return nil, err
		}
		body, _ := json.Marshal(map[string]string{"token": token})
		req.SetContentFormat(gateway.FormatJSON)
		req.SetBody(bytes.NewReader(body))
		return conn.DoObserve(req, func(m *pool.Message) {
			m.Hijack()
			got <- m
		})
	}
	obs, err := observe("/ps/things/obs-thing/commands/#", tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = obs.Cancel(ctx) }()
	first := <-got
	if first.Code() != codes.Content {
		t.Fatalf("registration answered %v", first.Code())
	}
	// The cloud application sends a command over MQTT; it arrives as a notification.
	publishAsCloudApp(t, e.am, b.Addr("tcp"), "things/obs-thing/commands/setpoint", "19")
	select {
	case m := <-got:
		data, _ := io.ReadAll(m.Body())
		var n struct{ Topic, Payload string }
		if m.Code() != codes.Content || json.Unmarshal(data, &n) != nil || n.Topic != "things/obs-thing/commands/setpoint" || n.Payload != "19" {
			t.Fatalf("notification %v %s", m.Code(), data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification for the command")
	}
	// At expiry the broker ends the MQTT subscription and the observation ends with 4.01.
	select {
	case m := <-got:
		if m.Code() != codes.Unauthorized {
			t.Fatalf("observation ended with %v, want 4.01", m.Code())
		}
		if since := time.Since(issued); since < lifetime-time.Second {
			t.Fatalf("observation ended after %v, before the token's %v lifetime", since, lifetime)
		}
		t.Logf("observation ended with 4.01 %v after the token was issued (lifetime %v)", time.Since(issued).Round(100*time.Millisecond), lifetime)
	case <-time.After(lifetime + 15*time.Second):
		t.Fatal("the observation outlived the token")
	}
}

func TestCoAPObserveDenied(t *testing.T) {
	e, _, gw := startPubSubEnv(t, "obs-thing")
	ctx := testContext(t)
	c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: "coaps://" + gw.Addr().String(), Key: e.things["obs-thing"]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	thing := c.NewThing("auth-tree", &sdk.Authenticator{ThingID: "obs-thing", Key: e.things["obs-thing"]})
	tok, err := thing.AccessToken(ctx, "subscribe")
	if err != nil {
		t.Fatal(err)
	}
	conn := rawConn(t, gw.Addr().String())
	req, err := conn.NewObserveRequest(ctx, "/ps/things/other-thing/commands/#")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": tok.AccessToken})
	req.SetContentFormat(gateway.FormatJSON)
	req.SetBody(bytes.NewReader(body))
	got := make(chan codes.Code, 4)
	obs, err := conn.DoObserve(req, func(m *pool.Message) { got <- m.Code() })
	if err == nil {
		defer func() { _ = obs.Cancel(ctx) }()
	}
	select {
	case code := <-got:
		if code != codes.Forbidden {
			t.Fatalf("subscribing to another thing's commands: %v, want 4.03", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer (observe err %v)", err)
	}
}

// publishAsCloudApp publishes one message as the cloud application over MQTT 5.
func publishAsCloudApp(t *testing.T, am *amdev.Server, addr, topic, payload string) {
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
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: app.ID, Username: app.ID, UsernameFlag: true,
		Password: []byte(tok), PasswordFlag: true, KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatalf("cloud app connect: %v", err)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	if resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatalf("cloud app publish: %v %+v", err, resp)
	}
}

func TestCoAPObserveCancel(t *testing.T) {
	e, _, gw := startPubSubEnv(t, "obs-thing")
	ctx := testContext(t)
	c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: "coaps://" + gw.Addr().String(), Key: e.things["obs-thing"]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	thing := c.NewThing("auth-tree", &sdk.Authenticator{ThingID: "obs-thing", Key: e.things["obs-thing"]})
	tok, err := thing.AccessToken(ctx, "subscribe")
	if err != nil {
		t.Fatal(err)
	}
	conn := rawConn(t, gw.Addr().String())
	req, err := conn.NewObserveRequest(ctx, "/ps/things/obs-thing/commands/#")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": tok.AccessToken})
	req.SetContentFormat(gateway.FormatJSON)
	req.SetBody(bytes.NewReader(body))
	got := make(chan codes.Code, 4)
	obs, err := conn.DoObserve(req, func(m *pool.Message) { got <- m.Code() })
	if err != nil {
		t.Fatal(err)
	}
	if code := <-got; code != codes.Content {
		t.Fatalf("registration: %v", code)
	}
	// Deregistration (GET with Observe: 1) is answered 2.05 only for a live observation.
	if err := obs.Cancel(ctx); err != nil {
		t.Fatalf("cancel: %v", err)
	}
}

// TestCoAPPublishOverLimit: the identity's publish limit in topics.yaml holds
// through the gateway: the second QoS 1 publish within the second is 4.29.
func TestCoAPPublishOverLimit(t *testing.T) {
	e, _, gw := startPubSubEnv(t, "ps-lim1")
	ctx := testContext(t)
	c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: "coaps://" + gw.Addr().String(), Key: e.things["ps-lim1"]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok, err := c.NewThing("auth-tree", &sdk.Authenticator{ThingID: "ps-lim1", Key: e.things["ps-lim1"]}).AccessToken(ctx, "publish")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": tok.AccessToken, "payload": "1"})
	conn := rawConn(t, gw.Addr().String())
	if code, out := post(t, conn, "/ps/things/ps-lim1/telemetry/t", gateway.FormatJSON, body, "qos=1"); code != codes.Changed {
		t.Fatalf("first publish: %v %s", code, out)
	}
	if code, out := post(t, conn, "/ps/things/ps-lim1/telemetry/t", gateway.FormatJSON, body, "qos=1"); code != codes.TooManyRequests {
		t.Fatalf("second publish within the second: %v %s, want 4.29", code, out)
	}
}
