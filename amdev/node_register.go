package amdev

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// registerThing runs the Register Thing node on the answered registration
// JWT and/or software statement, and creates or updates the identity.
func (s *Server) registerThing(st *authState, tree *Tree, regJWT, stmt string) (*authResult, error) {
	node := tree.Register
	var (
		id      string
		key     jose.JSONWebKey
		keySet  []jose.JSONWebKey
		claims  map[string]any
		err     error
		stmtSet *jose.JSONWebKeySet
	)
	if node.Method == MethodPoPWithSoftwareStatement || node.Method == MethodSoftwareStatementOnly {
		var stmtClaims map[string]any
		if stmtClaims, stmtSet, err = s.verifySoftwareStatement(st.realm, stmt); err != nil {
			return nil, errLoginFailure().with(fmt.Errorf("register: software statement: %w", err))
		}
		if node.Method == MethodSoftwareStatementOnly {
			claims = stmtClaims
			id = newUUID()
			keySet = stmtSet.Keys
			key = keySet[0]
		}
	}
	if node.Method != MethodSoftwareStatementOnly {
		if id, key, claims, err = s.verifyRegistrationJWT(st, tree, regJWT, stmtSet); err != nil {
			return nil, errLoginFailure().with(fmt.Errorf("register: %w", err))
		}
		keySet = []jose.JSONWebKey{key}
	}
	if node.NameValidationRegex != "" {
		if re, err := regexp.Compile(node.NameValidationRegex); err != nil || re.MatchString(id) {
			return nil, errLoginFailure().with(fmt.Errorf("register %s: name refused by nameValidationRegex", id))
		}
	}
	if node.NamePattern != "" {
		if re, err := regexp.Compile(`^(?:` + node.NamePattern + `)$`); err != nil || !re.MatchString(id) {
			return nil, errorf(http.StatusUnauthorized, "Login failure: thing name does not match the tree's namePattern %s", quote(node.NamePattern)).
				with(fmt.Errorf("register %s: name refused by namePattern", id))
		}
	}
	if err := s.reservedName(id); err != nil {
		return nil, errorf(http.StatusUnauthorized, "Login failure: %v", err).with(fmt.Errorf("register %s: %w", id, err))
	}
	thingKeys, err := json.Marshal(jose.JSONWebKeySet{Keys: keySet})
	if err != nil {
		return nil, fmt.Errorf("register %s: encode keys: %w", id, err)
	}
	if err := s.storeRegistration(st.realm, id, node, string(thingKeys), keySet, claims, node.Method != MethodPoPWithoutTrust); err != nil {
		return nil, err
	}
	return &authResult{id: id, key: &key}, nil
}

// verifyRegistrationJWT checks a PoP registration JWT: signed by the key being
// registered, the issued nonce, an accepted audience, and the method's trust
// anchor (certificate chain or software statement).
func (s *Server) verifyRegistrationJWT(st *authState, tree *Tree, raw string, stmtSet *jose.JSONWebKeySet) (string, jose.JSONWebKey, map[string]any, error) {
	var none jose.JSONWebKey
	node := tree.Register
	jws, err := parseCompactJWS(raw)
	if err != nil {
		return "", none, nil, err
	}
	claims, err := jws.claims()
	if err != nil {
		return "", none, nil, err
	}
	id, _ := claims["sub"].(string)
	if id == "" {
		return "", none, nil, errors.New("no sub")
	}
	kid := cnfKID(claims)
	if kid == "" {
		return "", none, nil, fmt.Errorf("%s: no key id in cnf", id)
	}
	var key jose.JSONWebKey
	if node.Method == MethodPoPWithSoftwareStatement {
		keys := stmtSet.Key(kid)
		if len(keys) == 0 {
			return "", none, nil, fmt.Errorf("%s: software statement has no key %s", id, quote(kid))
		}
		key = keys[0]
	} else {
		cnf, _ := claims["cnf"].(map[string]any)
		rawJWK, ok := cnf["jwk"]
		if !ok {
			return "", none, nil, fmt.Errorf("%s: no cnf.jwk", id)
		}
		data, err := json.Marshal(rawJWK)
		if err != nil {
			return "", none, nil, err
		}
		if err := key.UnmarshalJSON(data); err != nil {
			return "", none, nil, fmt.Errorf("%s: cnf.jwk: %w", id, err)
		}
		if !key.IsPublic() {
			return "", none, nil, fmt.Errorf("%s: cnf.jwk is not a public key", id)
		}
		if node.Method == MethodPoPWithCertificate {
			if err := s.verifyCertificateChain(key.Certificates, id, node.VerifySubject); err != nil {
				return "", none, nil, fmt.Errorf("%s: %w", id, err)
			}
		}
	}
	if err := jws.verify(key.Key); err != nil {
		return "", none, nil, fmt.Errorf("%s: %w", id, err)
	}
	audiences := []string{st.realm}
	if tree.Authenticate != nil {
		audiences = append(audiences, tree.Authenticate.AdditionalAudienceValues...)
	}
	if !audienceOK(claims["aud"], audiences) {
		return "", none, nil, fmt.Errorf("%s: audience not accepted", id)
	}
	if nonce, _ := claims["nonce"].(string); st.challenge == "" || nonce != st.challenge {
		return "", none, nil, fmt.Errorf("%s: nonce is not the challenge", id)
	}
	if err := s.checkJWTTimes(claims); err != nil {
		return "", none, nil, fmt.Errorf("%s: %w", id, err)
	}
	return id, publicJWK(key, kid), claims, nil
}

// verifyCertificateChain checks x5c (leaf first): the leaf is valid now, each
// certificate is signed by the next, and the last is signed by a configured
// CA key. The CA certificate's own dates do not matter (AM uses it as a key).
func (s *Server) verifyCertificateChain(chain []*x509.Certificate, id string, verifySubject bool) error {
	if len(chain) == 0 {
		return errors.New("no certificate (x5c) in cnf.jwk")
	}
	now := s.now()
	skew := time.Duration(s.settings.ClockSkew)
	leaf := chain[0]
	if now.Add(skew).Before(leaf.NotBefore) || now.Add(-skew).After(leaf.NotAfter) {
		return errors.New("certificate is not valid now")
	}
	if verifySubject && leaf.Subject.CommonName != id {
		return fmt.Errorf("certificate subject %s is not the thing id", quote(leaf.Subject.CommonName))
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fmt.Errorf("certificate chain: %w", err)
		}
	}
	last := chain[len(chain)-1]
	for _, k := range s.trustedCAs() {
		if signedBy(last, k) {
			return nil
		}
	}
	return errors.New("certificate is not signed by a trusted CA")
}

// signedBy reports whether cert's signature verifies with key.
func signedBy(cert *x509.Certificate, key crypto.PublicKey) bool {
	parent := &x509.Certificate{PublicKey: key}
	return parent.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
}

// verifySoftwareStatement checks a software statement against the software
// publisher named by its iss and returns its claims and key set.
func (s *Server) verifySoftwareStatement(realm, raw string) (map[string]any, *jose.JSONWebKeySet, error) {
	if raw == "" {
		return nil, nil, errors.New("missing")
	}
	jws, err := parseCompactJWS(raw)
	if err != nil {
		return nil, nil, err
	}
	claims, err := jws.claims()
	if err != nil {
		return nil, nil, err
	}
	iss, _ := claims["iss"].(string)
	pub := s.publisherKeys(realm, iss)
	if pub == nil {
		return nil, nil, fmt.Errorf("issuer %s is not a software publisher", quote(iss))
	}
	candidates := pub.Keys
	if kid := jws.headerString("kid"); kid != "" {
		candidates = pub.Key(kid)
	}
	verified := false
	for _, k := range candidates {
		if jws.verify(k.Key) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, nil, errors.New("signature does not verify with the publisher's keys")
	}
	if _, ok := claims["exp"]; ok {
		if err := s.checkJWTTimes(claims); err != nil {
			return nil, nil, err
		}
	}
	rawSet, ok := claims["jwks"]
	if !ok {
		return nil, nil, errors.New("no jwks claim")
	}
	data, err := json.Marshal(rawSet)
	if err != nil {
		return nil, nil, err
	}
	set, err := parseThingKeys(string(data))
	if err != nil {
		return nil, nil, err
	}
	if len(set.Keys) == 0 {
		return nil, nil, errors.New("jwks claim has no keys")
	}
	for i, k := range set.Keys {
		set.Keys[i] = publicJWK(k, k.KeyID)
	}
	return claims, set, nil
}

// storeRegistration creates the identity, or updates an existing one as the
// node's allowKeyRotation and allowAttributeOverwrite permit. An identity of
// that name that is not a thing (a user) is never taken over. trusted says
// the registration is vouched for (certificate or software statement): only
// then may its claims set one of the IoT Service's restrictedThingTypes.
func (s *Server) storeRegistration(realm, id string, node *RegisterNode, thingKeys string, keys []jose.JSONWebKey, claims map[string]any, trusted bool) error {
	ident, err := s.getIdentity(realm, id)
	switch {
	case errors.Is(err, errNoIdentity):
		if !node.CreateIdentity {
			return errLoginFailure().with(fmt.Errorf("register %s: identity does not exist and createIdentity is off", id))
		}
		ident = &identity{Realm: realm, ID: id}
		ident.setAttr("thingKeys", thingKeys)
	case err != nil:
		return err
	case !ident.isThing():
		return errorf(http.StatusUnauthorized, "Login failure: the name is taken by a user").
			with(fmt.Errorf("register %s: an identity that is not a thing has this name", id))
	default:
		existing, err := ident.keys()
		if err != nil {
			existing = &jose.JSONWebKeySet{}
		}
		if !sameKeys(existing, keys) {
			if !node.AllowKeyRotation {
				return errLoginFailure().with(fmt.Errorf("register %s: identity exists with other keys and allowKeyRotation is off", id))
			}
			ident.setAttr("thingKeys", thingKeys)
		}
	}
	claimedType := ""
	set := func(attr, value string) {
		if value != "" && (ident.attr(attr) == "" || node.AllowAttributeOverwrite) {
			if attr == "thingType" {
				claimedType = value
			}
			ident.setAttr(attr, value)
		}
	}
	if tt, _ := claims["thingType"].(string); tt != "" {
		set("thingType", tt)
	}
	for claim, attr := range node.ClaimToAttributeMapping {
		if v, ok := claims[claim]; ok {
			set(attr, claimString(v))
		}
	}
	for attr, v := range node.DefaultAttributeValues {
		if ident.attr(attr) == "" {
			ident.setAttr(attr, v)
		}
	}
	if ident.attr("thingType") == "" {
		ident.setAttr("thingType", "device")
	}
	if node.Method == MethodPoPWithCertificate {
		// The certificate the registration proved, for certificate-bound tokens (bindThingTokens: certificate).
		if x5t := registeredCertThumbprint(claims); x5t != "" {
			ident.setAttr(attrCertThumbprint, x5t)
		}
	}
	if !trusted && slices.Contains(s.iotService(ident.Realm).RestrictedThingTypes, claimedType) {
		return errorf(http.StatusUnauthorized, "Login failure: thingType %s needs a trusted registration (certificate, software statement or administrator)", quote(claimedType)).
			with(fmt.Errorf("register %s: thingType %s claimed without trust", id, claimedType))
	}
	return s.putIdentity(ident)
}

// sameKeys reports whether every key in keys is already in set (same kid and material).
func sameKeys(set *jose.JSONWebKeySet, keys []jose.JSONWebKey) bool {
	for _, k := range keys {
		found := false
		for _, e := range set.Key(k.KeyID) {
			a, err1 := e.Thumbprint(crypto.SHA256)
			b, err2 := k.Thumbprint(crypto.SHA256)
			if err1 == nil && err2 == nil && bytes.Equal(a, b) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// claimString renders a claim as an attribute value: strings as is, anything else as JSON.
func claimString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// newUUID is a random (version 4) UUID, the id AM gives software-statement-only registrations.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// reservedName refuses a thing name that would share its plain id with a
// principal of another kind: an OAuth2 client (whose tokens' subject is its
// client id, in every realm) or the administrator. The broker's policy
// placeholders use the plain id, so such a thing would be granted what the
// client is granted on {sub} topics.
func (s *Settings) reservedName(id string) error {
	for clientID := range s.Clients {
		if strings.EqualFold(id, clientID) {
			return fmt.Errorf("the name %s is taken by an OAuth2 client", quote(id))
		}
	}
	if strings.EqualFold(id, s.Admin.Username) {
		return fmt.Errorf("the name %s is taken by the administrator", quote(id))
	}
	return nil
}

// reservedName is Settings.reservedName over the clients made through the
// admin REST too, in any realm.
func (s *Server) reservedName(id string) error {
	if err := s.settings.reservedName(id); err != nil {
		return err
	}
	s.agents.mu.RLock()
	defer s.agents.mu.RUnlock()
	for _, clients := range s.agents.byRealm {
		for c, v := range clients {
			if v != nil && strings.EqualFold(id, c) {
				return fmt.Errorf("the name %s is taken by an OAuth2 client", quote(id))
			}
		}
	}
	return nil
}
