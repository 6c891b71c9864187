package amdev

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"imb/amdev/store"
)

// A pairing is the association a user made with a thing (or a device client) by approving its device
// authorization request (§2.7 of the IoT guide): the grant of the tokens issued from that approval. The user
// lists their pairings and revokes one, which destroys the grant's tokens and tells the SSF receivers.
const (
	bucketPairings      = "pairings"       // by user (identityKey): []pairing
	bucketThingPairings = "thing_pairings" // by thing (identityKey): the users it is paired with
	// maxPairingTokens bounds the access tokens remembered per pairing (by hash, until they expire): a thing
	// refreshing every few minutes has a handful alive at once.
	maxPairingTokens = 32
	maxUserPairings  = 256
)

// pairing is one approved device grant.
type pairing struct {
	ID      string        `json:"id"` // the grant's authGrantId
	Thing   string        `json:"thing,omitempty"`
	Client  string        `json:"client"`
	Scopes  []string      `json:"scopes"`
	Created time.Time     `json:"created"`
	Expires time.Time     `json:"expires"` // when its last token, refresh tokens included, expires
	Tokens  []pairedToken `json:"tokens"`
}

// pairedToken is an access token of a pairing, by hash (what a token-revoked event names).
type pairedToken struct {
	Hash    string `json:"sha256"`
	Expires int64  `json:"exp"`
}

// issuePaired issues the tokens of g and, for a device grant, records them under the user's pairing.
func (s *Server) issuePaired(g grant, withRefresh bool) (tokenResponse, error) {
	if g.AuthGrantID == "" {
		g.AuthGrantID = randomToken(20) // the pairing's id, known before the tokens are
	}
	resp, err := s.issue(g, withRefresh)
	if err != nil || g.GrantType != grantDeviceCode || g.Subject == "" {
		return resp, err
	}
	now := s.now()
	access := now.Add(time.Duration(resp.ExpiresIn) * time.Second)
	until := access
	if resp.RefreshToken != "" {
		until = now.Add(time.Duration(s.provider(g.Realm).RefreshTokenLifetime))
	}
	if err := s.recordPairing(g, pairedToken{Hash: tokenHash(resp.AccessToken), Expires: access.Unix()}, until); err != nil {
		return tokenResponse{}, fmt.Errorf("record device pairing: %w", err)
	}
	return resp, nil
}

func (s *Server) recordPairing(g grant, tok pairedToken, until time.Time) error {
	s.pairMu.Lock()
	defer s.pairMu.Unlock()
	list, err := s.loadPairings(g.Realm, g.Subject)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(list, func(p pairing) bool { return p.ID == g.AuthGrantID })
	if i < 0 {
		if len(list) >= maxUserPairings {
			return errors.New("too many device pairings for one user")
		}
		list = append(list, pairing{ID: g.AuthGrantID, Thing: g.ThingID, Client: g.ClientID,
			Scopes: slices.Clone(g.Scopes), Created: s.now().UTC()})
		i = len(list) - 1
		if g.ThingID != "" {
			if err := s.indexThingPairing(g.Realm, g.ThingID, g.Subject, true); err != nil {
				return err
			}
		}
	}
	p := &list[i]
	p.Tokens = append(p.Tokens, tok)
	if n := len(p.Tokens); n > maxPairingTokens {
		p.Tokens = p.Tokens[n-maxPairingTokens:]
	}
	if until.After(p.Expires) {
		p.Expires = until.UTC()
	}
	return s.db.Put(bucketPairings, identityKey(g.Realm, g.Subject), list, time.Time{})
}

// loadPairings is a user's live pairings, their expired tokens left out.
func (s *Server) loadPairings(realm, user string) ([]pairing, error) {
	var list []pairing
	err := s.db.Get(bucketPairings, identityKey(realm, user), &list, s.now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	now := s.now()
	list = slices.DeleteFunc(list, func(p pairing) bool { return !now.Before(p.Expires) })
	for i := range list {
		list[i].Tokens = slices.DeleteFunc(list[i].Tokens, func(t pairedToken) bool { return now.Unix() >= t.Expires })
	}
	return list, nil
}

// indexThingPairing adds (or removes) user to the users a thing is paired with.
func (s *Server) indexThingPairing(realm, thing, user string, add bool) error {
	var users []string
	key := identityKey(realm, thing)
	if err := s.db.Get(bucketThingPairings, key, &users, s.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	has := slices.Contains(users, user)
	switch {
	case add && !has:
		users = append(users, user)
	case !add && has:
		users = slices.DeleteFunc(users, func(u string) bool { return u == user })
	default:
		return nil
	}
	if len(users) == 0 {
		_, err := s.db.Delete(bucketThingPairings, key)
		return err
	}
	return s.db.Put(bucketThingPairings, key, users, time.Time{})
}

// pairingOf is the pairing a grant belongs to, if it is one.
func (s *Server) pairingOf(g grant) (pairing, bool) {
	s.pairMu.Lock()
	defer s.pairMu.Unlock()
	list, err := s.loadPairings(g.Realm, g.Subject)
	if err != nil {
		return pairing{}, false
	}
	i := slices.IndexFunc(list, func(p pairing) bool { return p.ID == g.AuthGrantID })
	if i < 0 {
		return pairing{}, false
	}
	return list[i], true
}

// errNoPairing is a pairing that is not the user's, or no longer live.
var errNoPairing = errors.New("no such pairing")

// revokePairing ends one of user's pairings: its grant is revoked (every token issued from it, refresh tokens
// included, is inactive from now on), each of its live access tokens is named to the SSF receivers
// (token-revoked), and the thing's sessions are ended (CAEP session-revoked for the thing).
func (s *Server) revokePairing(realm, user, id, txn, reason string) (pairing, error) {
	s.pairMu.Lock()
	list, err := s.loadPairings(realm, user)
	if err != nil {
		s.pairMu.Unlock()
		return pairing{}, err
	}
	i := slices.IndexFunc(list, func(p pairing) bool { return p.ID == id })
	if i < 0 {
		s.pairMu.Unlock()
		return pairing{}, errNoPairing
	}
	p := list[i]
	list = slices.Delete(list, i, i+1)
	// Revoke first: a failure after it leaves a pairing listed whose tokens are dead, never the reverse.
	err = s.db.Put(bucketRevoked, "grant:"+p.ID, true, p.Expires.Add(time.Minute))
	if err == nil {
		err = s.db.Put(bucketPairings, identityKey(realm, user), list, time.Time{})
	}
	if err == nil && p.Thing != "" && !slices.ContainsFunc(list, func(q pairing) bool { return q.Thing == p.Thing }) {
		err = s.indexThingPairing(realm, p.Thing, user, false)
	}
	s.pairMu.Unlock()
	if err != nil {
		return pairing{}, fmt.Errorf("revoke pairing: %w", err)
	}
	if txn == "" {
		txn = randomToken(12)
	}
	for _, t := range p.Tokens {
		s.tokenRevokedEvent(realm, txn, t.Hash, reason)
	}
	if p.Thing != "" {
		s.subjectEvent(realm, txn, eventSessionRevoked, p.Thing, reason)
	}
	s.log.Info("device pairing revoked", "user", user, "thing", p.Thing, "client", p.Client, "tokens", len(p.Tokens))
	return p, nil
}

// revokePairingsOf revokes every pairing id takes part in, as the user or as the thing (an identity deleted).
func (s *Server) revokePairingsOf(realm, id, txn, reason string) {
	s.pairMu.Lock()
	own, err := s.loadPairings(realm, id)
	var users []string
	if err == nil {
		err = s.db.Get(bucketThingPairings, identityKey(realm, id), &users, s.now())
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	}
	s.pairMu.Unlock()
	if err != nil {
		s.log.Warn("pairings of a deleted identity not revoked", "id", id, "err", err)
		return
	}
	for _, p := range own {
		if _, err := s.revokePairing(realm, id, p.ID, txn, reason); err != nil && !errors.Is(err, errNoPairing) {
			s.log.Warn("pairing not revoked", "user", id, "err", err)
		}
	}
	for _, u := range users {
		list, err := s.pairingsOf(realm, u)
		if err != nil {
			s.log.Warn("pairings not read", "user", u, "err", err)
			continue
		}
		for _, p := range list {
			if p.Thing != id {
				continue
			}
			if _, err := s.revokePairing(realm, u, p.ID, txn, reason); err != nil && !errors.Is(err, errNoPairing) {
				s.log.Warn("pairing not revoked", "user", u, "thing", id, "err", err)
			}
		}
	}
	if len(users) > 0 {
		if _, err := s.db.Delete(bucketThingPairings, identityKey(realm, id)); err != nil {
			s.log.Warn("thing pairing index not removed", "thing", id, "err", err)
		}
	}
}

func (s *Server) pairingsOf(realm, user string) ([]pairing, error) {
	s.pairMu.Lock()
	defer s.pairMu.Unlock()
	return s.loadPairings(realm, user)
}

// pairingJSON is a pairing as the REST call and the page show it: no token, not even its hash.
func pairingJSON(p pairing) map[string]any {
	return map[string]any{"_id": p.ID, "thing": p.Thing, "client": p.Client, "scopes": p.Scopes,
		"created": p.Created.Format(time.RFC3339), "expires": p.Expires.Format(time.RFC3339)}
}

// handlePairings serves a user's device pairings: GET /json/realms/root/users/{user}/pairings lists them
// (CREST query result), DELETE .../pairings/{id} revokes one. The caller is the user signed in (SSO cookie
// or header), or the administrator.
func (s *Server) handlePairings(w http.ResponseWriter, r *http.Request, realm, user, id string) error {
	if err := requireMethod(r, http.MethodGet, http.MethodDelete); err != nil {
		return err
	}
	if !s.realmExists(realm) {
		return errNotFound()
	}
	caller := s.lookupSession(s.sessionToken(r))
	if caller == nil {
		return errAccessDenied()
	}
	if caller.kind != kindAdmin && !(caller.kind == kindUser && caller.uid == user && caller.realm == realm) {
		return errorf(http.StatusForbidden, "Access Denied")
	}
	switch {
	case r.Method == http.MethodGet && id == "":
		list, err := s.pairingsOf(realm, user)
		if err != nil {
			return err
		}
		out := make([]map[string]any, 0, len(list))
		for _, p := range list {
			out = append(out, pairingJSON(p))
		}
		writeJSON(w, http.StatusOK, map[string]any{"result": out, "resultCount": len(out),
			"pagedResultsCookie": nil, "remainingPagedResults": -1})
		return nil
	case r.Method == http.MethodDelete && id != "":
		p, err := s.revokePairing(realm, user, id, "", "pairing revoked by "+caller.uid)
		if errors.Is(err, errNoPairing) {
			return errNotFound()
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, pairingJSON(p))
		return nil
	}
	return errorf(http.StatusMethodNotAllowed, "Method %s not allowed", r.Method)
}
