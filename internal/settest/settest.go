// Package settest is a Security Event Token transmitter for tests: its own ES256 key, SETs signed with go-jose
// (an implementation independent of the receiver's verifier), its key set served over real HTTP, and a push as
// RFC 8935 delivers it.
package settest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MediaType is the Content-Type of a pushed SET.
const MediaType = "application/secevent+jwt"

// Transmitter is one SSF transmitter.
type Transmitter struct {
	Issuer   string
	Audience string // the receiver, as its aud
	KID      string
	key      *ecdsa.PrivateKey
	jwks     *httptest.Server
	seq      atomic.Int64
}

// New starts a transmitter whose key set is served until the test ends.
func New(t testing.TB, audience string) *Transmitter {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tx := &Transmitter{Issuer: "https://transmitter.test", Audience: audience, KID: "tx-1", key: key}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: tx.KID, Algorithm: "ES256", Use: "sig"}}}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	tx.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(tx.jwks.Close)
	return tx
}

// JWKSURL is where the transmitter's key set is.
func (tx *Transmitter) JWKSURL() string { return tx.jwks.URL }

// Claims returns the claims of a SET to the receiver with one event: iss, aud, iat now and a fresh jti.
func (tx *Transmitter) Claims(eventType string, payload map[string]any) map[string]any {
	return map[string]any{
		"iss": tx.Issuer, "aud": tx.Audience, "iat": time.Now().Unix(),
		"jti":    fmt.Sprintf("set-%d-%d", time.Now().UnixNano(), tx.seq.Add(1)),
		"events": map[string]any{eventType: payload},
	}
}

// Sign signs claims with typ under the transmitter's kid, with key (nil: the transmitter's own; another key
// forges).
func (tx *Transmitter) Sign(t testing.TB, claims map[string]any, typ string, key *ecdsa.PrivateKey) string {
	t.Helper()
	if key == nil {
		key = tx.key
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: tx.KID}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Push delivers a SET to url with contentType and returns the status and the JSON error body, if any.
func Push(t testing.TB, url, set, contentType string) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(set))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e map[string]string
	if len(body) > 0 {
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, body)
		}
	}
	return resp.StatusCode, e
}
