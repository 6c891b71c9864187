package interop

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"imb/broker"
	"imb/internal/issuer"
)

// Identities the tests use. A thing's MQTT client id must equal its thing id (the
// broker's default binding).
const (
	thing1   = "thing-1"
	thing2   = "thing-2"
	cloudApp = "cloud-app"
)

// env is one real broker on a loopback port trusting one real token issuer.
type env struct {
	t   *testing.T
	iss *issuer.Issuer
	b   *broker.Broker
}

// newEnv starts the in-process issuer and a broker that validates its JWTs locally
// and its opaque tokens by introspection; mod may adjust the broker's config.
func newEnv(t *testing.T, mod ...func(*broker.Config)) *env {
	t.Helper()
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	cfg := broker.Config{
		IntrospectURL: iss.IntrospectURL(),
		ClientID:      iss.ClientID(),
		ClientSecret:  iss.ClientSecret(),
		Issuer:        iss.URL(),
		Audience:      []string{"imb"},
	}
	for _, m := range mod {
		m(&cfg)
	}
	return &env{t: t, iss: iss, b: startBroker(t, cfg)}
}

// startBroker starts a broker with cfg on loopback ports, under the interop policy,
// and stops it when the test ends.
func startBroker(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.PolicyFile = filepath.Join("testdata", "topics.yaml")
	if cfg.ValidateTimeout == 0 {
		cfg.ValidateTimeout = 5 * time.Second
	}
	if cfg.RevalidateInterval == 0 {
		cfg.RevalidateInterval = time.Hour
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = b.Close() })
	return b
}

// hostPort is the broker's MQTT listener as host and port.
func (e *env) hostPort() (string, string) {
	host, port, err := net.SplitHostPort(e.b.Addr("tcp"))
	if err != nil {
		e.t.Fatal(err)
	}
	return host, port
}

// url is the broker's MQTT listener as a URL for MQTT.js and the paho driver.
func (e *env) url() string { return "mqtt://" + e.b.Addr("tcp") }

// thingToken mints a JWT for a thing with AM's default thing scopes.
func (e *env) thingToken(id string, ttl time.Duration) string {
	return e.iss.Mint(issuer.Claims{"sub": id, "scope": []string{"publish", "subscribe"}}, ttl)
}

// cloudToken mints a JWT for the cloud application.
func (e *env) cloudToken() string {
	return e.iss.Mint(issuer.Claims{"sub": cloudApp, "scope": []string{"fleet:read", "fleet:command"}}, time.Hour)
}

// expiredToken mints a JWT for a thing that expired a minute ago.
func (e *env) expiredToken(id string) string {
	past := time.Now().Add(-time.Minute).Unix()
	return e.iss.Mint(issuer.Claims{"sub": id, "scope": []string{"publish", "subscribe"},
		"exp": past, "iat": past - 60, "nbf": past - 60}, 0)
}
