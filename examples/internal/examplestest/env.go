// Package examplestest runs the examples against what `imb dev` runs, in-process: an amdev identity
// server with the walk-through's defaults and a real imb broker with the repository's topics.yaml.
package examplestest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"imb/amdev"
	"imb/broker"
	"imb/gateway"
	"imb/sdk"
)

// WaitLong bounds every wait of the tests: generous, because the machine may be loaded.
const WaitLong = 20 * time.Second

// Options change the environment from imb dev's defaults.
type Options struct {
	// TokenLifetime, when set, replaces the one-hour access token lifetime.
	TokenLifetime time.Duration
	// DevicePollInterval, when set, replaces the device grant's five-second poll interval.
	DevicePollInterval time.Duration
	// Broker starts an imb broker next to amdev.
	Broker bool
	// HTTPDoor turns on the broker's HTTP door (imb dev --http-addr); DoorURL is its base URL.
	HTTPDoor bool
	// GatewayTree, when set, starts an IoT Gateway in front of amdev relaying through that tree, as
	// imb dev --gateway does; the examples then take GatewayURL as -url.
	GatewayTree string
}

// Env is a running amdev, and the broker when asked for.
type Env struct {
	AM      *amdev.Server
	Broker  *broker.Broker
	Gateway *gateway.Gateway
}

// GatewayURL is the gateway's coaps:// URL.
func (e *Env) GatewayURL() string { return "coaps://" + e.Gateway.Addr().String() }

// URL is amdev's base URL, the examples' -url.
func (e *Env) URL() string { return e.AM.URL() }

// BrokerAddr is the broker's MQTT TCP address, the examples' -broker.
func (e *Env) BrokerAddr() string { return e.Broker.Addr("tcp") }

// DoorURL is the base URL of the broker's HTTP door, the examples' -door.
func (e *Env) DoorURL() string { return "http://" + e.Broker.Addr("http") }

// Start runs the environment until the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitLong)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	settings := amdev.DefaultSettings()
	if o.TokenLifetime > 0 {
		settings.OAuth2.AccessTokenLifetime = amdev.Duration(o.TokenLifetime)
	}
	if o.DevicePollInterval > 0 {
		settings.OAuth2.DevicePollInterval = amdev.Duration(o.DevicePollInterval)
	}
	am, err := amdev.Start(ctx, amdev.Config{Listen: "127.0.0.1:0", InMemory: true, Settings: &settings, Logger: quiet})
	if err != nil {
		t.Fatalf("amdev: %v", err)
	}
	t.Cleanup(func() { _ = am.Close() })
	env := &Env{AM: am}
	if o.GatewayTree != "" {
		env.Gateway = startGateway(t, ctx, am, o.GatewayTree)
	}
	if !o.Broker {
		return env
	}
	policy, err := PolicyFile()
	if err != nil {
		t.Fatal(err)
	}
	client, ok := am.BrokerClient()
	if !ok {
		t.Fatal("amdev has no broker introspection client")
	}
	cfg := broker.Defaults()
	cfg.MQTTAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	if o.HTTPDoor {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	cfg.PolicyFile = policy
	cfg.Issuer = am.Issuer()
	cfg.IntrospectURL = am.IntrospectionURL()
	cfg.ClientID, cfg.ClientSecret = client.ID, client.Secret
	cfg.Logger = quiet
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	for b.Ready(ctx) != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("broker not ready: %v", b.Ready(context.Background()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	env.Broker = b
	return env
}

// PolicyFile finds the repository's topics.yaml, the policy imb dev serves, from the working directory up.
func PolicyFile() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "topics.yaml"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("topics.yaml: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Metric sums the broker's Prometheus samples of name whose labels include labels.
func (e *Env) Metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := e.Broker.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == k && l.GetValue() == v)
				}
				if !found {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// CheckRenewals checks the broker's counters after an example and its peer kept their sessions over two
// token lifetimes: no session ended by token expiry; over MQTT 5 each of the two clients connected once
// (renewing by re-authentication in the session), over MQTT 3.1.1 the example reconnected at least twice.
func (e *Env) CheckRenewals(t testing.TB, v311 bool) {
	t.Helper()
	if got := e.Metric(t, "imb_disconnects_total", map[string]string{"reason": "expired"}); got != 0 {
		t.Errorf("%v sessions ended by token expiry", got)
	}
	connects := e.Metric(t, "imb_connects_total", map[string]string{"result": "accepted"})
	if !v311 && connects != 2 {
		t.Errorf("%v accepted CONNECTs, want 2: MQTT 5 sessions re-authenticate without reconnecting", connects)
	}
	if v311 && connects < 4 {
		t.Errorf("%v accepted CONNECTs, want the peer's, the example's and at least two renewals", connects)
	}
}

// startGateway registers a gateway thing with a fresh key and runs a gateway on a free loopback UDP port.
func startGateway(t testing.TB, ctx context.Context, am *amdev.Server, tree string) *gateway.Gateway {
	t.Helper()
	key, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	if err := am.EnsureThing(ctx, amdev.DemoThing{ID: "examples-gateway", ThingType: "gateway", ThingKeys: jwks}); err != nil {
		t.Fatal(err)
	}
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: am.URL(), Realm: "/"})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.Start(ctx, gateway.Config{Client: client, Tree: tree, Address: "127.0.0.1:0",
		Handlers: []sdk.CallbackHandler{&sdk.Authenticator{ThingID: "examples-gateway", Key: key}}})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	return gw
}
