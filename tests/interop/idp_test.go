package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
