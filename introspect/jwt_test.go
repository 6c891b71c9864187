package introspect

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// newTestJWT builds a validator for srv with cfg's other fields, closed at the end of the test.
func newTestJWT(t testing.TB, cfg JWTConfig) *JWTValidator {
	t.Helper()
	v, err := NewJWT(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestJWTAlgorithms(t *testing.T) {
	keys := []*testKey{
		newECKey(t, "k-es256", elliptic.P256(), "ES256"),
		newECKey(t, "k-es384", elliptic.P384(), "ES384"),
		{kid: "k-rs256", alg: "RS256", priv: rsaKeyA()},
		{kid: "k-ps256", alg: "PS256", priv: rsaKeyB()},
		newEdKey(t, "k-eddsa"),
	}
	srv := newIssuerServer(t, keys...)
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), Audience: []string{"forgerock-iot-oauth2-client"}})
	if err := v.Ready(t.Context()); err != nil {
		t.Fatalf("Ready after discovery: %v", err)
	}
	for _, k := range keys {
		t.Run(k.alg, func(t *testing.T) {
			claims := claimsFor(srv.issuer(), "thing-"+k.alg)
			tok, err := v.Validate(t.Context(), signJOSE(t, k, "JWT", claims))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tok.Subject != "(usr!thing-"+k.alg+")" || tok.ThingID != "thing-"+k.alg {
				t.Errorf("subject %q thing %q", tok.Subject, tok.ThingID)
			}
			if !slices.Equal(tok.Scopes, []string{"publish", "subscribe"}) {
				t.Errorf("scopes %q", tok.Scopes)
			}
			if tok.ClientID != "forgerock-iot-oauth2-client" || tok.Method != MethodJWT || tok.Issuer != srv.issuer() {
				t.Errorf("client %q method %q issuer %q", tok.ClientID, tok.Method, tok.Issuer)
			}
			if want := time.Unix(claims["exp"].(int64), 0); !tok.Expiry.Equal(want) {
				t.Errorf("expiry %v, want %v", tok.Expiry, want)
			}
			if tok.ID != "jti-thing-"+k.alg || tok.Claims["realm"] != "/" {
				t.Errorf("jti %q realm %v", tok.ID, tok.Claims["realm"])
			}
		})
	}
	if n := srv.discHits.Load(); n != 1 {
		t.Errorf("discovery requests: %d, want 1", n)
	}
}

// TestRFC9068TokenShape checks a node-oidc-provider style token: typ at+jwt, client_id, scope string, cnf.jkt.
func TestRFC9068TokenShape(t *testing.T) {
	k := newECKey(t, "thumb", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k)
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), Audience: []string{"urn:example:mqtt-broker"},
		Types: []string{"application/at+jwt"}})
	now := time.Now()
	claims := map[string]any{
		"jti": "j1", "sub": "thing-secret", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"scope": "mqtt:publish mqtt:subscribe", "client_id": "thing-client", "iss": srv.issuer(),
		"aud": "urn:example:mqtt-broker", "cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
	}
	tok, err := v.Validate(t.Context(), signJOSE(t, k, "at+jwt", claims))
	if err != nil {
		t.Fatal(err)
	}
	if tok.ThingID != "thing-secret" || tok.ClientID != "thing-client" {
		t.Errorf("thing %q client %q", tok.ThingID, tok.ClientID)
	}
	if !slices.Equal(tok.Scopes, []string{"mqtt:publish", "mqtt:subscribe"}) {
		t.Errorf("scopes %q", tok.Scopes)
	}
	if tok.Confirmation == nil || tok.Confirmation.JKT != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" {
		t.Errorf("confirmation %+v", tok.Confirmation)
	}
	// The same validator refuses AM's typ JWT, and a token without typ, since Types says at+jwt only.
	for _, typ := range []string{"JWT", ""} {
		_, err = v.Validate(t.Context(), signJOSE(t, k, typ, claims))
		if r := reasonOf(t, err, ErrInvalidToken); r != ReasonTypMismatch {
			t.Errorf("typ %q: reason %q", typ, r)
		}
	}
}

func TestParseKeySet(t *testing.T) {
	ec := newECKey(t, "ec", elliptic.P256(), "ES256")
	withPrivate, err := json.Marshal(jose.JSONWebKey{Key: ec.priv, KeyID: "leaked-private"})
	if err != nil {
		t.Fatal(err)
	}
	good, err := json.Marshal(ec.public())
	if err != nil {
		t.Fatal(err)
	}
	body := `{"keys":[` + string(good) + `,` + string(withPrivate) + `,
		{"kty":"oct","kid":"hmac","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
		{"kty":"EC","crv":"P-256","kid":"bad-point","x":"AAAA","y":"AAAA"},
		{"kty":"OKP","crv":"X25519","kid":"xdh","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},
		` + strings.Replace(string(good), `"kid":"ec"`, `"kid":"ec"`, 1) + `,
		` + strings.Replace(strings.Replace(string(good), `"kid":"ec"`, `"kid":"enc"`, 1), `"use":"sig"`, `"use":"enc"`, 1) + `,
		` + strings.Replace(string(good), `"kid":"ec",`, ``, 1) + `]}`
	keys, err := parseKeySet([]byte(body), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(keys))
	if !slices.Equal(got, []string{"ec", "leaked-private"}) {
		t.Errorf("usable kids %q", got)
	}
	if _, isPublic := keys["leaked-private"].pub.(*ecdsa.PublicKey); !isPublic {
		t.Errorf("private JWK kept as %T", keys["leaked-private"].pub)
	}
	for _, bad := range []string{`{"keys":[]}`, `{"keys":"x"}`, `not json`} {
		if _, err := parseKeySet([]byte(bad), slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestClaimNormalisation(t *testing.T) {
	tests := []struct {
		name     string
		claims   map[string]any
		thing    string
		client   string
		scopes   []string
		cnfX5T   string
		cnfJWK   bool
		audience []string
	}{
		{"compound usr", map[string]any{"sub": "(usr!thing-1)"}, "thing-1", "", nil, "", false, nil},
		{"compound age", map[string]any{"sub": "(age!gateway)"}, "gateway", "", nil, "", false, nil},
		{"subname wins", map[string]any{"sub": "(usr!abc)", "subname": "thing-2"}, "thing-2", "", nil, "", false, nil},
		{"plain", map[string]any{"sub": "thing-3"}, "thing-3", "", nil, "", false, nil},
		{"other compound kept", map[string]any{"sub": "(xyz!a)"}, "(xyz!a)", "", nil, "", false, nil},
		{"unterminated kept", map[string]any{"sub": "(usr!a"}, "(usr!a", "", nil, "", false, nil},
		{"empty compound kept", map[string]any{"sub": "(usr!)"}, "(usr!)", "", nil, "", false, nil},
		{"scope array", map[string]any{"sub": "a", "scope": []any{"x", "y"}}, "a", "", []string{"x", "y"}, "", false, nil},
		{"scope string", map[string]any{"sub": "a", "scope": " x  y "}, "a", "", []string{"x", "y"}, "", false, nil},
		{"client_id", map[string]any{"sub": "a", "client_id": "c1", "azp": "c2"}, "a", "c1", nil, "", false, nil},
		{"azp", map[string]any{"sub": "a", "azp": "c2", "cid": "c3"}, "a", "c2", nil, "", false, nil},
		{"cid", map[string]any{"sub": "a", "cid": "c3"}, "a", "c3", nil, "", false, nil},
		{"single aud is the AM client", map[string]any{"sub": "a", "aud": "am-client"}, "a", "am-client", nil, "", false, []string{"am-client"}},
		{"several aud name no client", map[string]any{"sub": "a", "aud": []any{"x", "y"}}, "a", "", nil, "", false, []string{"x", "y"}},
		{"cnf x5t", map[string]any{"sub": "a", "cnf": map[string]any{"x5t#S256": "abc"}}, "a", "", nil, "abc", false, nil},
		{"cnf jwk", map[string]any{"sub": "a", "cnf": map[string]any{"jwk": map[string]any{"kty": "OKP"}}}, "a", "", nil, "", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := tokenFromClaims(tt.claims, MethodJWT, ClaimMap{})
			if err != nil {
				t.Fatal(err)
			}
			if tok.ThingID != tt.thing || tok.ClientID != tt.client || !slices.Equal(tok.Scopes, tt.scopes) ||
				!slices.Equal(tok.Audience, tt.audience) {
				t.Errorf("got thing %q client %q scopes %q aud %q", tok.ThingID, tok.ClientID, tok.Scopes, tok.Audience)
			}
			if tt.cnfX5T != "" && (tok.Confirmation == nil || tok.Confirmation.X5TS256 != tt.cnfX5T) {
				t.Errorf("cnf %+v", tok.Confirmation)
			}
			if tt.cnfJWK && (tok.Confirmation == nil || string(tok.Confirmation.JWK) != `{"kty":"OKP"}`) {
				t.Errorf("cnf %+v", tok.Confirmation)
			}
		})
	}
}

func TestJWKSSources(t *testing.T) {
	k := newECKey(t, "file-key", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k)
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, keySetJSON(t, k), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]JWTConfig{
		"file":      {Issuer: srv.issuer(), JWKSFile: file},
		"jwks url":  {Issuer: srv.issuer(), JWKSURL: srv.issuer() + "/connect/jwk_uri"},
		"discovery": {Issuer: srv.issuer(), DiscoveryURL: srv.issuer() + "/.well-known/openid-configuration"},
	} {
		t.Run(name, func(t *testing.T) {
			before := srv.discHits.Load()
			v := newTestJWT(t, cfg)
			if _, err := v.Validate(t.Context(), signJOSE(t, k, "JWT", claimsFor(srv.issuer(), "t"))); err != nil {
				t.Fatal(err)
			}
			if discovered := srv.discHits.Load() - before; (name == "discovery") != (discovered == 1) {
				t.Errorf("%d discovery requests", discovered)
			}
		})
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	k := newECKey(t, "k", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k)
	srv.mu.Lock()
	srv.issuerOverride = "https://evil.example/oauth2"
	srv.mu.Unlock()
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer()})
	err := v.Ready(t.Context())
	if r := reasonOf(t, err, ErrUnavailable); r != ReasonNoKeys {
		t.Errorf("reason %q", r)
	}
	_, err = v.Validate(t.Context(), signJOSE(t, k, "JWT", claimsFor(srv.issuer(), "t")))
	var e *Error
	if !errors.As(err, &e) || e.ReasonCode() != ReasonCodeServerUnavailable || e.Reason != ReasonNoKeys {
		t.Fatalf("got %v", err)
	}
	if srv.jwksHits.Load() != 0 {
		t.Error("fetched keys named by a discovery document for another issuer")
	}
}

func TestKeyRotation(t *testing.T) {
	old := newECKey(t, "2026-01", elliptic.P256(), "ES256")
	next := newEdKey(t, "2026-02")
	srv := newIssuerServer(t, old)
	clock := newTestClock()
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), MinRefetchInterval: time.Minute, Now: clock.Now})
	oldTok := signJOSE(t, old, "JWT", claimsFor(srv.issuer(), "a"))
	if _, err := v.Validate(t.Context(), oldTok); err != nil {
		t.Fatal(err)
	}
	// The issuer publishes the next key beside the old one and starts signing with it: the unknown kid is fetched
	// once and both tokens validate.
	srv.setKeys(t, old, next)
	newTok := signJOSE(t, next, "JWT", claimsFor(srv.issuer(), "b"))
	for range 3 {
		if _, err := v.Validate(t.Context(), newTok); err != nil {
			t.Fatalf("token signed with the rotated-in key: %v", err)
		}
	}
	if n := srv.jwksHits.Load(); n != 2 {
		t.Errorf("JWKS requests %d, want 2 (start-up, rotation)", n)
	}
	// The old key is retired; once the rate limit allows a refetch the old token's key is gone. Its kid is still
	// in the loaded set, though, so it keeps validating until the next refresh: refresh explicitly.
	srv.setKeys(t, next)
	clock.Advance(2 * time.Minute)
	if err := v.keys.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := v.Validate(t.Context(), oldTok)
	if r := reasonOf(t, err, ErrInvalidToken); r != ReasonKidUnknown {
		t.Errorf("retired key: reason %q", r)
	}
}

func TestUnknownKidFlood(t *testing.T) {
	k := newECKey(t, "real", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k)
	clock := newTestClock()
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), Now: clock.Now}) // default rate limit
	base, baseFetches := srv.jwksHits.Load(), v.KeyFetches()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			forged := newECKey(t, fmt.Sprintf("forged-%d", i), elliptic.P256(), "ES256")
			_, err := v.Validate(t.Context(), signJOSE(t, forged, "JWT", claimsFor(srv.issuer(), "x")))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if r := reasonOf(t, err, ErrInvalidToken); r != ReasonKidUnknown {
			t.Fatalf("reason %q", r)
		}
	}
	if got := srv.jwksHits.Load() - base; got != 1 {
		t.Errorf("%d forged kids caused %d JWKS requests, want 1", n, got)
	}
	if got := v.KeyFetches() - baseFetches; got != 1 {
		t.Errorf("KeyFetches counted %d fetches, want 1", got)
	}
	// Within the window, still nothing; after it, one more.
	clock.Advance(DefaultMinRefetchInterval - time.Second)
	forged := newECKey(t, "forged-late", elliptic.P256(), "ES256")
	late := signJOSE(t, forged, "JWT", claimsFor(srv.issuer(), "x"))
	v.Validate(t.Context(), late)
	if got := srv.jwksHits.Load() - base; got != 1 {
		t.Errorf("JWKS requests %d inside the rate-limit window, want 1", got)
	}
	clock.Advance(2 * time.Second)
	v.Validate(t.Context(), late)
	if got := srv.jwksHits.Load() - base; got != 2 {
		t.Errorf("JWKS requests %d after the window, want 2", got)
	}
}

func TestLastGoodKeysAndStaleness(t *testing.T) {
	k := newECKey(t, "k", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k)
	clock := newTestClock()
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), MaxStaleness: time.Hour, Now: clock.Now})
	srv.setJWKSStatus(http.StatusInternalServerError)
	if err := v.keys.refresh(t.Context()); err == nil {
		t.Fatal("refresh against a failing JWKS endpoint succeeded")
	}
	clock.Advance(59 * time.Minute)
	token := signJOSE(t, k, "JWT", map[string]any{"sub": "a", "iss": srv.issuer(),
		"exp": clock.Now().Add(time.Hour).Unix()})
	if _, err := v.Validate(t.Context(), token); err != nil {
		t.Fatalf("last good key set not used: %v", err)
	}
	if err := v.Ready(t.Context()); err != nil {
		t.Errorf("Ready with a 59-minute-old set: %v", err)
	}
	clock.Advance(2 * time.Minute)
	_, err := v.Validate(t.Context(), token)
	if r := reasonOf(t, err, ErrUnavailable); r != ReasonKeysStale {
		t.Errorf("reason %q", r)
	}
	if r := reasonOf(t, v.Ready(t.Context()), ErrUnavailable); r != ReasonKeysStale {
		t.Errorf("Ready reason %q", r)
	}
	// The issuer recovers: the next forced fetch (staleness forces one, rate limit permitting) restores service.
	srv.setJWKSStatus(http.StatusOK)
	clock.Advance(time.Minute)
	if _, err := v.Validate(t.Context(), token); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestIssuerDownAtStart(t *testing.T) {
	srv := newIssuerServer(t)
	issuer := srv.issuer()
	srv.srv.Close() // connection refused from now on
	v := newTestJWT(t, JWTConfig{Issuer: issuer, HTTPTimeout: 2 * time.Second})
	k := newECKey(t, "k", elliptic.P256(), "ES256")
	_, err := v.Validate(t.Context(), signJOSE(t, k, "JWT", claimsFor(issuer, "a")))
	if r := reasonOf(t, err, ErrUnavailable); r != ReasonNoKeys {
		t.Errorf("reason %q", r)
	}
	if reasonOf(t, v.Ready(t.Context()), ErrUnavailable) != ReasonNoKeys {
		t.Error("Ready did not report missing keys")
	}
}

func TestBackgroundRefreshPicksUpNewKeys(t *testing.T) {
	old := newECKey(t, "old", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, old)
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), RefreshInterval: 20 * time.Millisecond})
	next := newECKey(t, "next", elliptic.P256(), "ES256")
	srv.setKeys(t, next)
	waitFor(t, "a periodic refresh", func() bool { return srv.jwksHits.Load() >= 3 })
	if _, ok := v.keys.current.Load().keys["next"]; !ok {
		t.Fatal("periodic refresh did not install the new key set")
	}
	if err := v.Close(); err != nil { // returns only once the refresh goroutine has ended
		t.Fatal(err)
	}
}

func TestSharedSecret(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v := newTestJWT(t, JWTConfig{Issuer: "forgerock-iot-service", SharedSecret: secret,
		Algorithms: []string{"HS256"}})
	now := time.Now().Unix()
	payload := fmt.Sprintf(`{"sub":"t","iss":"forgerock-iot-service","exp":%d}`, now+60)
	if _, err := v.Validate(t.Context(), signRaw(t, secret, "HS256", `{"alg":"HS256","typ":"JWT"}`, payload)); err != nil {
		t.Fatal(err)
	}
	_, err := v.Validate(t.Context(), signRaw(t, []byte("another secret of 32 bytes......"), "HS256",
		`{"alg":"HS256"}`, payload))
	if r := reasonOf(t, err, ErrInvalidToken); r != ReasonSignatureInvalid {
		t.Errorf("reason %q", r)
	}
	if err := v.Ready(t.Context()); err != nil {
		t.Errorf("HMAC-only validator not ready: %v", err)
	}
}

func TestJWTConfigErrors(t *testing.T) {
	for name, cfg := range map[string]JWTConfig{
		"no issuer":      {},
		"bad jwks url":   {Issuer: "x", JWKSURL: "file:///etc/passwd"},
		"short secret":   {Issuer: "x", SharedSecret: []byte("short")},
		"hs without key": {Issuer: "x", Algorithms: []string{"HS256"}},
		"unknown alg":    {Issuer: "x", Algorithms: []string{"ES256K"}},
		"none is no alg": {Issuer: "x", Algorithms: []string{"none"}},
		"relative disco": {Issuer: "x", DiscoveryURL: "/.well-known/openid-configuration"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewJWT(context.Background(), cfg); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestHighS documents that an ECDSA signature and its mirror (r, n−s) both verify: RFC 7518 does not require
// low-S, Go's signer emits either form, and the mirror carries the same claims, so it grants nothing new. It does
// produce a different token string, hence a separate cache entry, which the cache bounds anyway.
func TestHighS(t *testing.T) {
	k := newECKey(t, "k", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k)
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer()})
	token := signJOSE(t, k, "JWT", claimsFor(srv.issuer(), "a"))
	mirrored := mirrorS(t, token)
	if mirrored == token {
		t.Fatal("mirror produced the same token")
	}
	for _, tok := range []string{token, mirrored} {
		if _, err := v.Validate(t.Context(), tok); err != nil {
			t.Errorf("Validate: %v", err)
		}
	}
}

func TestDiscoveryURL(t *testing.T) {
	for issuer, want := range map[string]string{
		"http://am.localtest.me:8080/am/oauth2":                          "http://am.localtest.me:8080/am/oauth2/.well-known/openid-configuration",
		"http://am.localtest.me:8080/am/oauth2/realms/root/realms/alpha": "http://am.localtest.me:8080/am/oauth2/realms/root/realms/alpha/.well-known/openid-configuration",
		"http://127.0.0.1:9090/":                                         "http://127.0.0.1:9090/.well-known/openid-configuration",
	} {
		if got := DiscoveryURL(issuer); got != want {
			t.Errorf("DiscoveryURL(%q) = %q, want %q", issuer, got, want)
		}
	}
}

// TestRealmIssuer serves discovery and keys under an AM realm path, the way AM publishes them.
func TestRealmIssuer(t *testing.T) {
	k := newECKey(t, "realm-key", elliptic.P256(), "ES256")
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer := srv.URL + "/am/oauth2/realms/root/realms/things"
	mux.HandleFunc("GET /am/oauth2/realms/root/realms/things/.well-known/openid-configuration",
		func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuer, issuer+"/connect/jwk_uri")
		})
	mux.HandleFunc("GET /am/oauth2/realms/root/realms/things/connect/jwk_uri", func(w http.ResponseWriter, r *http.Request) {
		w.Write(keySetJSON(t, k))
	})
	v := newTestJWT(t, JWTConfig{Issuer: issuer, Types: []string{"JWT"}})
	if _, err := v.Validate(t.Context(), signJOSE(t, k, "JWT", claimsFor(issuer, "thing-9"))); err != nil {
		t.Fatal(err)
	}
	// A token of the root realm is another issuer.
	_, err := v.Validate(t.Context(), signJOSE(t, k, "JWT", claimsFor(srv.URL+"/am/oauth2", "thing-9")))
	if r := reasonOf(t, err, ErrInvalidToken); r != ReasonIssuerMismatch {
		t.Errorf("reason %q", r)
	}
}

// TestRotationsWithinTheRefetchWindow checks that a second rotation soon after the first, or a rotation right after
// a failed fetch, never refuses a freshly issued valid token: the lookup waits for the window and fetches.
func TestRotationsWithinTheRefetchWindow(t *testing.T) {
	k1 := newECKey(t, "k1", elliptic.P256(), "ES256")
	k2 := newECKey(t, "k2", elliptic.P256(), "ES256")
	k3 := newECKey(t, "k3", elliptic.P256(), "ES256")
	k4 := newECKey(t, "k4", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k1)
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), MinRefetchInterval: 3 * time.Second})
	for _, k := range []*testKey{k2, k3} {
		srv.setKeys(t, k)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := v.Validate(ctx, signJOSE(t, k, "JWT", claimsFor(srv.issuer(), "a")))
		cancel()
		if err != nil {
			t.Fatalf("token of the rotated-in key %s: %v", k.kid, err)
		}
	}
	// A failed fetch does not use up the window: once the issuer answers again, the next rotation is fetched
	// after the short retry spacing, well before the 3 s window would have opened.
	srv.setJWKSStatus(http.StatusInternalServerError)
	time.Sleep(3 * time.Second) // let the window of the last successful fetch pass
	_, err := v.Validate(t.Context(), signJOSE(t, k4, "JWT", claimsFor(srv.issuer(), "a")))
	if r := reasonOf(t, err, ErrUnavailable); r != ReasonKidUnverifiable {
		t.Fatalf("unknown kid while the key set cannot be fetched: reason %q", r)
	}
	srv.setJWKSStatus(http.StatusOK)
	srv.setKeys(t, k4)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := v.Validate(ctx, signJOSE(t, k4, "JWT", claimsFor(srv.issuer(), "a"))); err != nil {
		t.Fatalf("token of a key published after a failed fetch: %v", err)
	}
	// The removed keys are gone at the next refresh.
	if err := v.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := v.Validate(short, signJOSE(t, k1, "JWT", claimsFor(srv.issuer(), "a"))); err == nil {
		t.Fatal("token of a removed key accepted after a refresh")
	}
}
