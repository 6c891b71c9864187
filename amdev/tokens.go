package amdev

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"imb/amdev/store"
)

const (
	bucketAccess  = "access_tokens"  // opaque access tokens, by hash
	bucketRefresh = "refresh_tokens" // refresh tokens, by hash
	bucketRevoked = "revoked"        // "jti:<id>" and "grant:<id>", until the tokens would expire anyway
	// bucketThingGrants maps the authGrantId of a JWT grant made through a
	// thing to that thing's id: a JWT names its subject (for a device-grant
	// token, the user), not the thing that obtained it, and the things
	// endpoint lets a thing introspect only the tokens it obtained.
	bucketThingGrants = "thing_grants"
)

// grant is what a token stands for; refresh tokens and opaque access tokens
// store it, JWT access tokens carry it as claims.
type grant struct {
	Realm       string `json:"realm"`
	ClientID    string `json:"client_id"`
	Subject     string `json:"subject"`      // plain id of the resource owner (thing, user or client)
	SubjectType string `json:"subject_type"` // "usr" (identity) or "age" (client agent)
	ThingID     string `json:"thing_id,omitempty"`
	// Claims are extra token claims taken from identity attributes
	// (OAuth2Provider.ClaimsFromAttributes), e.g. thingType.
	Claims      map[string]any `json:"claims,omitempty"`
	Scopes      []string       `json:"scopes"`
	GrantType   string         `json:"grant_type"`
	AuthGrantID string         `json:"auth_grant_id"`
	AuthTime    int64          `json:"auth_time"`
	// Cnf binds the tokens of the grant to a key (cnf.jwk, RFC 7800); nil: bearer tokens. Refreshed tokens
	// keep it.
	Cnf map[string]any `json:"cnf,omitempty"`
}

// tokenRecord is a stored token (opaque access token or refresh token).
type tokenRecord struct {
	Grant   grant  `json:"grant"`
	JTI     string `json:"jti"`
	Issued  int64  `json:"iat"`
	Expires int64  `json:"exp"`
}

// tokenResponse is the RFC 6749 token response (scope space-separated).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

func tokenHash(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// fingerprint names a token in logs without revealing it.
func fingerprint(t string) string { return tokenHash(t)[:12] }

// issue mints an access token for g (and a refresh token when asked).
func (s *Server) issue(g grant, withRefresh bool) (tokenResponse, error) {
	now := s.now()
	if g.AuthGrantID == "" {
		g.AuthGrantID = randomToken(20)
	}
	if g.AuthTime == 0 {
		g.AuthTime = now.Unix()
	}
	prov := s.provider(g.Realm)
	life := time.Duration(prov.AccessTokenLifetime)
	if c := s.client(g.Realm, g.ClientID); c != nil && c.AccessTokenLifetime > 0 {
		life = time.Duration(c.AccessTokenLifetime)
	}
	exp := now.Add(life)
	rec := tokenRecord{Grant: g, JTI: randomToken(20), Issued: now.Unix(), Expires: exp.Unix()}
	var access string
	if prov.TokenFormat == "opaque" {
		access = randomToken(20)
		if err := s.db.Put(bucketAccess, tokenHash(access), rec, exp); err != nil {
			return tokenResponse{}, err
		}
	} else {
		var err error
		if access, err = s.signAccessToken(rec); err != nil {
			return tokenResponse{}, err
		}
		if g.ThingID != "" {
			until := exp
			if withRefresh {
				until = now.Add(time.Duration(prov.RefreshTokenLifetime))
			}
			if err := s.db.Put(bucketThingGrants, g.AuthGrantID, g.ThingID, until); err != nil {
				return tokenResponse{}, err
			}
		}
	}
	resp := tokenResponse{AccessToken: access, Scope: strings.Join(g.Scopes, " "), TokenType: "Bearer",
		ExpiresIn: int64(life / time.Second)}
	if withRefresh {
		refresh := randomToken(20)
		rexp := now.Add(time.Duration(prov.RefreshTokenLifetime))
		rrec := tokenRecord{Grant: g, JTI: randomToken(20), Issued: now.Unix(), Expires: rexp.Unix()}
		if err := s.db.Put(bucketRefresh, tokenHash(refresh), rrec, rexp); err != nil {
			return tokenResponse{}, err
		}
		resp.RefreshToken = refresh
	}
	s.log.Debug("issued access token", "client", g.ClientID, "sub", g.Subject, "grant_type", g.GrantType,
		"token", fingerprint(access))
	return resp, nil
}

// subjectClaims are sub (compound "(usr!id)" unless configured plain) and subname.
func (s *Server) subjectClaims(g grant) (sub, subname string) {
	if s.settings.OAuth2.CompoundSubject {
		typ := g.SubjectType
		if typ == "" {
			typ = "usr"
		}
		return "(" + typ + "!" + g.Subject + ")", g.Subject
	}
	return g.Subject, g.Subject
}

// accessClaims are the claims of an AM client-based access token (§9.4),
// plus thingType for thing tokens: what an AM access-token modification
// script would add, so that broker policies can condition on it.
func (s *Server) accessClaims(rec tokenRecord) map[string]any {
	g := rec.Grant
	sub, subname := s.subjectClaims(g)
	c := map[string]any{
		"sub": sub, "subname": subname, "cts": "OAUTH2_STATELESS_GRANT",
		"auditTrackingId": rec.JTI, "iss": s.oauthBase(g.Realm), "tokenName": "access_token",
		"token_type": "Bearer", "authGrantId": g.AuthGrantID, "aud": g.ClientID,
		"nbf": rec.Issued, "grant_type": g.GrantType, "scope": g.Scopes, "auth_time": g.AuthTime,
		"realm": g.Realm, "exp": rec.Expires, "iat": rec.Issued, "expires_in": rec.Expires - rec.Issued,
		"jti": rec.JTI,
	}
	if g.Cnf != nil {
		c["cnf"] = g.Cnf
	}
	for k, v := range g.Claims {
		if _, reserved := c[k]; !reserved {
			c[k] = v
		}
	}
	return c
}

func (s *Server) signAccessToken(rec tokenRecord) (string, error) {
	payload, err := json.Marshal(s.accessClaims(rec))
	if err != nil {
		return "", fmt.Errorf("encode access token: %w", err)
	}
	if s.provider(rec.Grant.Realm).TokenEncryption {
		return s.encryptAccessToken(payload)
	}
	signer, err := s.tokenSigner(s.provider(rec.Grant.Realm).SigningAlgorithm)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return obj.CompactSerialize()
}

// tokenInfo is a token found valid by lookupToken.
type tokenInfo struct {
	rec     tokenRecord
	refresh bool
}

var errInactive = errors.New("token inactive")

// lookupToken finds an active access token (JWT or opaque) or refresh token.
func (s *Server) lookupToken(token string) (*tokenInfo, error) {
	now := s.now()
	if dots := strings.Count(token, "."); dots == 2 || dots == 4 {
		verify := s.verifyAccessJWT
		if dots == 4 {
			verify = s.decryptAccessToken
		}
		rec, err := verify(token)
		if err != nil {
			return nil, err
		}
		if err := s.checkNotRevoked(rec); err != nil {
			return nil, err
		}
		return &tokenInfo{rec: *rec}, nil
	}
	for _, b := range []string{bucketAccess, bucketRefresh} {
		var rec tokenRecord
		err := s.db.Get(b, tokenHash(token), &rec, now)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := s.checkNotRevoked(&rec); err != nil {
			return nil, err
		}
		return &tokenInfo{rec: rec, refresh: b == bucketRefresh}, nil
	}
	return nil, errInactive
}

// verifyAccessJWT verifies one of amdev's JWT access tokens and rebuilds its record.
func (s *Server) verifyAccessJWT(token string) (*tokenRecord, error) {
	obj, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.HS256})
	if err != nil || len(obj.Signatures) != 1 {
		return nil, errInactive
	}
	h := obj.Signatures[0].Header
	for _, key := range s.verificationKeys(jose.SignatureAlgorithm(h.Algorithm), h.KeyID) {
		if payload, err := obj.Verify(key); err == nil {
			return s.accessRecord(payload)
		}
	}
	return nil, errInactive
}

// accessRecord checks the claims of a client-based access token that
// amdev made (verified or decrypted) and rebuilds its record.
func (s *Server) accessRecord(payload []byte) (*tokenRecord, error) {
	var all map[string]any
	if err := json.Unmarshal(payload, &all); err != nil {
		return nil, errInactive
	}
	var c struct {
		Subname     string         `json:"subname"`
		Sub         string         `json:"sub"`
		Aud         string         `json:"aud"`
		Scope       []string       `json:"scope"`
		Realm       string         `json:"realm"`
		GrantType   string         `json:"grant_type"`
		AuthGrantID string         `json:"authGrantId"`
		AuthTime    int64          `json:"auth_time"`
		Exp         int64          `json:"exp"`
		Iat         int64          `json:"iat"`
		Nbf         int64          `json:"nbf"`
		JTI         string         `json:"jti"`
		Cnf         map[string]any `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, errInactive
	}
	now := s.now().Unix()
	if now >= c.Exp || now < c.Nbf {
		return nil, errInactive
	}
	typ := "usr"
	if strings.HasPrefix(c.Sub, "(age!") {
		typ = "age"
	}
	g := grant{Realm: c.Realm, ClientID: c.Aud, Subject: c.Subname, SubjectType: typ, Scopes: c.Scope,
		GrantType: c.GrantType, AuthGrantID: c.AuthGrantID, AuthTime: c.AuthTime, Cnf: c.Cnf}
	var thingID string
	switch err := s.db.Get(bucketThingGrants, c.AuthGrantID, &thingID, s.now()); {
	case err == nil:
		g.ThingID = thingID
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	for claim := range s.settings.OAuth2.ClaimsFromAttributes {
		if v, ok := all[claim]; ok {
			if g.Claims == nil {
				g.Claims = map[string]any{}
			}
			g.Claims[claim] = v
		}
	}
	return &tokenRecord{Grant: g, JTI: c.JTI, Issued: c.Iat, Expires: c.Exp}, nil
}

func (s *Server) checkNotRevoked(rec *tokenRecord) error {
	if ended, err := s.realmEndedAfter(rec); err != nil || ended {
		return cmp.Or(err, errInactive)
	}
	var v bool
	now := s.now()
	for _, k := range []string{"jti:" + rec.JTI, "grant:" + rec.Grant.AuthGrantID} {
		err := s.db.Get(bucketRevoked, k, &v, now)
		if err == nil {
			return errInactive
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// revoke makes a token inactive: an access token alone, or a refresh token
// together with its whole grant (every token issued from it), as AM does.
func (s *Server) revoke(info *tokenInfo, token string) error {
	now := s.now()
	if info.refresh {
		if _, err := s.db.Delete(bucketRefresh, tokenHash(token)); err != nil {
			return err
		}
		exp := now.Add(time.Duration(s.provider(info.rec.Grant.Realm).RefreshTokenLifetime))
		return s.db.Put(bucketRevoked, "grant:"+info.rec.Grant.AuthGrantID, true, exp)
	}
	if _, err := s.db.Delete(bucketAccess, tokenHash(token)); err != nil {
		return err
	}
	return s.db.Put(bucketRevoked, "jti:"+info.rec.JTI, true, time.Unix(info.rec.Expires, 0).Add(time.Minute))
}

// introspection is the RFC 7662 answer for an active token.
func (s *Server) introspection(info *tokenInfo) map[string]any {
	rec := info.rec
	g := rec.Grant
	sub, subname := s.subjectClaims(g)
	tokenType := "Bearer"
	if info.refresh {
		tokenType = "refresh_token"
	}
	out := map[string]any{
		"active": true, "scope": strings.Join(g.Scopes, " "), "client_id": g.ClientID,
		"user_id": g.Subject, "username": g.Subject, "sub": sub, "subname": subname,
		"token_type": tokenType, "exp": rec.Expires, "iat": rec.Issued, "nbf": rec.Issued,
		"iss": s.oauthBase(g.Realm), "aud": g.ClientID, "realm": g.Realm, "authGrantId": g.AuthGrantID,
		"auditTrackingId": rec.JTI, "auth_level": 0, "expires_in": max(0, rec.Expires-s.now().Unix()),
		"jti": rec.JTI, "grant_type": g.GrantType,
	}
	if g.Cnf != nil {
		out["cnf"] = g.Cnf // RFC 7662 §2.2 with RFC 7800: the resource server learns the binding here
	}
	for k, v := range g.Claims {
		if _, reserved := out[k]; !reserved {
			out[k] = v
		}
	}
	return out
}
