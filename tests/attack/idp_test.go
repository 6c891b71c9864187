package attack

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// idp is an identity provider the tests control completely: OIDC discovery, a JWKS
// with one EC P-256 and one RSA key, and an RFC 7662 endpoint that knows only the
// opaque tokens registered with it. Unlike internal/issuer it hands out its private
// keys, so the corpus can sign exactly the bytes each attack needs.
type idp struct {
	t      testing.TB
	srv    *httptest.Server
	ec     *ecdsa.PrivateKey
	ecKid  string
	rsa    *rsa.PrivateKey
	rsaKid string

	mu     sync.Mutex
	opaque map[string]map[string]any

	introspections atomic.Int64
}

// Credentials the broker uses at the introspection endpoint.
const (
	brokerClientID     = "imb-broker"
	brokerClientSecret = "imb-broker-secret"
	audience           = "imb"
)

// newIDP starts an identity provider on a loopback port.
func newIDP(t testing.TB) *idp {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{t: t, ec: ec, ecKid: "ec-1", rsa: rk, rsaKid: "rsa-1", opaque: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                 p.url(),
			"jwks_uri":               p.url() + "/jwks",
			"introspection_endpoint": p.url() + "/introspect",
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"keys": []any{p.ecJWK(), p.rsaJWK()}})
	})
	mux.HandleFunc("/introspect", p.introspect)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) url() string { return p.srv.URL }

// ecJWK is the public EC key as published (the JSON an attacker can read).
func (p *idp) ecJWK() map[string]any {
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": p.ecKid, "use": "sig", "alg": "ES256",
		"x": b64(pad(p.ec.X, 32)), "y": b64(pad(p.ec.Y, 32))}
}

// rsaJWK is the public RSA key as published; it names no alg, so that the key fit
// (not the JWK's alg) is what refuses confused algorithms.
func (p *idp) rsaJWK() map[string]any {
	return map[string]any{"kty": "RSA", "kid": p.rsaKid, "use": "sig",
		"n": b64(p.rsa.N.Bytes()), "e": b64(big.NewInt(int64(p.rsa.E)).Bytes())}
}

func (p *idp) introspect(w http.ResponseWriter, r *http.Request) {
	p.introspections.Add(1)
	id, secret, ok := r.BasicAuth()
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != brokerClientID || secret != brokerClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		writeJSON(w, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	claims, known := p.opaque[r.PostForm.Get("token")]
	p.mu.Unlock()
	if !known {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	out := map[string]any{"active": true, "token_type": "Bearer"}
	p.mu.Lock()
	for k, v := range claims {
		out[k] = v
	}
	p.mu.Unlock()
	writeJSON(w, out)
}

// claims are valid access-token claims for sub with scopes, good for an hour.
func (p *idp) claims(sub string, scopes ...string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": p.url(), "aud": audience, "sub": sub, "scope": scopes,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti": fmt.Sprintf("j%d", now.UnixNano()),
	}
}

// header is the header of a legitimate token.
func (p *idp) header() map[string]any {
	return map[string]any{"alg": "ES256", "typ": "JWT", "kid": p.ecKid}
}

// token is a valid ES256 token for sub with scopes.
func (p *idp) token(sub string, scopes ...string) string {
	return p.sign(p.header(), p.claims(sub, scopes...))
}

// tokenWith is a valid token whose claims mod changed before signing.
func (p *idp) tokenWith(sub string, mod func(map[string]any)) string {
	c := p.claims(sub, "publish", "subscribe")
	mod(c)
	return p.sign(p.header(), c)
}

// sign signs a header and claims with the legitimate EC key.
func (p *idp) sign(header, claims map[string]any) string {
	return signJWS(p.t, "ES256", p.ec, mustJSON(p.t, header), mustJSON(p.t, claims))
}

// opaqueToken registers an opaque token that introspection reports active.
func (p *idp) opaqueToken(sub string, ttl time.Duration, scopes ...string) string {
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	tok := b64(raw)
	c := p.claims(sub)
	c["scope"] = strings.Join(scopes, " ")
	c["exp"] = time.Now().Add(ttl).Unix()
	p.mu.Lock()
	p.opaque[tok] = c
	p.mu.Unlock()
	return tok
}

// opaqueWith registers an opaque token for sub (publish and subscribe, an hour) whose
// introspection answer mod changed; a claim set to nil is left out of the answer.
func (p *idp) opaqueWith(sub string, mod func(map[string]any)) string {
	tok := p.opaqueToken(sub, time.Hour, "publish", "subscribe")
	p.setClaims(tok, mod)
	return tok
}

// setClaims changes what introspection answers about a registered opaque token from
// now on; a claim set to nil is left out.
func (p *idp) setClaims(tok string, mod func(map[string]any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.opaque[tok]
	mod(c)
	for k, v := range c {
		if v == nil {
			delete(c, k)
		}
	}
}

// signJWS builds a compact JWS over the exact header and payload bytes. key is an
// *ecdsa.PrivateKey (ES256, raw r||s), an *rsa.PrivateKey (RS256, PS256) or a []byte
// HMAC secret (HS256).
func signJWS(t testing.TB, alg string, key any, header, payload []byte) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	return input + "." + b64(signature(t, alg, key, input))
}

func signature(t testing.TB, alg string, key any, input string) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		var r, s *big.Int
		if r, s, err = ecdsa.Sign(rand.Reader, k, sum[:]); err == nil {
			size := (k.Curve.Params().BitSize + 7) / 8
			sig = append(pad(r, size), pad(s, size)...)
		}
	case *rsa.PrivateKey:
		if alg == "PS256" {
			sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, sum[:], nil)
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
		}
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		t.Fatalf("no signer for %T", key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func pad(n *big.Int, size int) []byte {
	out := make([]byte, size)
	n.FillBytes(out)
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// trap is a server an attacker controls: any request to it means the broker
// followed a URL taken from a token.
type trap struct {
	srv  *httptest.Server
	hits atomic.Int64
	key  *ecdsa.PrivateKey
}

func newTrap(t testing.TB) *trap {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tr := &trap{key: key}
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tr.hits.Add(1)
		writeJSON(w, map[string]any{"keys": []any{tr.jwk("attacker")}})
	}))
	t.Cleanup(tr.srv.Close)
	return tr
}

// jwk is the attacker's public key under kid.
func (tr *trap) jwk(kid string) map[string]any {
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
		"x": b64(pad(tr.key.X, 32)), "y": b64(pad(tr.key.Y, 32))}
}
