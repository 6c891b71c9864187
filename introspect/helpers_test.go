package introspect

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// testKey is a private signing key with its public JWK.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
	// jwkAlg, when set, is published as the JWK's alg.
	jwkAlg string
}

// public returns the public JWK to publish.
func (k *testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.jwkAlg, Use: "sig"}
}

// Generated once per test binary: RSA key generation is slow on a shared 2-core machine.
var (
	rsaKeyA    = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaKeyB    = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaKey1024 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func newECKey(t testing.TB, kid string, curve elliptic.Curve, alg string) *testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, alg: alg, priv: k}
}

func newEdKey(t testing.TB, kid string) *testKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, alg: "EdDSA", priv: k}
}

// keySetJSON serialises public keys as a JWKS.
func keySetJSON(t testing.TB, keys ...*testKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signJOSE signs claims with go-jose, the way an independent issuer would.
func signJOSE(t testing.TB, k *testKey, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(k.alg),
		Key:       jose.JSONWebKey{Key: k.priv, KeyID: k.kid},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// signRaw signs exactly the given header and payload JSON texts, so tests can craft headers go-jose would never
// produce. alg chooses the signature scheme independently of what the header claims.
func signRaw(t testing.TB, key any, alg, header, payload string) string {
	t.Helper()
	input := enc(header) + "." + enc(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(rawSignature(t, key, alg, input))
}

func rawSignature(t testing.TB, key any, alg, input string) []byte {
	t.Helper()
	a, ok := lookupAlgorithm(alg)
	if !ok {
		t.Fatalf("unknown alg %s", alg)
	}
	var digest []byte
	if a.hash != 0 {
		h := a.hash.New()
		io.WriteString(h, input)
		digest = h.Sum(nil)
	}
	switch a.family {
	case familyEC:
		r, s, err := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), digest)
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 2*a.size)
		r.FillBytes(sig[:a.size])
		s.FillBytes(sig[a.size:])
		return sig
	case familyRSA:
		sig, err := rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), a.hash, digest)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case familyRSAPSS:
		sig, err := rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), a.hash, digest,
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case familyEd25519:
		return ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	case familyHMAC:
		m := hmac.New(a.hash.New, key.([]byte))
		io.WriteString(m, input)
		return m.Sum(nil)
	}
	t.Fatalf("no signer for %s", alg)
	return nil
}

// testClock is a settable clock for TTL and staleness tests.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// issuerServer is a real HTTP issuer on 127.0.0.1: discovery, JWKS and, optionally, introspection.
type issuerServer struct {
	srv        *httptest.Server
	mu         sync.Mutex
	jwks       []byte
	jwksStatus int
	jwksHits   atomic.Int64
	discHits   atomic.Int64
	// introspect answers an introspection request; nil means 404.
	introspect http.HandlerFunc
	// issuerOverride, when set, is the issuer the discovery document claims.
	issuerOverride string
}

func newIssuerServer(t testing.TB, keys ...*testKey) *issuerServer {
	t.Helper()
	s := &issuerServer{jwks: keySetJSON(t, keys...), jwksStatus: http.StatusOK}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		s.discHits.Add(1)
		s.mu.Lock()
		iss := s.issuerOverride
		s.mu.Unlock()
		if iss == "" {
			iss = s.issuer()
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q,"introspection_endpoint":%q}`, iss,
			s.issuer()+"/connect/jwk_uri", s.issuer()+"/introspect")
	})
	mux.HandleFunc("GET /connect/jwk_uri", func(w http.ResponseWriter, r *http.Request) {
		s.jwksHits.Add(1)
		s.mu.Lock()
		body, status := s.jwks, s.jwksStatus
		s.mu.Unlock()
		if status != http.StatusOK {
			http.Error(w, "broken", status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := s.introspect
		s.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// issuer is the issuer URL, AM style ({base}/oauth2 is modelled by the server root).
func (s *issuerServer) issuer() string { return s.srv.URL }

func (s *issuerServer) setKeys(t testing.TB, keys ...*testKey) {
	b := keySetJSON(t, keys...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jwks = b
}

func (s *issuerServer) setJWKSStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jwksStatus = status
}

func (s *issuerServer) setIntrospect(h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.introspect = h
}

// claimsFor returns typical AM access-token claims for a thing, valid for an hour.
func claimsFor(iss, thing string) map[string]any {
	now := time.Now()
	return map[string]any{
		"sub": "(usr!" + thing + ")", "subname": thing, "iss": iss,
		"aud": "forgerock-iot-oauth2-client", "scope": []string{"publish", "subscribe"},
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"jti": "jti-" + thing, "tokenName": "access_token", "realm": "/",
	}
}

// reasonOf asserts err is an *Error of the given kind and returns its reason.
func reasonOf(t testing.TB, err error, kind error) string {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %v is not %v", err, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *Error", err)
	}
	return e.Reason
}

// waitFor polls cond for up to 10 s: events on a loaded machine take their time, but they happen.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// contextWithCancel is a cancellable child of the test's context.
func contextWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}
