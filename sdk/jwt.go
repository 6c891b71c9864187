package sdk

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// jwtLifetime is the validity of every JWT a thing makes (exp = iat + 5 minutes), as in AM's own SDK.
const jwtLifetime = 5 * time.Minute

// sign serialises claims as a compact JWS signed with k. withKID puts the key id into the header (only
// the client assertion does); extra adds protected header values (the signed request's aud, api and
// integer nonce); typ "" leaves typ out.
func (k *Key) sign(claims any, typ string, withKID bool, extra map[jose.HeaderKey]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: encode claims: %w", err)
	}
	var signingKey any = k.private
	if withKID {
		signingKey = jose.JSONWebKey{Key: k.private, KeyID: k.id}
	}
	opts := &jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{}}
	if typ != "" {
		opts.ExtraHeaders[jose.HeaderType] = typ
	}
	maps.Copy(opts.ExtraHeaders, extra)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: signingKey}, opts)
	if err != nil {
		return "", fmt.Errorf("sign with %s: %w", k, err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign with %s: %w", k, err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("sign with %s: %w", k, err)
	}
	return out, nil
}

// baseClaims merges custom claims with the standard ones; the standard claims win so a custom claim
// cannot change what the thing proves.
func baseClaims(custom map[string]any, std map[string]any) map[string]any {
	out := make(map[string]any, len(custom)+len(std))
	maps.Copy(out, custom)
	maps.Copy(out, std)
	return out
}

// popAuthJWT is the answer to jwt-pop-authentication: header {alg, typ: JWT} without kid; the key is
// named by cnf.kid.
func popAuthJWT(k *Key, sub, aud, nonce string, custom map[string]any, now time.Time) (string, error) {
	claims := baseClaims(custom, map[string]any{
		"sub":   sub,
		"aud":   aud,
		"iat":   now.Unix(),
		"exp":   now.Add(jwtLifetime).Unix(),
		"nonce": nonce,
		"cnf":   map[string]any{"kid": k.id},
	})
	return k.sign(claims, "JWT", false, nil)
}

// clientAssertionJWT is the answer to client_assertion (RFC 7523 §3): kid in the header, iss = sub.
func clientAssertionJWT(k *Key, sub, aud string, custom map[string]any, now time.Time) (string, error) {
	claims := baseClaims(custom, map[string]any{
		"iss": sub,
		"sub": sub,
		"aud": aud,
		"iat": now.Unix(),
		"exp": now.Add(jwtLifetime).Unix(),
	})
	return k.sign(claims, "JWT", true, nil)
}

// registrationJWT is the answer to jwt-pop-registration: cnf carries kid and the public JWK (with x5c
// when certs are given).
func registrationJWT(k *Key, sub, aud, nonce string, thingType ThingType, certs []*x509.Certificate, custom map[string]any, now time.Time) (string, error) {
	jwk, err := json.Marshal(k.PublicJWK(certs...))
	if err != nil {
		return "", fmt.Errorf("registration jwt: public jwk: %w", err)
	}
	std := map[string]any{
		"aud":       aud,
		"iat":       now.Unix(),
		"exp":       now.Add(jwtLifetime).Unix(),
		"nonce":     nonce,
		"thingType": string(thingType),
		"cnf":       map[string]any{"kid": k.id, "jwk": json.RawMessage(jwk)},
	}
	if sub != "" {
		std["sub"] = sub
	}
	return k.sign(baseClaims(custom, std), "JWT", false, nil)
}

// signedRequest is AM's proof-of-possession request body: protected header {alg, aud, api, nonce}
// (integer nonce, no kid, no typ), payload = body + csrf.
func signedRequest(k *Key, aud, api string, nonce int64, body map[string]any, ssoToken string) (string, error) {
	payload := make(map[string]any, len(body)+1)
	maps.Copy(payload, body)
	payload["csrf"] = ssoToken
	return k.sign(payload, "", false, map[jose.HeaderKey]any{"aud": aud, "api": api, "nonce": nonce})
}
