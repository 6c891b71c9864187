package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imb/broker"
)

// writeHarness writes the options oidc_server.mjs reads from its state directory before it starts.
func writeHarness(t *testing.T, dir string, h map[string]any) {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "harness.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// jwtClaims decodes a JWT's payload without verifying it (the test only looks at what the provider issued).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOIDCScopesInScp runs the provider as Hydra, Okta and Entra ID issue scopes: in an scp array, no scope claim.
func TestOIDCScopesInScp(t *testing.T) {
	nodeModule(t, "mqtt")
	dir := t.TempDir()
	writeHarness(t, dir, map[string]any{"scp": true})
	p := startProvider(t, dir, 0, false)
	e := oidcBroker(t, p, func(c *broker.Config) { c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", "" })
	tok := p.thingToken(thing1, "")
	if c := jwtClaims(t, tok); c["scope"] != nil || c["scp"] == nil {
		t.Fatalf("provider issued scope %v, scp %v; want scp only", c["scope"], c["scp"])
	}
	d, ack := mqttConnect(t, e, thing1, tok)
	if ack.Ev != "connack" || ack.Code != 0 {
		t.Fatalf("connect: %v", ack)
	}
	publishOK(t, d, thing1)
}

// TestOIDCIntrospectionWithoutIss checks that an RFC 7662 answer without iss (optional in the RFC) is accepted from
// the endpoint configured for the issuer.
func TestOIDCIntrospectionWithoutIss(t *testing.T) {
	nodeModule(t, "mqtt")
	dir := t.TempDir()
	writeHarness(t, dir, map[string]any{"introspectionWithoutIss": true})
	p := startProvider(t, dir, 0, false)
	e := oidcBroker(t, p, nil)
	tok := p.thingToken(thing1, resourceOpaque)
	var answer map[string]any
	p.post(p.meta.IntrospectionEndpoint, brokerClient, brokerSecret, url.Values{"token": {tok}}, &answer)
	if answer["active"] != true || answer["iss"] != nil {
		t.Fatalf("introspection answer %v: want active without iss", answer)
	}
	d, ack := mqttConnect(t, e, thing1, tok)
	if ack.Ev != "connack" || ack.Code != 0 {
		t.Fatalf("connect: %v", ack)
	}
	publishOK(t, d, thing1)
}

// TestOIDCPrivateKeyJWTClientAuth has the broker authenticate to the introspection endpoint with an RFC 7523
// client assertion signed by its own key, registered with the provider: no shared secret.
func TestOIDCPrivateKeyJWTClientAuth(t *testing.T) {
	nodeModule(t, "mqtt")
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "broker.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwk := map[string]any{"kty": "EC", "crv": "P-256", "kid": "broker-key", "alg": "ES256", "use": "sig",
		"x": b64(key.PublicKey.X.FillBytes(make([]byte, 32))), "y": b64(key.PublicKey.Y.FillBytes(make([]byte, 32)))}
	writeHarness(t, dir, map[string]any{"brokerJWKS": map[string]any{"keys": []any{jwk}}})
	p := startProvider(t, dir, 0, false)
	e := oidcBroker(t, p, func(c *broker.Config) {
		c.ClientID, c.ClientSecret = "mqtt-broker-pkjwt", ""
		c.IntrospectAuthMethod, c.IntrospectClientKey, c.IntrospectClientKeyID = "private_key_jwt", keyFile, "broker-key"
	})
	before := p.requestCount("POST /token/introspection")
	for _, thing := range []string{thing1, "thing-2"} { // two requests: two assertions, each with its own jti
		d, ack := mqttConnect(t, e, thing, p.thingToken(thing, resourceOpaque))
		if ack.Ev != "connack" || ack.Code != 0 {
			t.Fatalf("connect %s: %v", thing, ack)
		}
		publishOK(t, d, thing)
	}
	if n := p.requestCount("POST /token/introspection") - before; n < 2 {
		t.Fatalf("%d introspection requests, want 2", n)
	}
}

// dropKey removes the key kid from the provider's stored key set (it takes effect at the next start).
func dropKey(t *testing.T, dir, kid string) {
	t.Helper()
	file := filepath.Join(dir, "jwks.json")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	kept := set.Keys[:0]
	for _, k := range set.Keys {
		if k["kid"] != kid {
			kept = append(kept, k)
		}
	}
	if len(kept) == len(set.Keys) {
		t.Fatalf("key %s not in the provider's key set", kid)
	}
	set.Keys = kept
	if b, err = json.Marshal(set); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// connectOK connects MQTT.js with token and expects CONNACK 0 and a granted publish.
func connectOK(t *testing.T, e *env, token, what string) {
	t.Helper()
	d, ack := mqttConnect(t, e, thing1, token)
	if ack.Ev != "connack" || ack.Code != 0 {
		t.Fatalf("%s: connect: %v", what, ack)
	}
	publishOK(t, d, thing1)
	d.send(map[string]any{"op": "end"})
	d.expect("ended")
}

// connectRefused connects MQTT.js with token and expects CONNACK code.
func connectRefused(t *testing.T, e *env, token string, code int, what string) {
	t.Helper()
	_, ack := mqttConnect(t, e, thing1, token)
	if (ack.Ev != "connack" && ack.Ev != "error") || ack.Code != code { // MQTT.js reports a refusal as an error
		t.Fatalf("%s: got %v, want CONNACK 0x%02x", what, ack, code)
	}
}

// TestOIDCRotationsAndRemovedKeys rotates the provider's signing key twice, 10 s apart, and checks that every
// freshly issued token is accepted at once; then removes keys and checks that the periodic refresh, and the
// reload SIGHUP runs (Broker.ReloadKeys), stop trusting them.
func TestOIDCRotationsAndRemovedKeys(t *testing.T) {
	nodeModule(t, "mqtt")
	dir := t.TempDir()
	p := startProvider(t, dir, 0, false)
	jwtOnly := func(refresh time.Duration, cache int) func(*broker.Config) {
		return func(c *broker.Config) {
			c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", ""
			c.JWKSRefreshInterval, c.CacheSize = refresh, cache
		}
	}
	polled := oidcBroker(t, p, jwtOnly(2*time.Second, -1)) // refreshes every 2 s, no cache
	hup := oidcBroker(t, p, jwtOnly(time.Hour, 0))         // refreshes only on reload, default cache
	first := p.thingToken(thing1, "")
	_, kidA := jwtHeader(t, first)
	connectOK(t, polled, first, "first key")
	connectOK(t, hup, first, "first key")

	var kids []string
	for i := range 2 {
		if i > 0 {
			time.Sleep(10 * time.Second)
		}
		p.stop()
		p = startProvider(t, dir, p.port, true)
		tok := p.thingToken(thing1, "")
		_, kid := jwtHeader(t, tok)
		kids = append(kids, kid)
		connectOK(t, polled, tok, fmt.Sprintf("rotation %d", i+1))
		connectOK(t, hup, tok, fmt.Sprintf("rotation %d", i+1))
	}

	// The provider drops the first key. The polling broker stops trusting it at its next refresh; the other keeps
	// it (and its cached validation) until the reload.
	p.stop()
	dropKey(t, dir, kidA)
	p = startProvider(t, dir, p.port, false)
	time.Sleep(5 * time.Second) // two refresh intervals
	connectRefused(t, polled, first, 0x86, "token of the removed key after a refresh")
	connectOK(t, hup, first, "token of the removed key before the reload")
	if err := hup.b.ReloadKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	connectRefused(t, hup, first, 0x86, "token of the removed key after the reload")
	connectOK(t, hup, p.thingToken(thing1, ""), "token of the current key after the reload")
	if kids[0] == kids[1] || kids[0] == kidA {
		t.Fatalf("rotations did not change the signing key: %s, %v", kidA, kids)
	}
}

// TestOIDCIntrospectAlways runs introspect: always against node-oidc-provider, which introspects opaque tokens
// only: its opaque tokens are accepted through the endpoint, its JWTs refused (0x86) as docs/idp says, since the
// provider answers unsupported_token_type for them.
func TestOIDCIntrospectAlways(t *testing.T) {
	nodeModule(t, "mqtt")
	p := startProvider(t, t.TempDir(), 0, false)
	e := oidcBroker(t, p, func(c *broker.Config) { c.Introspect = broker.IntrospectAlways })
	before := p.requestCount("POST /token/introspection")
	connectOK(t, e, p.thingToken(thing1, resourceOpaque), "opaque token")
	connectRefused(t, e, p.thingToken(thing1, ""), 0x86, "JWT the provider cannot introspect")
	if n := p.requestCount("POST /token/introspection") - before; n != 2 {
		t.Errorf("%d introspection requests, want 2: with introspect: always the JWT goes upstream too", n)
	}
	if p.requestCount("GET /jwks") != 0 {
		t.Error("the JWKS was fetched: introspect: always validates nothing locally")
	}
}
