package amdev

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// authenticateThing runs the Authenticate Thing node on the answered JWT.
// Unknown identity, no keys, or no key with the JWT's kid → register
// outcome; any other verification failure → 401.
func (s *Server) authenticateThing(r *http.Request, st *authState, tree *Tree, raw string) (*authResult, error) {
	node := tree.Authenticate
	jws, err := parseCompactJWS(raw)
	if err != nil {
		return nil, errLoginFailure().with(err)
	}
	claims, err := jws.claims()
	if err != nil {
		return nil, errLoginFailure().with(err)
	}
	var id, kid string
	var audiences []string
	if node.Method == MethodClientAssertion {
		iss, _ := claims["iss"].(string)
		id, _ = claims["sub"].(string)
		if id == "" || iss != id {
			return nil, errLoginFailure().with(errors.New("client assertion: iss must equal sub"))
		}
		kid = jws.headerString("kid")
		audiences = append(s.oauthAudiences(r, st.realm), node.AdditionalAudienceValues...)
	} else {
		id, _ = claims["sub"].(string)
		kid = cnfKID(claims)
		audiences = append([]string{st.realm}, node.AdditionalAudienceValues...)
	}
	ident, err := s.getIdentity(st.realm, id)
	if errors.Is(err, errNoIdentity) {
		return &authResult{register: true}, nil
	}
	if err != nil {
		return nil, err
	}
	keys, err := ident.keys()
	if err != nil {
		return nil, errLoginFailure().with(err)
	}
	matched := keys.Key(kid)
	if kid == "" || len(matched) == 0 {
		return &authResult{register: true}, nil
	}
	key := matched[0]
	if err := jws.verify(key.Key); err != nil {
		return nil, errLoginFailure().with(fmt.Errorf("authenticate %s: %w", id, err))
	}
	if !audienceOK(claims["aud"], audiences) {
		return nil, errLoginFailure().with(fmt.Errorf("authenticate %s: audience not accepted", id))
	}
	if err := s.checkJWTTimes(claims); err != nil {
		return nil, errLoginFailure().with(fmt.Errorf("authenticate %s: %w", id, err))
	}
	if node.Method == MethodProofOfPossession {
		if nonce, _ := claims["nonce"].(string); st.challenge == "" || nonce != st.challenge {
			return nil, errLoginFailure().with(fmt.Errorf("authenticate %s: nonce is not the challenge", id))
		}
	} else if err := s.rememberJTI(claims, jws, false); err != nil {
		return nil, errLoginFailure().with(fmt.Errorf("authenticate %s: %w", id, err))
	}
	for name, want := range node.RequiredClaims {
		if got, _ := claims[name].(string); got != want {
			return nil, errLoginFailure().with(fmt.Errorf("authenticate %s: claim %s does not match", id, name))
		}
	}
	if err := s.rememberAuthCertificate(ident, key, claims); err != nil {
		return nil, err
	}
	return &authResult{id: ident.ID, key: &key}, nil
}

// cnfKID is the kid named in a JWT's cnf claim (cnf.kid, else cnf.jwk.kid).
func cnfKID(claims map[string]any) string {
	cnf, _ := claims["cnf"].(map[string]any)
	if kid, _ := cnf["kid"].(string); kid != "" {
		return kid
	}
	jwk, _ := cnf["jwk"].(map[string]any)
	kid, _ := jwk["kid"].(string)
	return kid
}

// audienceOK accepts a string aud, or an array with one accepted value.
func audienceOK(aud any, accepted []string) bool {
	switch v := aud.(type) {
	case string:
		return slices.Contains(accepted, v)
	case []any:
		for _, a := range v {
			if s, ok := a.(string); ok && slices.Contains(accepted, s) {
				return true
			}
		}
	}
	return false
}

// checkJWTTimes requires exp in the future and iat (if present) not in the
// future, each within the configured clock skew.
func (s *Server) checkJWTTimes(claims map[string]any) error {
	now := s.now()
	skew := time.Duration(s.settings.ClockSkew)
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return errors.New("no exp")
	}
	if !now.Add(-skew).Before(exp) {
		return errors.New("expired")
	}
	if iat, ok := numericDate(claims["iat"]); ok && iat.After(now.Add(skew)) {
		return errors.New("issued in the future")
	}
	if nbf, ok := numericDate(claims["nbf"]); ok && nbf.After(now.Add(skew)) {
		return errors.New("not valid yet")
	}
	return nil
}

func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// checkAssertionLifetime bounds how long a client assertion (which carries
// no challenge) can be used: exp at most AssertionMaxLifetime ahead, and no
// more than that after iat. AM's SDK makes them for 5 minutes.
func (s *Server) checkAssertionLifetime(claims map[string]any) error {
	now := s.now()
	limit := time.Duration(s.settings.AssertionMaxLifetime)
	exp, _ := numericDate(claims["exp"]) // checkJWTTimes required it
	if exp.After(now.Add(limit + time.Duration(s.settings.ClockSkew))) {
		return fmt.Errorf("exp is more than %v ahead", limit)
	}
	if iat, ok := numericDate(claims["iat"]); ok && exp.Sub(iat) > limit {
		return fmt.Errorf("lifetime exp-iat is more than %v", limit)
	}
	return nil
}

// rememberJTI makes a client assertion single-use (RFC 7523 §3): it is
// recorded by issuer and jti until it expires, and a second use is refused.
// requireJTI refuses an assertion without jti; otherwise (the
// client_assertion callback: AM's SDK sends none) the assertion's signature
// stands in for it, so the very same assertion still works only once.
func (s *Server) rememberJTI(claims map[string]any, jws *compactJWS, requireJTI bool) error {
	if err := s.checkAssertionLifetime(claims); err != nil {
		return err
	}
	jti, _ := claims["jti"].(string)
	if jti == "" {
		if requireJTI {
			return errors.New("no jti")
		}
		jti = "sig:" + tokenHash(string(jws.signature))
	}
	iss, _ := claims["iss"].(string)
	exp, _ := numericDate(claims["exp"])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seenJTIs.remember(iss, jti, exp.Add(time.Duration(s.settings.ClockSkew)), now)
}

// publicJWK is k without private parts and certificates, as stored in thingKeys.
func publicJWK(k jose.JSONWebKey, kid string) jose.JSONWebKey {
	pub := k.Public()
	pub.KeyID = kid
	pub.Certificates = nil
	pub.CertificateThumbprintSHA1 = nil
	pub.CertificateThumbprintSHA256 = nil
	if pub.Use == "" {
		pub.Use = "sig"
	}
	return pub
}
