package httpdoor_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"imb/broker"
	"imb/internal/issuer"
)

// dpopKey is a client's DPoP key pair and its RFC 7638 thumbprint.
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jkt  string
}

func newDPoPKey(t testing.TB) dpopKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return dpopKey{k, base64.RawURLEncoding.EncodeToString(tp)}
}

// proof is a DPoP proof JWT for method and url, with claims changed by mod.
func (k dpopKey) proof(t testing.TB, typ, method, url, token string, iat time.Time, mod func(map[string]any)) string {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	claims := map[string]any{"jti": rand.Text(), "htm": method, "htu": url, "iat": iat.Unix(),
		"ath": base64.RawURLEncoding.EncodeToString(sum[:])}
	if mod != nil {
		mod(claims)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
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

func TestDPoP(t *testing.T) {
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	cfg := broker.Defaults()
	cfg.MQTTAddr, cfg.WSAddr, cfg.AdminAddr, cfg.HTTPAddr = "127.0.0.1:0", "", "", "127.0.0.1:0"
	cfg.PolicyFile = filepath.Join("..", "topics.yaml")
	cfg.Issuer, cfg.IntrospectURL, cfg.ClientID, cfg.ClientSecret = iss.URL(), iss.IntrospectURL(), iss.ClientID(), iss.ClientSecret()
	cfg.Logger = slog.New(slog.DiscardHandler)
	b := startBroker(t, cfg)

	key, other := newDPoPKey(t), newDPoPKey(t)
	bound := iss.Mint(issuer.Claims{"sub": "tv-d", "scope": "publish", "cnf": map[string]any{"jkt": key.jkt}}, time.Hour)
	plain := iss.Mint(issuer.Claims{"sub": "tv-d", "scope": "publish"}, time.Hour)
	// A token bound by the key itself (RFC 7800 cnf.jwk, as AM issues it) is DPoP-bound to that key's thumbprint.
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: key.priv.Public()})
	var jwkClaim map[string]any
	_ = json.Unmarshal(jwk, &jwkClaim)
	byJWK := iss.Mint(issuer.Claims{"sub": "tv-d", "scope": "publish", "cnf": map[string]any{"jwk": jwkClaim}}, time.Hour)
	// An opaque token whose binding only introspection tells: the door cannot ask for a proof, the broker refuses it.
	opaque := iss.MintOpaque(issuer.Claims{"sub": "tv-d", "scope": "publish", "cnf": map[string]any{"jkt": key.jkt}}, time.Hour)
	url := "http://" + b.Addr("http") + "/topics/things/tv-d/telemetry/t"
	now := time.Now()
	replayed := key.proof(t, "dpop+jwt", "POST", url, bound, now, nil)

	tests := []struct {
		name, scheme, token string
		proofs              []string
		status              int
		errName, challenge  string
	}{
		{"valid proof", "DPoP", bound, []string{replayed}, 200, "", ""},
		{"replayed jti", "DPoP", bound, []string{replayed}, 401, "invalid_dpop_proof", `DPoP realm="imb", error="invalid_dpop_proof"`},
		{"bound token as bearer", "Bearer", bound, nil, 401, "dpop_required", `DPoP realm="imb", error="invalid_token"`},
		{"no proof", "DPoP", bound, nil, 401, "invalid_dpop_proof", `error="invalid_dpop_proof"`},
		{"two proofs", "DPoP", bound, []string{key.proof(t, "dpop+jwt", "POST", url, bound, now, nil), key.proof(t, "dpop+jwt", "POST", url, bound, now, nil)}, 401, "invalid_dpop_proof", ""},
		{"another key", "DPoP", bound, []string{other.proof(t, "dpop+jwt", "POST", url, bound, now, nil)}, 401, "invalid_dpop_proof", ""},
		{"wrong typ", "DPoP", bound, []string{key.proof(t, "JWT", "POST", url, bound, now, nil)}, 401, "invalid_dpop_proof", ""},
		{"wrong htm", "DPoP", bound, []string{key.proof(t, "dpop+jwt", "GET", url, bound, now, nil)}, 401, "invalid_dpop_proof", ""},
		{"wrong htu", "DPoP", bound, []string{key.proof(t, "dpop+jwt", "POST", url+"/x", bound, now, nil)}, 401, "invalid_dpop_proof", ""},
		{"stale iat", "DPoP", bound, []string{key.proof(t, "dpop+jwt", "POST", url, bound, now.Add(-5*time.Minute), nil)}, 401, "invalid_dpop_proof", ""},
		{"future iat", "DPoP", bound, []string{key.proof(t, "dpop+jwt", "POST", url, bound, now.Add(5*time.Minute), nil)}, 401, "invalid_dpop_proof", ""},
		{"ath of another token", "DPoP", bound, []string{key.proof(t, "dpop+jwt", "POST", url, plain, now, nil)}, 401, "invalid_dpop_proof", ""},
		{"no jti", "DPoP", bound, []string{key.proof(t, "dpop+jwt", "POST", url, bound, now, func(c map[string]any) { delete(c, "jti") })}, 401, "invalid_dpop_proof", ""},
		{"unbound token as DPoP", "DPoP", plain, []string{key.proof(t, "dpop+jwt", "POST", url, plain, now, nil)}, 401, "not_dpop_bound", ""},
		{"unbound token as bearer", "Bearer", plain, nil, 200, "", ""},
		{"cnf.jwk token with a proof by its key", "DPoP", byJWK, []string{key.proof(t, "dpop+jwt", "POST", url, byJWK, now, nil)}, 200, "", ""},
		{"cnf.jwk token as bearer", "Bearer", byJWK, nil, 401, "dpop_required", ""},
		{"cnf.jwk token, proof by another key", "DPoP", byJWK, []string{other.proof(t, "dpop+jwt", "POST", url, byJWK, now, nil)}, 401, "invalid_dpop_proof", ""},
		{"introspected key-bound token as bearer", "Bearer", opaque, nil, 401, "", ""},
		{"htu with query ignored, host case", "DPoP", bound, []string{key.proof(t, "dpop+jwt", "POST", strings.Replace(url, "http://", "HTTP://", 1)+"?x=1", bound, now, nil)}, 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte("1")))
			req.Header.Set("Authorization", tt.scheme+" "+tt.token)
			for _, p := range tt.proofs {
				req.Header.Add("DPoP", p)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			var out map[string]any
			_ = json.Unmarshal(data, &out)
			if resp.StatusCode != tt.status || (tt.errName != "" && out["error"] != tt.errName) {
				t.Fatalf("%s %s, want %d %s", resp.Status, data, tt.status, tt.errName)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.challenge) {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
		})
	}
}
