package mqtt

import (
	"context"
	"sync"
	"time"

	"imb/sdk"
)

// tokenState is what every connection tracks: the token the broker accepted, when it was taken, and
// the first error that ended the connection or its renewals.
type tokenState struct {
	mu     sync.Mutex
	tok    *sdk.Token
	issued time.Time
	err    error
}

// Token returns the token the broker last accepted.
func (s *tokenState) Token() *sdk.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

// Err returns why the connection ended or could not renew its token (a *ReasonError for a broker
// refusal), or nil.
func (s *tokenState) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *tokenState) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && err != nil {
		s.err = err
	}
}

func (s *tokenState) current() (*sdk.Token, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok, s.issued
}

func (s *tokenState) use(tok *sdk.Token) {
	s.mu.Lock()
	s.tok, s.issued = tok, time.Now()
	s.mu.Unlock()
}

// nextToken waits until the current token is due for renewal and returns its successor. It returns
// nil, nil when the token never expires and ctx ends, or ctx's error.
func (d *Dialer) nextToken(ctx context.Context, s *tokenState) (*sdk.Token, error) {
	tok, issued := s.current()
	at := d.renewAt(tok, issued)
	if at.IsZero() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
	}
	return d.freshToken(ctx, tok)
}
