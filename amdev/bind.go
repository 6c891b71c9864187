package amdev

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// Values of IoTService.BindThingTokens.
const (
	BindNone        = ""            // bearer tokens, unless the request asks (cnf_key)
	BindKey         = "key"         // every thing token carries cnf.jwk: the key the thing registered
	BindCertificate = "certificate" // tokens of things that registered or authenticated with a certificate carry cnf.x5t#S256 (RFC 8705)
)

// attrCertThumbprint holds the SHA-256 thumbprint (base64url) of the certificate a thing registered with (PoP &
// certificate) or last authenticated with (a PoP JWT whose cnf.jwk carries x5c); not in the attribute allow-list,
// so things do not read it.
const attrCertThumbprint = "thingCertificateS256"

// registeredCertThumbprint is the x5t#S256 of the leaf of cnf.jwk's x5c in verified registration claims, "".
func registeredCertThumbprint(claims map[string]any) string {
	cnf, _ := claims["cnf"].(map[string]any)
	jwk, _ := cnf["jwk"].(map[string]any)
	x5c, _ := jwk["x5c"].([]any)
	if len(x5c) == 0 {
		return ""
	}
	leaf, _ := x5c[0].(string)
	der, err := base64.StdEncoding.DecodeString(leaf)
	if err != nil || len(der) == 0 {
		return ""
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// tokenBinding is the cnf of a thing's access token (RFC 7800), or nil for a bearer token. The request binds it
// with AM's cnf_key parameter (the base64url JWK of the key, which must be one the thing registered); without one
// the realm's bindThingTokens setting may bind it to the thing's registered key ("key"; a thing with several keys
// to its first) or to the certificate it registered with ("certificate": cnf.x5t#S256, RFC 8705).
func (s *Server) tokenBinding(ident *identity, cnfKey string) (map[string]any, error) {
	mode := s.iotService(ident.Realm).BindThingTokens
	if cnfKey == "" && mode == BindCertificate {
		if x5t := ident.attr(attrCertThumbprint); x5t != "" {
			return map[string]any{"x5t#S256": x5t}, nil
		}
		return nil, nil // registered without a certificate: nothing to bind to
	}
	if cnfKey == "" && mode != BindKey {
		return nil, nil
	}
	set, err := ident.keys()
	if err != nil || len(set.Keys) == 0 {
		if cnfKey == "" {
			return nil, nil // nothing registered to bind to: the realm setting binds what it can
		}
		return nil, oauthError(400, "invalid_request", "cnf_key: the thing has no registered key")
	}
	key := set.Keys[0]
	if cnfKey != "" {
		asked, err := parseCnfKey(cnfKey)
		if err != nil {
			return nil, oauthError(400, "invalid_request", "cnf_key must be a base64url-encoded public JWK")
		}
		found := false
		for _, k := range set.Keys {
			if sameKey(k, asked) {
				key, found = k, true
				break
			}
		}
		if !found {
			return nil, oauthError(400, "invalid_request", "cnf_key is not a key the thing registered")
		}
	}
	return map[string]any{"jwk": publicJWKClaim(key)}, nil
}

// parseCnfKey decodes AM's cnf_key: a JWK as JSON, base64url-encoded (padding optional).
func parseCnfKey(v string) (jose.JSONWebKey, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
	var k jose.JSONWebKey
	if err != nil {
		return k, err
	}
	if err := k.UnmarshalJSON(raw); err != nil {
		return k, err
	}
	if !k.Valid() || !k.IsPublic() {
		return k, errBadRequest("not a public key")
	}
	return k, nil
}

func sameKey(a, b jose.JSONWebKey) bool {
	x, err1 := a.Thumbprint(crypto.SHA256)
	y, err2 := b.Thumbprint(crypto.SHA256)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// publicJWKClaim is k as cnf.jwk carries it: the public key with its kid, use and alg, no certificates.
func publicJWKClaim(k jose.JSONWebKey) map[string]any {
	pub := jose.JSONWebKey{Key: k.Key, KeyID: k.KeyID, Use: k.Use, Algorithm: k.Algorithm}
	raw, err := json.Marshal(pub)
	var m map[string]any
	if err != nil || json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

// rememberAuthCertificate records the certificate a thing authenticated with, for certificate-bound tokens: a PoP
// JWT (verified by the registered key) whose cnf.jwk carries x5c, whose leaf holds that same key and chains to a
// configured CA. Anything else is ignored: the certificate is optional in authentication.
func (s *Server) rememberAuthCertificate(ident *identity, key jose.JSONWebKey, claims map[string]any) error {
	cnf, _ := claims["cnf"].(map[string]any)
	raw, ok := cnf["jwk"]
	if !ok {
		return nil
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return nil
	}
	var k jose.JSONWebKey // go-jose checks that the x5c leaf holds the JWK's key
	if k.UnmarshalJSON(data) != nil || len(k.Certificates) == 0 || !sameKey(k, key) {
		return nil
	}
	if s.verifyCertificateChain(k.Certificates, ident.ID, false) != nil {
		return nil
	}
	sum := sha256.Sum256(k.Certificates[0].Raw)
	x5t := base64.RawURLEncoding.EncodeToString(sum[:])
	if ident.attr(attrCertThumbprint) == x5t {
		return nil
	}
	ident.setAttr(attrCertThumbprint, x5t)
	return s.putIdentity(ident)
}
