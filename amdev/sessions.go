package amdev

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type sessionKind int

const (
	kindThing sessionKind = iota + 1
	kindUser
	kindAdmin
)

// session is an SSO session. Sessions live in memory: after a restart things
// get 401 and, as the SDK does, log in again.
type session struct {
	token      string
	realm      string
	uid        string
	kind       sessionKind
	restricted bool
	key        *jose.JSONWebKey // proven key; verifies signed requests
	lastNonce  int64
	nonceUsed  bool
	expires    time.Time
	uidHandle  string // sessionUid reported by validate
}

// newSession creates and registers a session.
func (s *Server) newSession(realm, uid string, kind sessionKind, restricted bool, key *jose.JSONWebKey) *session {
	ss := &session{
		token:      randomToken(32) + ".*",
		realm:      realm,
		uid:        uid,
		kind:       kind,
		restricted: restricted && key != nil,
		key:        key,
		expires:    s.now().Add(time.Duration(s.settings.SessionLifetime)),
		uidHandle:  randomToken(12),
	}
	s.mu.Lock()
	s.sessions[ss.token] = ss
	s.mu.Unlock()
	return ss
}

// randomToken is n random bytes, base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // the OS random source is gone: nothing can be secure
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionToken is the SSO token of a request: the cookie, else the header named like it.
func (s *Server) sessionToken(r *http.Request) string {
	if c, err := r.Cookie(s.settings.CookieName); err == nil && c.Value != "" {
		return c.Value
	}
	return r.Header.Get(s.settings.CookieName)
}

// lookupSession returns the live session for token, or nil.
func (s *Server) lookupSession(token string) *session {
	if token == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[token]
	if ss == nil {
		return nil
	}
	if !s.now().Before(ss.expires) {
		delete(s.sessions, token)
		return nil
	}
	return ss
}

func (s *Server) endSession(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sessions[token]
	delete(s.sessions, token)
	return ok
}

func isJOSE(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/jose"
}

// readBody returns the request object of a session-bound call: the JSON body,
// or the payload of a signed (application/jose) body after the checks of
// §7.2. A restricted session accepts only signed bodies.
func (s *Server) readBody(r *http.Request, ss *session) (map[string]any, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, errBadRequest("Unable to read request body").with(err)
	}
	if isJOSE(r) {
		return s.verifySignedRequest(r, ss, string(data))
	}
	if ss != nil && ss.restricted {
		return nil, errForbidden("Restricted token requires a signed request")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return map[string]any{}, nil
	}
	m, err := decodeObject(data)
	if err != nil {
		return nil, errBadRequest("The request body is not a JSON object").with(err)
	}
	return m, nil
}

// verifySignedRequest checks a signed request in the order of §7.2: the JWS
// parses, its alg fits and its signature verifies with the session's key, aud
// is the request URL, api is the request's Accept-API-Version, nonce is an
// integer above the last one and csrf is the session token.
func (s *Server) verifySignedRequest(r *http.Request, ss *session, raw string) (map[string]any, error) {
	jws, err := parseCompactJWS(raw)
	if err != nil {
		return nil, errBadRequest("Invalid signed request").with(err)
	}
	if ss.key == nil {
		return nil, errForbidden("Session has no proof-of-possession key")
	}
	if err := jws.verify(ss.key.Key); err != nil {
		return nil, errForbidden("Signed request verification failed").with(err)
	}
	if aud := jws.headerString("aud"); !s.isRequestURL(r, aud) {
		return nil, errForbidden("Signed request audience does not match the request URL")
	}
	if api, ok := jws.header["api"].(string); !ok || api != r.Header.Get("Accept-API-Version") {
		return nil, errForbidden("Signed request api does not match Accept-API-Version")
	}
	num, ok := jws.header["nonce"].(json.Number)
	if !ok {
		return nil, errForbidden("Signed request nonce must be an integer")
	}
	nonce, err := num.Int64()
	if err != nil {
		return nil, errForbidden("Signed request nonce must be an integer")
	}
	claims, err := jws.claims()
	if err != nil {
		return nil, errBadRequest("Invalid signed request").with(err)
	}
	if csrf, _ := claims["csrf"].(string); csrf != ss.token {
		return nil, errForbidden("Signed request csrf does not match the session")
	}
	s.mu.Lock()
	stale := ss.nonceUsed && nonce <= ss.lastNonce
	if !stale {
		ss.lastNonce, ss.nonceUsed = nonce, true
	}
	s.mu.Unlock()
	if stale {
		return nil, errForbidden("Signed request nonce is not greater than the previous one")
	}
	delete(claims, "csrf")
	return claims, nil
}

// handleSessions serves /json/sessions?_action=validate|logout|getSessionInfo.
func (s *Server) handleSessions(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	if err := checkResource(r, "1", "2", "3", "4", "5"); err != nil {
		return err
	}
	action := r.URL.Query().Get("_action")
	if action != "validate" && action != "logout" && action != "getSessionInfo" {
		return errBadRequest("Action %s not supported", quote(action))
	}
	caller := s.lookupSession(s.sessionToken(r))
	target := caller
	if caller == nil && action == "getSessionInfo" {
		// Administration clients (Frodo) name their own session in the body
		// only: holding the token is what proves it is theirs.
		var body struct {
			TokenID string `json:"tokenId"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body) // a body without tokenId names no session
		target = s.lookupSession(body.TokenID)
	}
	if caller != nil {
		body, err := s.readBody(r, caller)
		if err != nil {
			return err
		}
		if tid, ok := body["tokenId"].(string); ok && tid != caller.token {
			// Another session named in the body: only the admin may ask.
			if caller.kind != kindAdmin {
				return errForbidden("Access Denied")
			}
			target = s.lookupSession(tid)
		}
	}
	if action == "validate" {
		if target == nil {
			writeJSON(w, http.StatusOK, map[string]any{"valid": false})
			return nil
		}
		writeJSON(w, http.StatusOK, map[string]any{"valid": true, "sessionUid": target.uidHandle, "uid": target.uid,
			"realm": target.realm})
		return nil
	}
	if action == "getSessionInfo" {
		if target == nil {
			return errorf(http.StatusUnauthorized, "Access Denied")
		}
		username := target.uid
		if target.kind == kindAdmin {
			username = s.settings.Admin.Username
		}
		exp := target.expires.UTC().Format(time.RFC3339)
		writeJSON(w, http.StatusOK, map[string]any{"username": username, "universalId": "id=" + username + ",ou=user,dc=openam,dc=forgerock,dc=org",
			"realm": target.realm, "latestAccessTime": s.now().UTC().Format(time.RFC3339),
			"maxIdleExpirationTime": exp, "maxSessionExpirationTime": exp, "properties": map[string]any{}})
		return nil
	}
	if target == nil || !s.endSession(target.token) {
		return errorf(http.StatusUnauthorized, "Access Denied")
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": "Successfully logged out"})
	return nil
}
