package sdk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Thing is an authenticated thing: the handlers that log it in through a tree, and the SSO session
// they produced. Calls to the things endpoint log in on first use and, when AM answers 401 and the
// session is no longer valid, log in again and retry once. A Thing is safe for concurrent use.
type Thing struct {
	client   *Client
	tree     string
	handlers []CallbackHandler

	mu      sync.Mutex // guards session; held while logging in so only one login runs
	session *Session
}

// NewThing returns a thing that authenticates through tree with handlers (see Authenticator,
// Registrar, SoftwareStatementHandler). It does not contact AM until Login or the first call.
func (c *Client) NewThing(tree string, handlers ...CallbackHandler) *Thing {
	return &Thing{client: c, tree: tree, handlers: handlers}
}

// Client returns the client the thing talks through.
func (t *Thing) Client() *Client { return t.client }

// Login walks the tree now and replaces the thing's session.
func (t *Thing) Login(ctx context.Context) (*Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loginLocked(ctx)
}

func (t *Thing) loginLocked(ctx context.Context) (*Session, error) {
	s, err := t.client.Authenticate(ctx, t.tree, t.handlers...)
	if err != nil {
		return nil, err
	}
	t.session = s
	return s, nil
}

// Session returns the current session, logging in if there is none.
func (t *Thing) Session(ctx context.Context) (*Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.session != nil {
		return t.session, nil
	}
	return t.loginLocked(ctx)
}

// renew logs in again unless another call already replaced the dead session.
func (t *Thing) renew(ctx context.Context, dead *Session) (*Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.session != nil && t.session != dead {
		return t.session, nil
	}
	return t.loginLocked(ctx)
}

// Valid reports whether the thing's current session is valid; false without a session.
func (t *Thing) Valid(ctx context.Context) (bool, error) {
	t.mu.Lock()
	s := t.session
	t.mu.Unlock()
	if s == nil {
		return false, nil
	}
	return s.Valid(ctx)
}

// Logout ends the thing's session at AM. A later call logs in again.
func (t *Thing) Logout(ctx context.Context) error {
	t.mu.Lock()
	s := t.session
	t.session = nil
	t.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.Logout(ctx)
}

// call sends a things-endpoint request in the thing's session, logging in again once when AM answers
// 401 and the session turns out to be dead.
func (t *Thing) call(ctx context.Context, op, method, url string, body map[string]any) ([]byte, error) {
	s, err := t.Session(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	reply, err := s.call(ctx, op, method, url, apiThings, body)
	if !errors.Is(err, ErrUnauthorized) {
		return reply, err
	}
	if !t.sessionDead(ctx, s) {
		return nil, err
	}
	t.client.log.DebugContext(ctx, "session no longer valid; authenticating again", "session", s.Fingerprint())
	s, err = t.renew(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("%s: re-authenticate: %w", op, err)
	}
	return s.call(ctx, op, method, url, apiThings, body)
}

// sessionDead asks AM after a 401. An explicit "not valid" is dead; so is an error reply (AM 7.x cannot
// validate restricted sessions with a signed body, OPENAM-19492, so its answer there is an error). A
// transport failure is not taken as proof of anything.
func (t *Thing) sessionDead(ctx context.Context, s *Session) bool {
	valid, err := s.Valid(ctx)
	if err != nil {
		var apiErr *APIError
		return errors.As(err, &apiErr)
	}
	return !valid
}

// AccessToken asks AM for an access token for the thing itself (get_access_token). Without scopes the
// thing's OAuth client's default scopes apply.
func (t *Thing) AccessToken(ctx context.Context, scopes ...string) (*Token, error) {
	body := map[string]any{}
	if len(scopes) > 0 {
		body["scope"] = scopes
	}
	return t.tokenCall(ctx, "get_access_token", body)
}

// RefreshToken exchanges a refresh token for a new token (get_access_token with refresh_token). Scopes
// may narrow the grant; asking for more fails with ErrInvalidScope, and a refresh token of another
// thing fails with ErrInvalidGrant.
func (t *Thing) RefreshToken(ctx context.Context, refreshToken string, scopes ...string) (*Token, error) {
	if refreshToken == "" {
		return nil, errors.New("refresh: empty refresh token")
	}
	body := map[string]any{"refresh_token": refreshToken}
	if len(scopes) > 0 {
		body["scope"] = scopes
	}
	return t.tokenCall(ctx, "refresh", body)
}

func (t *Thing) tokenCall(ctx context.Context, op string, body map[string]any) (*Token, error) {
	reply, err := t.call(ctx, op, http.MethodPost, t.client.ep.thingsAction("get_access_token"), body)
	if err != nil {
		return nil, err
	}
	return parseToken(op, reply, time.Now())
}
