package introspect

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// attackFixture holds the published keys, an unpublished attacker key, and helpers to craft tokens.
type attackFixture struct {
	t                                *testing.T
	iss                              string
	es256, es256b, es384, rs, ps, ed *testKey
	rs1024, attacker                 *testKey
	now                              time.Time
}

const attackAudience = "forgerock-iot-oauth2-client"

// payload is the JSON text of valid AM claims after mod.
func (f *attackFixture) payload(mod func(map[string]any)) string {
	c := claimsFor(f.iss, "thing-1")
	if mod != nil {
		mod(c)
	}
	b, err := json.Marshal(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// es signs header and payload texts with the published ES256 key.
func (f *attackFixture) es(header, payload string) string {
	return signRaw(f.t, f.es256.priv, "ES256", header, payload)
}

const esHeader = `{"alg":"ES256","typ":"JWT","kid":"es256"}`

// good is a valid token; every attack below must differ from it in exactly the way its name says.
func (f *attackFixture) good() string { return f.es(esHeader, f.payload(nil)) }

// replacePart swaps segment i of a compact token.
func replacePart(token string, i int, part string) string {
	parts := strings.Split(token, ".")
	parts[i] = part
	return strings.Join(parts, ".")
}

// mirrorS replaces s by n−s in an ES256 token: the other valid signature of the same message.
func mirrorS(t testing.TB, token string) string {
	parts := strings.Split(token, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %v", err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	s.FillBytes(sig[32:])
	return replacePart(token, 2, base64.RawURLEncoding.EncodeToString(sig))
}

func newAttackFixture(t *testing.T) (*attackFixture, *JWTValidator) {
	f := &attackFixture{
		t:        t,
		es256:    newECKey(t, "es256", elliptic.P256(), "ES256"),
		es256b:   newECKey(t, "es256b", elliptic.P256(), "ES256"),
		es384:    newECKey(t, "es384", elliptic.P384(), "ES384"),
		rs:       &testKey{kid: "rs256", alg: "RS256", priv: rsaKeyA()},
		ps:       &testKey{kid: "ps256", alg: "PS256", priv: rsaKeyB(), jwkAlg: "PS256"},
		ed:       newEdKey(t, "ed"),
		rs1024:   &testKey{kid: "rs1024", alg: "RS256", priv: rsaKey1024()},
		attacker: newECKey(t, "attacker", elliptic.P256(), "ES256"),
		now:      time.Now(),
	}
	srv := newIssuerServer(t, f.es256, f.es256b, f.es384, f.rs, f.ps, f.ed, f.rs1024)
	f.iss = srv.issuer()
	v := newTestJWT(t, JWTConfig{Issuer: f.iss, Audience: []string{attackAudience}, Types: []string{"JWT", "at+jwt", ""}})
	return f, v
}

func TestAttackFixtureControl(t *testing.T) {
	f, v := newAttackFixture(t)
	for name, tok := range map[string]string{
		"raw ES256":          f.good(),
		"nbf inside leeway":  f.es(esHeader, f.payload(func(c map[string]any) { c["nbf"] = f.now.Add(10 * time.Second).Unix() })),
		"aud array":          f.es(esHeader, f.payload(func(c map[string]any) { c["aud"] = []string{"x", attackAudience} })),
		"typ at+jwt":         f.es(`{"alg":"ES256","typ":"at+jwt","kid":"es256"}`, f.payload(nil)),
		"no typ":             f.es(`{"alg":"ES256","kid":"es256"}`, f.payload(nil)),
		"PS256 with jwk alg": signRaw(t, f.ps.priv, "PS256", `{"alg":"PS256","kid":"ps256"}`, f.payload(nil)),
		"RS256":              signRaw(t, f.rs.priv, "RS256", `{"alg":"RS256","kid":"rs256"}`, f.payload(nil)),
		"EdDSA":              signRaw(t, f.ed.priv, "EdDSA", `{"alg":"EdDSA","kid":"ed"}`, f.payload(nil)),
		"ES384":              signRaw(t, f.es384.priv, "ES384", `{"alg":"ES384","kid":"es384"}`, f.payload(nil)),
	} {
		if _, err := v.Validate(t.Context(), tok); err != nil {
			t.Errorf("%s: control token rejected: %v", name, err)
		}
	}
}

func TestAttackTokens(t *testing.T) {
	f, v := newAttackFixture(t)
	p := f.payload(nil)
	with := func(mod func(map[string]any)) string { return f.payload(mod) }
	rsPub, err := x509.MarshalPKIXPublicKey(f.rs.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsPub})
	attackerJWK, err := json.Marshal(f.attacker.public())
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(enc(esHeader) + "." + enc(p)))
	derSig, err := ecdsa.SignASN1(rand.Reader, f.es256.priv.(*ecdsa.PrivateKey), digest[:])
	if err != nil {
		t.Fatal(err)
	}
	nested := f.good()
	// A payload whose encoding ends in a character with unused low bits, so one can be set without changing
	// the decoded bytes.
	padded := p
	for len(padded)%3 != 1 {
		padded = " " + padded
	}

	cases := []struct {
		name   string
		token  string
		reason string
	}{
		// alg
		{"alg none", enc(`{"alg":"none","typ":"JWT"}`) + "." + enc(p) + ".", ReasonAlgNone},
		{"alg NONE upper case", enc(`{"alg":"NONE"}`) + "." + enc(p) + ".", ReasonAlgNone},
		{"alg none with a signature", replacePart(f.good(), 0, enc(`{"alg":"none","kid":"es256"}`)), ReasonAlgNone},
		{"alg missing", f.es(`{"kid":"es256"}`, p), ReasonAlgMissing},
		{"alg empty", f.es(`{"alg":"","kid":"es256"}`, p), ReasonAlgMissing},
		{"alg not a string", f.es(`{"alg":256,"kid":"es256"}`, p), ReasonHeaderMalformed},
		{"HS256 keyed with the RSA public key PEM", signRaw(t, rsPEM, "HS256", `{"alg":"HS256","kid":"rs256"}`, p), ReasonHMACNotAllowed},
		{"HS256 keyed with the RSA public key DER, no kid", signRaw(t, rsPub, "HS256", `{"alg":"HS256"}`, p), ReasonHMACNotAllowed},
		{"HS512 without a shared secret", signRaw(t, rsPub, "HS512", `{"alg":"HS512","kid":"es256"}`, p), ReasonHMACNotAllowed},
		{"alg outside the allow-list (RS512)", f.es(`{"alg":"RS512","kid":"rs256"}`, p), ReasonAlgNotAllowed},
		{"alg unknown (ES256K)", f.es(`{"alg":"ES256K","kid":"es256"}`, p), ReasonAlgNotAllowed},
		{"alg unknown (RSA-OAEP, an encryption alg)", f.es(`{"alg":"RSA-OAEP","kid":"es256"}`, p), ReasonAlgNotAllowed},

		// signature
		{"stripped signature", strings.TrimRight(replacePart(f.good(), 2, ""), "."), ReasonNotJWS},
		{"empty signature", replacePart(f.good(), 2, ""), ReasonSignatureMissing},
		{"tampered payload", replacePart(f.good(), 1, enc(with(func(c map[string]any) { c["subname"] = "admin" }))), ReasonSignatureInvalid},
		{"tampered header", replacePart(f.good(), 0, enc(`{"alg":"ES256","typ":"JWT","kid":"es256","x":1}`)), ReasonSignatureInvalid},
		{"signature spliced from another token", replacePart(f.good(), 2, strings.Split(f.es(esHeader, with(func(c map[string]any) { c["jti"] = "other" })), ".")[2]), ReasonSignatureInvalid},
		{"signed by an unpublished key under a published kid", signRaw(t, f.attacker.priv, "ES256", esHeader, p), ReasonSignatureInvalid},
		{"kid of another key of the same curve", signRaw(t, f.es256.priv, "ES256", `{"alg":"ES256","kid":"es256b"}`, p), ReasonSignatureInvalid},
		{"ES256 signature all zero (r = s = 0)", replacePart(f.good(), 2, base64.RawURLEncoding.EncodeToString(make([]byte, 64))), ReasonSignatureInvalid},
		{"ES256 signature in DER form", replacePart(f.good(), 2, base64.RawURLEncoding.EncodeToString(derSig)), ReasonSignatureLength},
		{"ES256 signature truncated to 63 bytes", replacePart(f.good(), 2, base64.RawURLEncoding.EncodeToString(make([]byte, 63))), ReasonSignatureLength},
		{"PS256 header over a PKCS#1 v1.5 signature", signRaw(t, f.ps.priv, "RS256", `{"alg":"PS256","kid":"ps256"}`, p), ReasonSignatureInvalid},
		{"EdDSA signature truncated", replacePart(signRaw(t, f.ed.priv, "EdDSA", `{"alg":"EdDSA","kid":"ed"}`, p), 2, base64.RawURLEncoding.EncodeToString(make([]byte, 32))), ReasonSignatureLength},

		// key fit
		{"ES256 with an RSA kid (wrong kty)", f.es(`{"alg":"ES256","kid":"rs256"}`, p), ReasonKeyAlgMismatch},
		{"ES256 with a P-384 kid (wrong crv)", f.es(`{"alg":"ES256","kid":"es384"}`, p), ReasonKeyAlgMismatch},
		{"ES384 with a P-256 kid (wrong crv)", signRaw(t, f.es384.priv, "ES384", `{"alg":"ES384","kid":"es256"}`, p), ReasonKeyAlgMismatch},
		{"EdDSA with an EC kid", signRaw(t, f.ed.priv, "EdDSA", `{"alg":"EdDSA","kid":"es256"}`, p), ReasonKeyAlgMismatch},
		{"RS256 with an Ed25519 kid", signRaw(t, f.rs.priv, "RS256", `{"alg":"RS256","kid":"ed"}`, p), ReasonKeyAlgMismatch},
		{"RS256 with a kid whose JWK says PS256", signRaw(t, f.ps.priv, "RS256", `{"alg":"RS256","kid":"ps256"}`, p), ReasonKeyAlgMismatch},
		{"RSA key of 1024 bits", signRaw(t, f.rs1024.priv, "RS256", `{"alg":"RS256","kid":"rs1024"}`, p), ReasonKeyTooSmall},

		// header parameters
		{"unknown crit", f.es(`{"alg":"ES256","kid":"es256","crit":["urn:x"],"urn:x":1}`, p), ReasonCritPresent},
		{"crit naming exp", f.es(`{"alg":"ES256","kid":"es256","crit":["exp"],"exp":1}`, p), ReasonCritPresent},
		{"jku injection", signRaw(t, f.attacker.priv, "ES256", `{"alg":"ES256","kid":"attacker","jku":"https://evil.example/jwks"}`, p), ReasonKeyInHeader},
		{"x5u injection", signRaw(t, f.attacker.priv, "ES256", `{"alg":"ES256","kid":"attacker","x5u":"https://evil.example/cert"}`, p), ReasonKeyInHeader},
		{"embedded jwk", signRaw(t, f.attacker.priv, "ES256", `{"alg":"ES256","kid":"attacker","jwk":`+string(attackerJWK)+`}`, p), ReasonKeyInHeader},
		{"embedded x5c", signRaw(t, f.attacker.priv, "ES256", `{"alg":"ES256","kid":"attacker","x5c":["MIIB"]}`, p), ReasonKeyInHeader},
		{"nested JWT (cty JWT)", f.es(`{"alg":"ES256","kid":"es256","cty":"JWT"}`, nested), ReasonNestedJWT},
		{"cty of any kind", f.es(`{"alg":"ES256","kid":"es256","cty":"json"}`, p), ReasonNestedJWT},
		{"JWE (five parts)", enc(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rs256"}`) + ".ek.iv.ct.tag", ReasonJWE},
		{"enc header in a JWS", f.es(`{"alg":"ES256","kid":"es256","enc":"A256GCM"}`, p), ReasonJWE},
		{"b64 false (RFC 7797)", f.es(`{"alg":"ES256","kid":"es256","b64":false}`, p), ReasonUnsupportedParam},
		{"zip", f.es(`{"alg":"ES256","kid":"es256","zip":"DEF"}`, p), ReasonUnsupportedParam},
		{"typ mismatch (dpop+jwt)", f.es(`{"alg":"ES256","typ":"dpop+jwt","kid":"es256"}`, p), ReasonTypMismatch},
		{"typ mismatch (id token style JOSE)", f.es(`{"alg":"ES256","typ":"JOSE","kid":"es256"}`, p), ReasonTypMismatch},
		{"huge header", f.es(`{"alg":"ES256","kid":"es256","x":"`+strings.Repeat("a", 2000)+`"}`, p), ReasonHeaderTooLarge},
		{"huge token", f.es(esHeader, with(func(c map[string]any) { c["pad"] = strings.Repeat("a", 9000) })), ReasonTokenTooLarge},

		// kid
		{"kid missing", f.es(`{"alg":"ES256"}`, p), ReasonKidMissing},
		{"kid empty", f.es(`{"alg":"ES256","kid":""}`, p), ReasonKidMissing},
		{"kid unknown", f.es(`{"alg":"ES256","kid":"no-such-key"}`, p), ReasonKidUnknown},
		{"kid path traversal", f.es(`{"alg":"ES256","kid":"../../../../dev/null"}`, p), ReasonKidUnknown},
		{"kid SQL injection", f.es(`{"alg":"ES256","kid":"' OR '1'='1"}`, p), ReasonKidUnknown},
		{"kid very long", f.es(`{"alg":"ES256","kid":"`+strings.Repeat("k", 300)+`"}`, p), ReasonKidMalformed},
		{"kid with a NUL", f.es(`{"alg":"ES256","kid":"es256\u0000"}`, p), ReasonKidMalformed},
		{"kid not a string", f.es(`{"alg":"ES256","kid":["es256"]}`, p), ReasonKidMalformed},

		// JSON
		{"duplicate alg in header", f.es(`{"alg":"ES256","kid":"es256","alg":"ES256"}`, p), ReasonDuplicateKey},
		{"duplicate kid in header via escape", f.es(`{"alg":"ES256","kid":"es256","\u006bid":"es256b"}`, p), ReasonDuplicateKey},
		{"duplicate sub in claims", f.es(esHeader, strings.TrimSuffix(p, "}")+`,"sub":"(usr!admin)"}`), ReasonDuplicateKey},
		{"duplicate member in a nested claim", f.es(esHeader, strings.TrimSuffix(p, "}")+`,"cnf":{"jkt":"a","jkt":"b"}}`), ReasonDuplicateKey},
		{"claims not JSON", f.es(esHeader, "hello"), ReasonClaimsMalformed},
		{"claims a JSON array", f.es(esHeader, `["sub","admin"]`), ReasonClaimsMalformed},
		{"claims with trailing data", f.es(esHeader, p+`{}`), ReasonClaimsMalformed},
		{"claims invalid UTF-8", f.es(esHeader, strings.TrimSuffix(p, "}")+",\"x\":\"\xff\"}"), ReasonClaimsMalformed},
		{"claims nested too deeply", f.es(esHeader, strings.TrimSuffix(p, "}")+`,"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`), ReasonClaimsMalformed},
		{"header not JSON", f.es(`alg=ES256`, p), ReasonHeaderMalformed},
		{"header a JSON array", f.es(`["ES256"]`, p), ReasonHeaderMalformed},

		// encoding and shape
		{"empty token", "", ReasonEmptyToken},
		{"one part", "abc", ReasonNotJWS},
		{"four parts", "a.b.c.d", ReasonNotJWS},
		{"standard base64 alphabet", strings.Replace(f.good(), "-", "+", 1) + "+", ReasonBadEncoding},
		{"base64 padding", replacePart(f.good(), 1, enc(p)+"=="), ReasonBadEncoding},
		{"line break inside the signature", f.good()[:len(f.good())-10] + "\n" + f.good()[len(f.good())-10:], ReasonBadEncoding},
		{"non-zero trailing bits", nonCanonical(f.es(esHeader, padded)), ReasonBadEncoding},

		// claims
		{"wrong iss", f.es(esHeader, with(func(c map[string]any) { c["iss"] = "https://evil.example/oauth2" })), ReasonIssuerMismatch},
		{"iss with a trailing slash", f.es(esHeader, with(func(c map[string]any) { c["iss"] = f.iss + "/" })), ReasonIssuerMismatch},
		{"iss missing", f.es(esHeader, with(func(c map[string]any) { delete(c, "iss") })), ReasonIssuerMismatch},
		{"iss not a string", f.es(esHeader, with(func(c map[string]any) { c["iss"] = []string{f.iss} })), ReasonIssuerMismatch},
		{"wrong aud", f.es(esHeader, with(func(c map[string]any) { c["aud"] = "another-client" })), ReasonAudienceMismatch},
		{"aud missing", f.es(esHeader, with(func(c map[string]any) { delete(c, "aud") })), ReasonAudienceMismatch},
		{"aud not a string", f.es(esHeader, with(func(c map[string]any) { c["aud"] = 7 })), ReasonClaimType},
		{"expired", f.es(esHeader, with(func(c map[string]any) { c["exp"] = f.now.Add(-time.Hour).Unix() })), ReasonExpired},
		{"expired a second ago (no leeway on exp)", f.es(esHeader, with(func(c map[string]any) { c["exp"] = f.now.Add(-time.Second).Unix() })), ReasonExpired},
		{"exp missing", f.es(esHeader, with(func(c map[string]any) { delete(c, "exp") })), ReasonExpMissing},
		{"exp a string", f.es(esHeader, with(func(c map[string]any) { c["exp"] = "9999999999" })), ReasonClaimType},
		{"exp beyond year 9999", f.es(esHeader, with(func(c map[string]any) { c["exp"] = 1e300 })), ReasonClaimType},
		{"exp negative", f.es(esHeader, with(func(c map[string]any) { c["exp"] = -1 })), ReasonClaimType},
		{"nbf in the future", f.es(esHeader, with(func(c map[string]any) { c["nbf"] = f.now.Add(5 * time.Minute).Unix() })), ReasonNotYetValid},
		{"iat in the future", f.es(esHeader, with(func(c map[string]any) { c["iat"] = f.now.Add(5 * time.Minute).Unix() })), ReasonIssuedInFuture},
		{"sub missing", f.es(esHeader, with(func(c map[string]any) { delete(c, "sub") })), ReasonSubMissing},
		{"sub empty", f.es(esHeader, with(func(c map[string]any) { c["sub"] = "" })), ReasonSubMissing},
		{"sub not a string", f.es(esHeader, with(func(c map[string]any) { c["sub"] = map[string]any{"id": "admin"} })), ReasonClaimType},
		{"scope a number", f.es(esHeader, with(func(c map[string]any) { c["scope"] = 1 })), ReasonClaimType},
		{"scope array with a non-string", f.es(esHeader, with(func(c map[string]any) { c["scope"] = []any{"publish", 1} })), ReasonClaimType},
		{"cnf not an object", f.es(esHeader, with(func(c map[string]any) { c["cnf"] = "jkt" })), ReasonClaimType},
		{"AM ID token (tokenName id_token)", f.es(esHeader, with(func(c map[string]any) { c["tokenName"] = "id_token" })), ReasonNotAccessToken},
		{"JWT refresh token (token_type refresh_token)", f.es(esHeader, with(func(c map[string]any) { c["token_type"] = "refresh_token" })), ReasonNotAccessType},
		{"AM refresh token as JWT (tokenName refresh_token)", f.es(esHeader, with(func(c map[string]any) { c["tokenName"] = "refresh_token" })), ReasonNotAccessToken},
		{"cnf.jwk not an object", f.es(esHeader, with(func(c map[string]any) { c["cnf"] = map[string]any{"jwk": "k"} })), ReasonClaimType},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d attack cases", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			tok, err := v.Validate(t.Context(), c.token)
			if tok != nil {
				t.Fatalf("accepted: %+v", tok)
			}
			if got := reasonOf(t, err, ErrInvalidToken); got != c.reason {
				t.Errorf("reason %q, want %q (%v)", got, c.reason, err)
			}
			if strings.Contains(err.Error(), c.token) && c.token != "" {
				t.Error("error message contains the token")
			}
		})
	}
	t.Logf("%d attack tokens rejected", len(cases))
}

// nonCanonical flips an unused low bit in the last character of the payload segment, which decodes to the same
// bytes under lenient base64 and must be refused under strict decoding.
func nonCanonical(token string) string {
	parts := strings.Split(token, ".")
	payload := parts[1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, payload[len(payload)-1])
	parts[1] = payload[:len(payload)-1] + string(alphabet[last|1])
	return strings.Join(parts, ".")
}
