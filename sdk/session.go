package sdk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
)

// Session is an AM SSO session. A PoP session (one whose last authentication round proved a key)
// signs every request body with that key: a JWS whose protected header carries aud (the exact request
// URL), api (the exact Accept-API-Version) and an integer nonce that starts at 0 and grows by one with
// every request, failed ones included. Requests of one session are sent one at a time so that the
// nonces reach AM in order. A Session is safe for concurrent use.
type Session struct {
	client *Client
	token  string
	key    *Key

	mu    sync.Mutex // held for the whole of a request: nonce order must be AM's arrival order
	nonce int64
}

func newSession(c *Client, token string, key *Key) *Session {
	return &Session{client: c, token: token, key: key}
}

// ProofOfPossession reports whether requests of this session are signed.
func (s *Session) ProofOfPossession() bool { return s.key != nil }

// Fingerprint identifies the session in logs: a short hash prefix, never the token.
func (s *Session) Fingerprint() string { return Fingerprint(s.token) }

// SSOToken returns the SSO token (AM's tokenId). It is a bearer secret: never log it.
func (s *Session) SSOToken() string { return s.token }

// String names the session by fingerprint.
func (s *Session) String() string { return "session " + s.Fingerprint() }

// Fingerprint returns the first 12 hex digits of the SHA-256 of a secret, to identify it in logs.
func Fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:6])
}

// call sends one request in the session: a JWS body for PoP sessions, JSON (or nothing, for a nil body
// and a GET) otherwise.
func (s *Session) call(ctx context.Context, op, method, url, api string, body map[string]any) ([]byte, error) {
	status, reply, err := s.roundTrip(ctx, op, method, url, api, body)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusOK, http.StatusCreated, http.StatusNoContent, http.StatusNotModified:
		return reply, nil
	}
	return nil, newAPIError(op, status, reply)
}

func (s *Session) roundTrip(ctx context.Context, op, method, url, api string, body map[string]any) (int, []byte, error) {
	r := httpRequest{method: method, url: url, api: api, ssoToken: s.token, contentType: contentJSON}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil {
		nonce := s.nonce
		s.nonce++
		jws, err := signedRequest(s.key, url, api, nonce, body, s.token)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", op, err)
		}
		r.body, r.contentType = []byte(jws), contentJOSE
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: encode: %w", op, err)
		}
		r.body = b
	}
	return s.client.roundTrip(ctx, op, r)
}

// Valid asks AM whether the session is still valid. 401 means "not valid"; other failures are errors.
func (s *Session) Valid(ctx context.Context) (bool, error) {
	var body map[string]any
	if s.key != nil {
		body = map[string]any{}
	}
	status, reply, err := s.roundTrip(ctx, "validate session", http.MethodPost, s.client.ep.sessions("validate"), apiSessions, body)
	if err != nil {
		return false, err
	}
	switch status {
	case http.StatusOK:
		var v struct {
			Valid bool `json:"valid"`
		}
		if err := json.Unmarshal(reply, &v); err != nil {
			return false, fmt.Errorf("validate session: decode: %w", err)
		}
		return v.Valid, nil
	case http.StatusUnauthorized:
		return false, nil
	}
	return false, newAPIError("validate session", status, reply)
}

// Logout ends the session at AM.
func (s *Session) Logout(ctx context.Context) error {
	var body map[string]any
	if s.key != nil {
		body = map[string]any{}
	}
	status, reply, err := s.roundTrip(ctx, "logout", http.MethodPost, s.client.ep.sessions("logout"), apiSessions, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return newAPIError("logout", status, reply)
	}
	return nil
}

// Login logs an identity in with AM's zero-page header login (X-OpenAM-Username/Password), as a human
// user or an administrator does; the session is unrestricted.
func (c *Client) Login(ctx context.Context, username, password string) (*Session, error) {
	u := c.ep.base + "/json/authenticate"
	if c.realm != "" {
		u = c.ep.authenticateRealmOnly()
	}
	h := http.Header{}
	h.Set("X-OpenAM-Username", username)
	h.Set("X-OpenAM-Password", password)
	status, reply, err := c.roundTrip(ctx, "login", httpRequest{
		method: http.MethodPost, url: u, api: "resource=2.0, protocol=1.0", contentType: contentJSON, header: h,
	})
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("login %s: %w: %w", username, ErrAuthenticationFailed, newAPIError("login", status, reply))
	}
	var p authPayload
	if err := json.Unmarshal(reply, &p); err != nil {
		return nil, fmt.Errorf("login %s: decode: %w", username, err)
	}
	if p.TokenID == "" {
		return nil, fmt.Errorf("login %s: %w: no tokenId", username, ErrAuthenticationFailed)
	}
	return newSession(c, p.TokenID, nil), nil
}
