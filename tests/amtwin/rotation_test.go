package amtwin

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"imb/broker"
)

const es256Mapping = "/json/global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/am.services.oauth2.stateless.signing.ES256"

// kidOf is the kid of a compact JWS's header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	h, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err != nil || json.Unmarshal(raw, &hdr) != nil || hdr.Kid == "" {
		t.Fatalf("no kid in %q", h)
	}
	return hdr.Kid
}

// TestSigningKeyRotationThroughTheBroker rotates the ES256 signing key
// the way AM's automation does, through the secret mapping of
// am.services.oauth2.stateless.signing.ES256: a new alias first in the
// list signs from then on, the old one still verifies, and once it is
// unmapped its tokens are refused. The broker in front (auto mode) learns
// the new kid from the JWKS on its own, verifying locally throughout, and
// drops the old key at its next key-set refresh.
func TestSigningKeyRotationThroughTheBroker(t *testing.T) {
	const thing = "rotation-thing"
	// The broker's validation cache is off, so that each CONNECT shows the
	// key set the broker holds at that moment.
	tw := startTwin(t, thing, func(c *broker.Config) {
		c.JWKSRefreshInterval = 200 * time.Millisecond
		c.CacheSize = -1
	})
	addr := tw.broker.Addr("tcp")
	issue := func() string {
		t.Helper()
		tok, err := tw.am.IssueAccessToken(testContext(t), thing, "", []string{"publish", "subscribe"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	mapping := func(method, body string, want int) []string {
		t.Helper()
		status, doc := tw.adminCall(t, method, es256Mapping, body)
		if status != want || doc["secretId"] != "am.services.oauth2.stateless.signing.ES256" {
			t.Fatalf("%s mapping: %d %v", method, status, doc)
		}
		var aliases []string
		for _, a := range doc["aliases"].([]any) {
			aliases = append(aliases, a.(string))
		}
		return aliases
	}
	published := func() []string {
		t.Helper()
		status, set := call(t, "GET", tw.am.JWKSURL(), nil, "")
		if status != 200 {
			t.Fatalf("jwks: %d %v", status, set)
		}
		var kids []string
		for _, k := range set["keys"].([]any) {
			kids = append(kids, k.(map[string]any)["kid"].(string))
		}
		return kids
	}

	if got := mapping("GET", "", 200); !slices.Equal(got, []string{"es256test"}) {
		t.Fatalf("default mapping: %v", got)
	}
	old := issue()
	oldKid := kidOf(t, old)
	if code := connect(t, addr, thing, old); code != 0 {
		t.Fatalf("before rotation: CONNACK 0x%02x", code)
	}

	// Rotate: the new alias first. amdev makes its key and publishes it.
	if got := mapping("PUT", `{"secretId": "am.services.oauth2.stateless.signing.ES256", "aliases": ["es256-2027", "es256test"]}`, 200); !slices.Equal(got, []string{"es256-2027", "es256test"}) {
		t.Fatalf("mapping after PUT: %v", got)
	}
	fresh := issue()
	newKid := kidOf(t, fresh)
	if newKid == oldKid {
		t.Fatal("a token signed after the rotation has the old kid")
	}
	if kids := published(); !slices.Contains(kids, newKid) || !slices.Contains(kids, oldKid) {
		t.Fatalf("JWKS after rotation: %v, want %s and %s", kids, newKid, oldKid)
	}
	before := tw.introspections.Load()
	if code := connect(t, addr, thing, fresh); code != 0 {
		t.Fatalf("a token signed after rotation: CONNACK 0x%02x", code)
	}
	if code := connect(t, addr, thing, old); code != 0 {
		t.Fatalf("a token signed before rotation: CONNACK 0x%02x", code)
	}
	if n := tw.introspections.Load() - before; n != 0 {
		t.Fatalf("the broker introspected %d rotated tokens instead of fetching the new key", n)
	}

	// Retire the old alias: its key leaves the JWKS, its tokens are refused.
	mapping("PUT", `{"aliases": ["es256-2027"]}`, 200)
	if kids := published(); slices.Contains(kids, oldKid) || !slices.Contains(kids, newKid) {
		t.Fatalf("JWKS after retiring es256test: %v", kids)
	}
	deadline := time.Now().Add(10 * time.Second)
	for connect(t, addr, thing, old) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a token of the retired key is still accepted 10 s after its alias was unmapped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := connect(t, addr, thing, fresh); code != 0 {
		t.Fatalf("after retiring the old key, a token of the new one: CONNACK 0x%02x", code)
	}
	if code := connect(t, addr, thing, issue()); code != 0 {
		t.Fatalf("a token signed after the retirement: CONNACK 0x%02x", code)
	}

	// What amdev cannot take is refused and changes nothing.
	for _, bad := range []string{`{"aliases": []}`, `{"aliases": ["../x"]}`, `{"secretId": "other", "aliases": ["a"]}`} {
		if status, body := tw.adminCall(t, "PUT", es256Mapping, bad); status != 400 {
			t.Fatalf("PUT %s: %d %v", bad, status, body)
		}
	}
	if got := mapping("GET", "", 200); !slices.Equal(got, []string{"es256-2027"}) {
		t.Fatalf("a refused PUT changed the mapping: %v", got)
	}
	if status, body := tw.adminCall(t, "GET", strings.Replace(es256Mapping, "default-keystore", "other-store", 1), ""); status != 404 {
		t.Fatalf("another secret store: %d %v", status, body)
	}
}
