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
	iss, b := startImb(t, "things-client")
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

// startImb runs a real issuer and an imb broker that trusts it (accepting the audience given, if any), with a policy
// that lets a thing use its own topics.
func startImb(t *testing.T, audience ...string) (*issuer.Issuer, *imb.Broker) {
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
	b, err := imb.Start(context.Background(), imb.Config{MQTTAddr: "127.0.0.1:0", PolicyFile: policy,
		Issuer: iss.URL(), Audience: audience, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return iss, b
}
