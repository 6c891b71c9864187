package amdev

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// setProvider writes a partial oauth-oidc document for realm path p ("" for
// the root realm) as amAdmin and fails the test unless amdev applied it.
func (e *env) setProvider(admin, p string, doc map[string]any) map[string]any {
	e.t.Helper()
	b, _ := json.Marshal(doc)
	status, got := e.call("PUT", e.srv.URL()+"/json"+p+"/realm-config/services/oauth-oidc",
		crestHeaders(admin, "protocol=1.0,resource=1.0"), string(b))
	if status != 200 {
		e.t.Fatalf("PUT oauth-oidc %s: %d %v", b, status, got)
	}
	return got
}

// cloudAppToken is a client_credentials token of cloud-app in the root realm.
func (e *env) cloudAppToken() string {
	e.t.Helper()
	status, tok := e.form("/oauth2/access_token", basic(CloudAppClientID, CloudAppClientSecret),
		url.Values{"grant_type": {"client_credentials"}, "scope": {"fleet:read"}})
	if status != 200 {
		e.t.Fatalf("client_credentials: %d %v", status, tok)
	}
	return tok["access_token"].(string)
}

// active reports whether the broker's client finds tok active in the root realm.
func (e *env) active(tok string) bool {
	e.t.Helper()
	status, in := e.form("/oauth2/introspect", basic(BrokerClientID, BrokerClientSecret), url.Values{"token": {tok}})
	if status != 200 {
		e.t.Fatalf("introspect: %d %v", status, in)
	}
	return in["active"] == true
}

// TestTokenFormatsThroughOAuthProvider sets each token format AM offers
// through oauth-oidc and checks the next token: its form, its signature
// against what a resource server can have (the JWKS, or for HS256 the
// realm's secret, never published), introspection, revocation, and that
// tokens of an earlier format stay valid after a change and a restart.
func TestTokenFormatsThroughOAuthProvider(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	cloud := basic(CloudAppClientID, CloudAppClientSecret)
	issue, active := e.cloudAppToken, e.active
	jwks := func() *jose.JSONWebKeySet {
		t.Helper()
		var set jose.JSONWebKeySet
		status, raw := e.callRaw("GET", e.srv.JWKSURL(), nil, "")
		if status != 200 || json.Unmarshal(raw, &set) != nil {
			t.Fatalf("jwks: %d %s", status, raw)
		}
		return &set
	}
	cases := []struct {
		name      string
		stateless bool
		alg       string
		published bool // a resource server verifies it with the JWKS
		encrypted bool
	}{
		{"client-based ES256", true, "ES256", true, false},
		{"client-based RS256", true, "RS256", true, false},
		{"client-based HS256", true, "HS256", false, false},
		{"CTS-based opaque", false, "ES256", false, false},
		{"client-based encrypted", true, "ES256", false, true},
	}
	var earlier []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := e.setProvider(admin, "", map[string]any{
				"coreOAuth2Config":     map[string]any{"statelessTokensEnabled": tc.stateless},
				"advancedOAuth2Config": map[string]any{"tokenSigningAlgorithm": tc.alg, "tokenEncryptionEnabled": tc.encrypted},
			})
			if adv := doc["advancedOAuth2Config"].(map[string]any); adv["tokenSigningAlgorithm"] != tc.alg || adv["tokenEncryptionEnabled"] != tc.encrypted {
				t.Fatalf("oauth-oidc after PUT: %v", doc)
			}
			tok := issue()
			if tc.encrypted {
				// AM's direct encryption: a compact JWE no resource server can
				// read or check, only introspect.
				obj, err := jose.ParseEncryptedCompact(tok, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A128CBC_HS256})
				if err != nil {
					t.Fatalf("token is not a dir/A128CBC-HS256 JWE: %v (%s)", err, tok)
				}
				if obj.Header.KeyID != "" || obj.Header.ExtraHeaders["typ"] != "JWT" {
					t.Fatalf("JWE header: %+v", obj.Header)
				}
				if _, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.HS256}); err == nil {
					t.Fatal("an encrypted token parses as a JWS")
				}
				if len(jwks().Keys) != 2 {
					t.Fatalf("the encryption secret is published: %v", jwks())
				}
				parts := strings.Split(tok, ".")
				ct := []byte(parts[3])
				ct[len(ct)/2] ^= 1
				parts[3] = string(ct)
				if active(strings.Join(parts, ".")) {
					t.Fatal("a tampered encrypted token is active")
				}
			} else if !tc.stateless {
				if _, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.HS256}); err == nil {
					t.Fatalf("a CTS-based token is a JWT: %s", tok)
				}
			} else {
				obj, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tc.alg)})
				if err != nil {
					t.Fatalf("token is not a %s JWS: %v", tc.alg, err)
				}
				h := obj.Signatures[0].Header
				set := jwks()
				keys := set.Key(h.KeyID)
				switch {
				case tc.published && (len(keys) != 1 || keys[0].Algorithm != tc.alg):
					t.Fatalf("kid %q not in the JWKS as %s: %v", h.KeyID, tc.alg, jwks())
				case tc.published:
					if _, err := obj.Verify(keys[0].Key); err != nil {
						t.Fatalf("verify with the JWKS: %v", err)
					}
				default:
					if h.KeyID != "" || len(jwks().Keys) != 2 {
						t.Fatalf("HS256: kid %q, jwks %v", h.KeyID, jwks())
					}
					secret, err := e.srv.HMACSecret()
					if err != nil {
						t.Fatal(err)
					}
					if _, err := obj.Verify(secret); err != nil {
						t.Fatalf("verify with the realm's secret: %v", err)
					}
				}
				if c := decodeJWT(t, tok); c["iss"] != e.srv.Issuer() || c["realm"] != "/" {
					t.Fatalf("claims: %v", c)
				}
			}
			if !active(tok) {
				t.Fatalf("a fresh %s token is inactive", tc.name)
			}
			for _, old := range earlier {
				if !active(old) {
					t.Fatalf("a token of an earlier format went inactive after the change to %s", tc.name)
				}
			}
			revoked := issue()
			if status, body := e.form("/oauth2/token/revoke", cloud, url.Values{"token": {revoked}}); status != 200 {
				t.Fatalf("revoke: %d %v", status, body)
			}
			if active(revoked) {
				t.Fatal("a revoked token is active")
			}
			earlier = append(earlier, tok)
		})
	}
	// The keys survive a restart: every earlier token is still valid, and
	// the RS256 key is still published.
	st := e.srv.Settings()
	e.restart(&st)
	for i, tok := range earlier {
		if !active(tok) {
			t.Fatalf("after a restart the %s token is inactive", cases[i].name)
		}
	}
	if len(jwks().Keys) != 2 {
		t.Fatalf("after a restart the JWKS lost the RS256 key: %v", jwks())
	}
	// A realm that never signed with RS256 gets no key from a forged header.
	forged := signWith(t, newThing(t, "forger", jose.RS256).key, jose.RS256, map[string]any{"iss": e.srv.Issuer(), "exp": 4102444800}, nil)
	if active(forged) {
		t.Fatal("a token signed with another RSA key is active")
	}
}
