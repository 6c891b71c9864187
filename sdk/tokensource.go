package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// TokenSource supplies a valid access token on every call, hiding refresh (the x/oauth2 idiom, with a
// context because every call may reach AM).
type TokenSource interface {
	Token(ctx context.Context) (*Token, error)
}

// defaultRefreshBefore is how long before expiry a ThingTokenSource renews a token at most; for short
// lifetimes it renews after two thirds of the lifetime instead.
const defaultRefreshBefore = time.Minute

// ThingTokenSource is the TokenSource of a Thing: it caches the token, renews it shortly before it
// expires with the refresh token (narrowing nothing), and falls back to a fresh get_access_token when
// there is no refresh token or the refresh is refused. It is safe for concurrent use.
type ThingTokenSource struct {
	thing  *Thing
	scopes []string
	// RefreshBefore caps how early a token is renewed (default one minute); set it before first use.
	RefreshBefore time.Duration

	mu  sync.Mutex
	tok *Token
	key *Key // Bind: tokens are asked for bound to it
}

// Bind makes the source ask for tokens bound to k (cnf_key; see Thing.BoundAccessToken), k being a key
// the thing registered, and returns s. The MQTT dialer then proves k (IMB-POP) on every connection.
// Call it before first use.
func (s *ThingTokenSource) Bind(k *Key) *ThingTokenSource {
	s.key = k
	return s
}

// BoundKey is the key Bind set, nil for bearer tokens.
func (s *ThingTokenSource) BoundKey() *Key { return s.key }

// TokenSource returns a token source for access tokens with scopes (none: the client's defaults).
func (t *Thing) TokenSource(scopes ...string) *ThingTokenSource {
	return &ThingTokenSource{thing: t, scopes: scopes, RefreshBefore: defaultRefreshBefore}
}

// Token returns the cached token while it is fresh, otherwise a renewed one.
func (s *ThingTokenSource) Token(ctx context.Context) (*Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok.Valid() && !s.tok.ExpiresWithin(s.margin(s.tok)) {
		return s.tok, nil
	}
	if s.tok != nil && s.tok.RefreshToken != "" {
		tok, err := s.thing.RefreshToken(ctx, s.tok.RefreshToken, s.scopes...)
		if err == nil {
			if tok.RefreshToken == "" {
				tok.RefreshToken = s.tok.RefreshToken
			}
			s.tok = tok
			return tok, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		s.thing.client.log.DebugContext(ctx, "refresh refused; requesting a new token", "err", err)
	}
	var tok *Token
	var err error
	if s.key != nil {
		tok, err = s.thing.BoundAccessToken(ctx, s.key, s.scopes...)
	} else {
		tok, err = s.thing.AccessToken(ctx, s.scopes...)
	}
	if err != nil {
		return nil, err
	}
	s.tok = tok
	return tok, nil
}

// Reset drops the cached token, for example after the broker refused it; the next Token call renews.
func (s *ThingTokenSource) Reset() {
	s.mu.Lock()
	s.tok = nil
	s.mu.Unlock()
}

// margin is how long before expiry tok is renewed: RefreshBefore, or a third of the lifetime if less.
func (s *ThingTokenSource) margin(tok *Token) time.Duration { return renewMargin(s.RefreshBefore, tok) }

// UserTokenSource is the TokenSource of a user token a thing obtained through the device
// authorization grant (UserToken): it renews the token with its refresh token shortly before it
// expires. There is no fallback: when the refresh is refused, the user has to approve the thing
// again, and Token returns the error (errors.Is ErrInvalidGrant). It is safe for concurrent use.
type UserTokenSource struct {
	thing *Thing
	// RefreshBefore caps how early the token is renewed (default one minute); set it before first use.
	RefreshBefore time.Duration

	mu    sync.Mutex
	tok   *Token
	stale bool
}

// UserTokenSource returns a token source that starts with tok, a user token with a refresh token.
func (t *Thing) UserTokenSource(tok *Token) *UserTokenSource {
	return &UserTokenSource{thing: t, tok: tok, RefreshBefore: defaultRefreshBefore}
}

// Token returns the token while it is fresh, otherwise the one its refresh token gives.
func (s *UserTokenSource) Token(ctx context.Context) (*Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil {
		return nil, errors.New("user token source: no token")
	}
	if !s.stale && s.tok.Valid() && !s.tok.ExpiresWithin(renewMargin(s.RefreshBefore, s.tok)) {
		return s.tok, nil
	}
	if s.tok.RefreshToken == "" {
		return nil, errors.New("user token source: the token expired and has no refresh token; ask the user again")
	}
	tok, err := s.thing.RefreshToken(ctx, s.tok.RefreshToken)
	if err != nil {
		return nil, fmt.Errorf("user token source: refresh: %w", err)
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = s.tok.RefreshToken
	}
	s.tok, s.stale = tok, false
	return tok, nil
}

// Reset makes the next Token call refresh, for example after the broker refused the token.
func (s *UserTokenSource) Reset() {
	s.mu.Lock()
	s.stale = true
	s.mu.Unlock()
}

// renewMargin is how long before expiry tok is renewed: before, or a third of the lifetime if less.
func renewMargin(before time.Duration, tok *Token) time.Duration {
	m := before
	if m <= 0 {
		m = defaultRefreshBefore
	}
	if life := time.Duration(tok.ExpiresIn) * time.Second; life > 0 && life/3 < m {
		m = life / 3
	}
	return m
}

// OAuth2 adapts a TokenSource to golang.org/x/oauth2, for oauth2.NewClient and friends; ctx bounds
// every renewal.
func OAuth2(ctx context.Context, ts TokenSource) oauth2.TokenSource {
	return oauth2TokenSource{ctx: ctx, ts: ts}
}

type oauth2TokenSource struct {
	ctx context.Context
	ts  TokenSource
}

// Token implements oauth2.TokenSource.
func (o oauth2TokenSource) Token() (*oauth2.Token, error) {
	tok, err := o.ts.Token(o.ctx)
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, errors.New("token source returned no token")
	}
	return &oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry, ExpiresIn: tok.ExpiresIn}, nil
}
