package mqtt_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	imb "imb/broker"
	"imb/internal/issuer"
	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

// TestDialV5AgainstImb connects through the real imb broker, which names the
// authentication method in CONNACK as MQTT 5 requires, and re-authenticates.
func TestDialV5AgainstImb(t *testing.T) {
	iss, b := startImb(t)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tok := &sdk.Token{AccessToken: iss.Mint(issuer.Claims{"sub": "thermostat-1"}, time.Hour), Expiry: time.Now().Add(time.Hour)}
	d := &sdkmqtt.Dialer{Tokens: staticTokens{tok}, ClientID: "thermostat-1", AuthMethod: sdkmqtt.AuthMethodJWT}
	conn, err := d.DialV5(ctx, "tcp://"+b.Addr("tcp"), paho.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.Reauthenticate(ctx); err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	if _, err := conn.Client.Publish(ctx, &paho.Publish{Topic: "things/thermostat-1/telemetry", QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatal(err)
	}
}

// TestDialV5BoundToken: a token bound to the dialer's key (cnf.jwk) connects with IMB-POP by default, renews in
// the session with a fresh proof, and is refused when dialed without the key.
func TestDialV5BoundToken(t *testing.T) {
	iss, b := startImb(t, func(c *imb.Config, _ *issuer.Issuer) { c.Audience = []string{"things-client"} })
	key, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	var jwk map[string]any
	raw, _ := json.Marshal(key.PublicJWK())
	if err := json.Unmarshal(raw, &jwk); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tok := &sdk.Token{AccessToken: iss.Mint(issuer.Claims{"sub": "meter-1", "aud": "things-client", "cnf": map[string]any{"jwk": jwk}}, time.Hour),
		Expiry: time.Now().Add(time.Hour)}
	if !tok.BoundTo(key) {
		t.Fatal("BoundTo: the token is bound to the key")
	}

	d := &sdkmqtt.Dialer{Tokens: staticTokens{tok}, ClientID: "meter-1", Key: key}
	conn, err := d.DialV5(ctx, "tcp://"+b.Addr("tcp"), paho.ClientConfig{})
	if err != nil {
		t.Fatalf("bound token with its key: %v", err)
	}
	if err := conn.Reauthenticate(ctx); err != nil {
		t.Fatalf("re-authenticate with a fresh proof: %v", err)
	}
	if _, err := conn.Client.Publish(ctx, &paho.Publish{Topic: "things/meter-1/telemetry", QoS: 1, Payload: []byte("7")}); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	for _, d := range []*sdkmqtt.Dialer{
		{Tokens: staticTokens{tok}, ClientID: "meter-1"},
		{Tokens: staticTokens{tok}, ClientID: "meter-1", AuthMethod: sdkmqtt.AuthMethodJWT},
	} {
		if _, err := d.DialV5(ctx, "tcp://"+b.Addr("tcp"), paho.ClientConfig{}); !errors.Is(err, sdkmqtt.ErrBadToken) {
			t.Fatalf("bound token without its key (method %q): %v, want ErrBadToken", d.AuthMethod, err)
		}
	}
}

// startImb runs a real issuer and an imb broker that validates its JWTs (mod may change the configuration), with a
// policy that lets a thing use its own topics.
func startImb(t *testing.T, mod ...func(*imb.Config, *issuer.Issuer)) (*issuer.Issuer, *imb.Broker) {
	t.Helper()
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	policy := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nrules:\n  - effect: allow\n    actions: [publish, subscribe]\n    topics: [\"things/{sub}/#\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := imb.Config{MQTTAddr: "127.0.0.1:0", PolicyFile: policy, Issuer: iss.URL(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mod {
		m(&cfg, iss)
	}
	b, err := imb.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return iss, b
}

// boundSource is a token source that asked for tokens bound to key, as sdk.ThingTokenSource.Bind does.
type boundSource struct {
	staticTokens
	key *sdk.Key
}

func (b boundSource) BoundKey() *sdk.Key { return b.key }

// TestDialV5BoundOpaqueToken: an opaque token, whose binding only introspection tells, is proven with IMB-POP when
// the token source asked for tokens bound to the key; dialed as a bearer token it is refused.
func TestDialV5BoundOpaqueToken(t *testing.T) {
	iss, b := startImb(t, func(c *imb.Config, iss *issuer.Issuer) {
		// Opaque tokens only: introspection, whose answer carries the binding.
		c.Issuer, c.IntrospectURL, c.ClientID, c.ClientSecret = "", iss.IntrospectURL(), iss.ClientID(), iss.ClientSecret()
	})
	key, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	var jwk map[string]any
	raw, _ := json.Marshal(key.PublicJWK())
	if err := json.Unmarshal(raw, &jwk); err != nil {
		t.Fatal(err)
	}
	tok := &sdk.Token{AccessToken: iss.MintOpaque(issuer.Claims{"sub": "meter-2", "cnf": map[string]any{"jwk": jwk}}, time.Hour),
		Expiry: time.Now().Add(time.Hour)}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := &sdkmqtt.Dialer{Tokens: boundSource{staticTokens{tok}, key}, ClientID: "meter-2"}
	conn, err := d.DialV5(ctx, "tcp://"+b.Addr("tcp"), paho.ClientConfig{})
	if err != nil {
		t.Fatalf("opaque bound token from a bound source: %v", err)
	}
	if err := conn.Reauthenticate(ctx); err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	_ = conn.Close(ctx)
	bearer := &sdkmqtt.Dialer{Tokens: staticTokens{tok}, ClientID: "meter-2", AuthMethod: sdkmqtt.AuthMethodJWT}
	if _, err := bearer.DialV5(ctx, "tcp://"+b.Addr("tcp"), paho.ClientConfig{}); !errors.Is(err, sdkmqtt.ErrBadToken) {
		t.Fatalf("the same token as a bearer token: %v, want ErrBadToken", err)
	}
}
