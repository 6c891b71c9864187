package introspect

import (
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

func TestAuto(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	k := newECKey(t, "am-key", elliptic.P256(), "ES256")
	e.setKeys(t, k)
	jwt := newTestJWT(t, JWTConfig{Issuer: e.issuer()})
	in := newTestIntrospector(t, IntrospectionConfig{Issuer: e.issuer(), ClientID: brokerClientID,
		ClientSecret: brokerClientSecret})
	forger := newECKey(t, "am-key", elliptic.P256(), "ES256") // same kid, unpublished key
	foreign := signJOSE(t, k, "JWT", claimsFor("https://other.example", "a"))
	local := signJOSE(t, k, "JWT", claimsFor(e.issuer(), "thing-1"))
	forged := signJOSE(t, forger, "JWT", claimsFor(e.issuer(), "thing-1"))
	hsPayload, _ := json.Marshal(claimsFor(e.issuer(), "thing-1"))
	hsForeignPayload, _ := json.Marshal(claimsFor("https://other.example", "thing-1"))
	secret := []byte("the issuer's HMAC secret, 32+ by")
	hsOwn := signRaw(t, secret, "HS256", `{"alg":"HS256","typ":"JWT"}`, string(hsPayload))
	hsForeign := signRaw(t, secret, "HS256", `{"alg":"HS256","typ":"JWT"}`, string(hsForeignPayload))
	jwe := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"dir","enc":"A128CBC-HS256","typ":"JWT"}`)) +
		"..AxY8DCtDaGlsbGljb3RoZQ.KDlTtXchhZTGufMYmOYGS4HffxPSUrfmqCHXaI9wOGY.9hH0vgRfYgPnAHOd8stkvw"
	withSecret := newTestJWT(t, JWTConfig{Issuer: e.issuer(), SharedSecret: secret})

	tests := []struct {
		name          string
		v             Validator
		token         string
		method        string // "" when rejected
		reason        string
		introspection int64 // requests the call sends to the introspection endpoint
	}{
		{"own JWT validated locally", NewAuto(jwt, in), local, MethodJWT, "", 0},
		{"forged own JWT never falls through", NewAuto(jwt, in), forged, "", ReasonSignatureInvalid, 0},
		{"opaque token introspected", NewAuto(jwt, in), "active", MethodIntrospection, "", 1},
		{"foreign JWT refused without a request", NewAuto(jwt, in), foreign, "", ReasonIssuerMismatch, 0},
		{"oversized opaque token refused without a request", NewAuto(jwt, in), strings.Repeat("a", DefaultMaxTokenBytes+1), "", ReasonTokenTooLarge, 0},
		{"JWT only: opaque token", NewAuto(jwt, nil), "active", "", ReasonNotJWS, 0},
		{"JWT only: foreign JWT", NewAuto(jwt, nil), foreign, "", ReasonIssuerMismatch, 0},
		{"introspection only: JWT", NewAuto(nil, in), local, "", ReasonInactive, 1},
		{"nothing configured", NewAuto(nil, nil), local, "", ReasonNoValidator, 0},
		// The issuer's own HS256 token: only the issuer knows the secret, so it introspects (and here
		// answers inactive: the endpoint does not know it); with the secret it is verified locally.
		{"own HS256 JWT without the secret introspected", NewAuto(jwt, in), hsOwn, "", ReasonInactive, 1},
		{"own HS256 JWT with the secret validated locally", NewAuto(withSecret, in), hsOwn, MethodJWT, "", 0},
		{"foreign HS256 JWT refused without a request", NewAuto(jwt, in), hsForeign, "", ReasonHMACNotAllowed, 0},
		{"JWT only: own HS256 JWT", NewAuto(jwt, nil), hsOwn, "", ReasonHMACNotAllowed, 0},
		// AM's encrypted client-based tokens (dir, A128CBC-HS256): only AM can read them, so they
		// are introspected (here inactive: the endpoint does not know it), never parsed as a JWS.
		{"encrypted token (JWE) introspected", NewAuto(jwt, in), jwe, "", ReasonInactive, 1},
		{"JWT only: encrypted token (JWE)", NewAuto(jwt, nil), jwe, "", ReasonJWE, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.requests.Load()
			tok, err := tt.v.Validate(t.Context(), tt.token)
			if tt.method != "" {
				if err != nil {
					t.Fatal(err)
				}
				if tok.Method != tt.method || tok.ThingID != "thing-1" {
					t.Errorf("method %q thing %q", tok.Method, tok.ThingID)
				}
			} else if r := reasonOf(t, err, ErrInvalidToken); r != tt.reason {
				t.Errorf("reason %q, want %q", r, tt.reason)
			}
			if got := e.requests.Load() - before; got != tt.introspection {
				t.Errorf("%d introspection requests, want %d", got, tt.introspection)
			}
		})
	}
	if err := NewAuto(jwt, in).(Readier).Ready(t.Context()); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

func TestPrincipalSeparatesKindsAndIssuers(t *testing.T) {
	tests := []struct {
		claims map[string]any
		want   Principal
	}{
		{map[string]any{"iss": "A", "sub": "(usr!cloud-app)"}, Principal{"A", "usr", "(usr!cloud-app)"}},
		{map[string]any{"iss": "A", "sub": "(age!cloud-app)"}, Principal{"A", "age", "(age!cloud-app)"}},
		{map[string]any{"iss": "A", "sub": "cloud-app"}, Principal{"A", "", "cloud-app"}},
		{map[string]any{"iss": "B", "sub": "cloud-app"}, Principal{"B", "", "cloud-app"}},
		{map[string]any{"iss": "A", "client_id": "cloud-app"}, Principal{"A", "client", "cloud-app"}},
		{map[string]any{"iss": "A", "sub": "(usr!x"}, Principal{"A", "", "(usr!x"}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		p, err := PrincipalOfClaims(tt.claims)
		if err != nil || p != tt.want {
			t.Errorf("%v: %+v, %v; want %+v", tt.claims, p, err, tt.want)
		}
		if seen[p.String()] {
			t.Errorf("%v: %s collides with another principal", tt.claims, p)
		}
		seen[p.String()] = true
	}
	// One bracket or quote in a part cannot make two principals encode alike.
	a := Principal{Issuer: `a","b`, Subject: "c"}
	b := Principal{Issuer: "a", Kind: "b", Subject: "c"}
	if a.String() == b.String() {
		t.Errorf("%s encodes like %s", a, b)
	}
	if _, err := PrincipalOfClaims(map[string]any{"iss": "A"}); err == nil {
		t.Error("claims without sub or client_id gave a principal")
	}
}
