package amdev

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestBoundThingTokens: a thing's token is bound (cnf.jwk, RFC 7800) to the key it registered when the request
// asks with cnf_key or the realm binds every thing token; introspection and refresh keep the binding; a cnf_key
// that is not the thing's is refused.
func TestBoundThingTokens(t *testing.T) {
	cnfKey := func(t *testing.T, th *testThing) string {
		k := th.publicJWK()
		k.Certificates = nil
		raw, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	boundTo := func(t *testing.T, claims map[string]any, th *testThing) {
		t.Helper()
		cnf, _ := claims["cnf"].(map[string]any)
		raw, _ := json.Marshal(cnf["jwk"])
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !sameKey(k, th.publicJWK()) || !k.IsPublic() {
			t.Fatalf("cnf %v is not the thing's public key (%v)", claims["cnf"], err)
		}
	}

	t.Run("cnf_key asks", func(t *testing.T) {
		e := startEnv(t)
		th := newThing(t, "bound-1", jose.ES256)
		p := loggedIn(t, e, th, "auth-tree", nil)
		status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}, "cnf_key": cnfKey(t, th)}, true)
		if status != 200 {
			t.Fatalf("token: %d %v", status, tok)
		}
		boundTo(t, decodeJWT(t, tok["access_token"].(string)), th)
		_, in := p.do("POST", introspectPath, map[string]any{"token": tok["access_token"]}, true)
		boundTo(t, in, th)
		status, refreshed := p.do("POST", accessTokenPath, map[string]any{"refresh_token": tok["refresh_token"]}, true)
		if status != 200 {
			t.Fatalf("refresh: %d %v", status, refreshed)
		}
		boundTo(t, decodeJWT(t, refreshed["access_token"].(string)), th)

		_, plain := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
		if c := decodeJWT(t, plain["access_token"].(string)); c["cnf"] != nil {
			t.Fatalf("token without cnf_key is bound: %v", c["cnf"])
		}
		other := newThing(t, "other", jose.ES256)
		status, body := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}, "cnf_key": cnfKey(t, other)}, true)
		if status != 400 {
			t.Fatalf("cnf_key of another key: %d %v", status, body)
		}
		if status, body := p.do("POST", accessTokenPath, map[string]any{"cnf_key": "%%%"}, true); status != 400 {
			t.Fatalf("cnf_key not base64url: %d %v", status, body)
		}
	})
	t.Run("realm binds", func(t *testing.T) {
		e := startEnv(t, func(st *Settings) { st.IoT.BindThingTokens = BindKey })
		th := newThing(t, "bound-2", jose.ES256)
		p := loggedIn(t, e, th, "auth-tree", nil)
		status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
		if status != 200 {
			t.Fatalf("token: %d %v", status, tok)
		}
		boundTo(t, decodeJWT(t, tok["access_token"].(string)), th)
	})
	t.Run("realm binds to the registered certificate", func(t *testing.T) {
		e := startEnv(t, func(st *Settings) { st.IoT.BindThingTokens = BindCertificate })
		th := newThing(t, "cert-bound", jose.ES256)
		th.cert = e.ca.issue(t, th.id, th.key.Public(), time.Now().Add(time.Hour))
		status, body := e.login("auth-reg-tree", "/", regFill(t, th, "", nil))
		if status != 200 {
			t.Fatalf("register with certificate: %d %v", status, body)
		}
		p := &popSession{e: e, th: th, token: body["tokenId"].(string)}
		status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
		if status != 200 {
			t.Fatalf("token: %d %v", status, tok)
		}
		sum := sha256.Sum256(th.cert.Raw)
		want := base64.RawURLEncoding.EncodeToString(sum[:])
		for what, claims := range map[string]map[string]any{"token": decodeJWT(t, tok["access_token"].(string))} {
			cnf, _ := claims["cnf"].(map[string]any)
			if cnf["x5t#S256"] != want {
				t.Fatalf("%s cnf %v, want x5t#S256 %s", what, claims["cnf"], want)
			}
		}
		_, in := p.do("POST", introspectPath, map[string]any{"token": tok["access_token"]}, true)
		if cnf, _ := in["cnf"].(map[string]any); cnf["x5t#S256"] != want {
			t.Fatalf("introspection cnf %v", in["cnf"])
		}
		// A thing registered without a certificate gets bearer tokens under this setting.
		plain := newThing(t, "no-cert", jose.ES256)
		q := loggedIn(t, e, plain, "auth-tree", nil)
		_, ptok := q.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
		if c := decodeJWT(t, ptok["access_token"].(string)); c["cnf"] != nil {
			t.Fatalf("token of a thing without certificate is bound: %v", c["cnf"])
		}
	})
	t.Run("realm binds to the certificate of authentication", func(t *testing.T) {
		e := startEnv(t, func(st *Settings) { st.IoT.BindThingTokens = BindCertificate })
		th := newThing(t, "cert-auth", jose.ES256)
		e.registerManually(th, nil)
		th.cert = e.ca.issue(t, th.id, th.key.Public(), time.Now().Add(time.Hour))
		withCert := func(k jose.JSONWebKey) func(string, string) (string, bool) {
			raw, _ := json.Marshal(k)
			var jwk map[string]any
			_ = json.Unmarshal(raw, &jwk)
			return func(id, challenge string) (string, bool) {
				if id != cbPoPAuthentication {
					return "", false
				}
				return th.popJWT(t, "/", challenge, map[string]any{"cnf": map[string]any{"kid": th.kid, "jwk": jwk}}), true
			}
		}
		token := func(fill func(string, string) (string, bool)) map[string]any {
			t.Helper()
			status, body := e.login("auth-tree", "/", fill)
			if status != 200 {
				t.Fatalf("login: %d %v", status, body)
			}
			p := &popSession{e: e, th: th, token: body["tokenId"].(string)}
			status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
			if status != 200 {
				t.Fatalf("token: %d %v", status, tok)
			}
			return decodeJWT(t, tok["access_token"].(string))
		}
		// A certificate of another CA proves nothing: bearer token.
		rogue := newTestCA(t)
		fake := th.publicJWK()
		fake.Certificates = []*x509.Certificate{rogue.issue(t, th.id, th.key.Public(), time.Now().Add(time.Hour))}
		if c := token(withCert(fake)); c["cnf"] != nil {
			t.Fatalf("certificate of an untrusted CA bound the token: %v", c["cnf"])
		}
		c := token(withCert(th.publicJWK()))
		sum := sha256.Sum256(th.cert.Raw)
		if cnf, _ := c["cnf"].(map[string]any); cnf["x5t#S256"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
			t.Fatalf("cnf %v, want the authentication certificate's x5t#S256", c["cnf"])
		}
	})
	t.Run("realm setting checked", func(t *testing.T) {
		st := DefaultSettings()
		st.IoT.BindThingTokens = "always"
		if err := st.validate(); err == nil {
			t.Fatal("bindThingTokens: always accepted")
		}
	})
}

// FuzzParseCnfKey: a cnf_key from a thing's request never panics, and what is accepted is a valid public key.
func FuzzParseCnfKey(f *testing.F) {
	th := newThing(f, "fuzz", jose.ES256)
	raw, _ := json.Marshal(th.publicJWK())
	f.Add(base64.RawURLEncoding.EncodeToString(raw))
	f.Add(base64.URLEncoding.EncodeToString(raw))
	f.Add("e30")
	f.Fuzz(func(t *testing.T, v string) {
		k, err := parseCnfKey(v)
		if err == nil && (!k.Valid() || !k.IsPublic()) {
			t.Fatalf("accepted %q: not a valid public key", v)
		}
	})
}
