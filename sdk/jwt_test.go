package sdk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var testAlgorithms = []Algorithm{ES256, ES384, ES512, EdDSA, PS256}

// verifyJWT checks a compact JWS with go-jose against k's public key and returns header and claims.
func verifyJWT(t *testing.T, k *Key, token string) (jose.Header, map[string]any) {
	t.Helper()
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(k.Algorithm())})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	payload, err := jws.Verify(k.Public())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Protected, claims
}

func rawHeader(t *testing.T, token string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func checkLifetime(t *testing.T, claims map[string]any, now time.Time) {
	t.Helper()
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	if int64(iat) != now.Unix() || int64(exp) != now.Add(5*time.Minute).Unix() {
		t.Fatalf("iat %v exp %v, want %d and +300", iat, exp, now.Unix())
	}
}

func TestPoPAuthenticationJWT(t *testing.T) {
	now := time.Unix(1650376224, 0)
	for _, alg := range testAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			k, _ := GenerateKey(alg)
			tok, err := popAuthJWT(k, "manual-pop-thing", "/", "kwXyn2xSQjtg_AExMAFM1g",
				map[string]any{"life_universe_everything": "42", "sub": "forged"}, now)
			if err != nil {
				t.Fatal(err)
			}
			h := rawHeader(t, tok)
			if h["alg"] != string(alg) || h["typ"] != "JWT" || h["kid"] != nil || len(h) != 2 {
				t.Fatalf("header %v, want exactly alg and typ", h)
			}
			_, claims := verifyJWT(t, k, tok)
			if claims["sub"] != "manual-pop-thing" || claims["aud"] != "/" || claims["nonce"] != "kwXyn2xSQjtg_AExMAFM1g" {
				t.Fatalf("claims %v", claims)
			}
			if cnf, _ := claims["cnf"].(map[string]any); cnf["kid"] != k.ID() || len(cnf) != 1 {
				t.Fatalf("cnf %v", claims["cnf"])
			}
			if claims["life_universe_everything"] != "42" {
				t.Fatalf("custom claim lost: %v", claims)
			}
			checkLifetime(t, claims, now)
		})
	}
}

func TestClientAssertionJWT(t *testing.T) {
	now := time.Now()
	k, _ := GenerateKey(ES256)
	tok, err := clientAssertionJWT(k, "manual-oauth-thing", "http://am/am/oauth2/access_token", nil, now)
	if err != nil {
		t.Fatal(err)
	}
	h, claims := verifyJWT(t, k, tok)
	if h.KeyID != k.ID() || rawHeader(t, tok)["typ"] != "JWT" {
		t.Fatalf("header %+v: kid must be in the header", rawHeader(t, tok))
	}
	if claims["iss"] != "manual-oauth-thing" || claims["sub"] != "manual-oauth-thing" || claims["aud"] != "http://am/am/oauth2/access_token" || claims["nonce"] != nil {
		t.Fatalf("claims %v", claims)
	}
	checkLifetime(t, claims, now)
}

func selfSignedCert(t *testing.T, k *Key, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestRegistrationJWT(t *testing.T) {
	now := time.Now()
	for _, alg := range testAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			k, _ := GenerateKey(alg)
			cert := selfSignedCert(t, k, "dynamic-thing")
			tok, err := registrationJWT(k, "dynamic-thing", "/a/b", "Vg7McIhuLQ-qwmrMhJHkOw", Gateway, []*x509.Certificate{cert},
				map[string]any{"thingProperties": `{"colour":"red"}`}, now)
			if err != nil {
				t.Fatal(err)
			}
			if h := rawHeader(t, tok); h["kid"] != nil || h["typ"] != "JWT" {
				t.Fatalf("header %v", h)
			}
			_, claims := verifyJWT(t, k, tok)
			if claims["sub"] != "dynamic-thing" || claims["aud"] != "/a/b" || claims["thingType"] != "gateway" || claims["nonce"] != "Vg7McIhuLQ-qwmrMhJHkOw" || claims["thingProperties"] != `{"colour":"red"}` {
				t.Fatalf("claims %v", claims)
			}
			cnf := claims["cnf"].(map[string]any)
			if cnf["kid"] != k.ID() {
				t.Fatalf("cnf.kid %v", cnf["kid"])
			}
			raw, _ := json.Marshal(cnf["jwk"])
			var jwk jose.JSONWebKey
			if err := json.Unmarshal(raw, &jwk); err != nil {
				t.Fatal(err)
			}
			if !jwk.IsPublic() || jwk.KeyID != k.ID() || jwk.Use != "sig" || len(jwk.Certificates) != 1 || !jwk.Certificates[0].Equal(cert) {
				t.Fatalf("jwk %s", raw)
			}
			if tp, _ := Thumbprint(jwk.Key); tp != k.ID() {
				t.Fatal("cnf.jwk is not the signing key")
			}
			checkLifetime(t, claims, now)
		})
	}
}

// verifySigned checks AM's signed request by hand, as AM must: go-jose refuses an integer nonce.
func verifySigned(t *testing.T, k *Key, token string) (map[string]json.RawMessage, map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	signed := []byte(parts[0] + "." + parts[1])
	var ok bool
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		var digest []byte
		switch k.Algorithm() {
		case ES256:
			s := sha256.Sum256(signed)
			digest = s[:]
		case ES384:
			s := sha512.Sum384(signed)
			digest = s[:]
		default:
			s := sha512.Sum512(signed)
			digest = s[:]
		}
		n := len(sig) / 2
		ok = ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:]))
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, signed, sig)
	case *rsa.PublicKey:
		s := sha256.Sum256(signed)
		ok = rsa.VerifyPSS(pub, crypto.SHA256, s[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	}
	if !ok {
		t.Fatal("signature does not verify")
	}
	var h map[string]json.RawMessage
	var p map[string]any
	if err := json.Unmarshal(hb, &h); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(pb, &p); err != nil {
		t.Fatal(err)
	}
	return h, p
}

func TestSignedRequestFormat(t *testing.T) {
	const aud = "http://am.localtest.me:8080/am/json/things/*?_action=get_access_token&realm=/a/b"
	for _, alg := range testAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			k, _ := GenerateKey(alg)
			tok, err := signedRequest(k, aud, apiThings, 7, map[string]any{"scope": []string{"publish"}}, "AQIC5w*")
			if err != nil {
				t.Fatal(err)
			}
			h, p := verifySigned(t, k, tok)
			if len(h) != 4 || string(h["nonce"]) != "7" || string(h["alg"]) != `"`+string(alg)+`"` {
				t.Fatalf("header %v: want alg, aud, api and integer nonce only", h)
			}
			var gotAud, gotAPI string
			_ = json.Unmarshal(h["aud"], &gotAud)
			_ = json.Unmarshal(h["api"], &gotAPI)
			if gotAud != aud || gotAPI != "protocol=2.0,resource=1.0" {
				t.Fatalf("aud %q api %q", gotAud, gotAPI)
			}
			if p["csrf"] != "AQIC5w*" || len(p["scope"].([]any)) != 1 {
				t.Fatalf("payload %v", p)
			}
		})
	}
}
