package amdev

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxThrottleEntries bounds each throttle's memory; beyond it the entries
// that hold nothing back any more go first, then arbitrary ones.
const maxThrottleEntries = 10_000

// throttle counts failed guesses (passwords, user codes) by key: an account
// or a source address. limit failures within window lock the key for
// window. A locked key is refused without looking at the guess, so a lock
// also stops an attacker from learning whether a guess was right.
type throttle struct {
	limit   int
	window  time.Duration
	entries map[string]*failures
}

type failures struct {
	count       int
	since       time.Time
	lockedUntil time.Time
}

func newThrottle(limit int, window time.Duration) *throttle {
	return &throttle{limit: limit, window: window, entries: map[string]*failures{}}
}

// locked returns how long key stays locked (0: not locked).
func (t *throttle) locked(key string, now time.Time) time.Duration {
	if f := t.entries[key]; f != nil && now.Before(f.lockedUntil) {
		return f.lockedUntil.Sub(now)
	}
	return 0
}

// fail counts one failure of key.
func (t *throttle) fail(key string, now time.Time) {
	f := t.entries[key]
	if f == nil {
		if len(t.entries) >= maxThrottleEntries {
			t.evict(now)
		}
		f = &failures{}
		t.entries[key] = f
	}
	if now.Sub(f.since) > t.window {
		f.count, f.since = 0, now
	}
	if f.count++; f.count >= t.limit {
		f.lockedUntil, f.count = now.Add(t.window), 0
	}
}

// succeed forgets key's failures.
func (t *throttle) succeed(key string) { delete(t.entries, key) }

func (t *throttle) evict(now time.Time) {
	for k, f := range t.entries {
		if now.Sub(f.since) > t.window && !now.Before(f.lockedUntil) {
			delete(t.entries, k)
		}
	}
	for k := range t.entries {
		if len(t.entries) < maxThrottleEntries {
			return
		}
		delete(t.entries, k)
	}
}

// guessGuard throttles one kind of guess per account and per source address.
type guessGuard struct {
	account, source *throttle
}

func newGuessGuard(l LoginThrottle) *guessGuard {
	w := time.Duration(l.Duration)
	return &guessGuard{account: newThrottle(l.AccountFailures, w), source: newThrottle(l.SourceFailures, w)}
}

// check refuses a guess while its account or source is locked: 401 "Your
// account has been locked." as AM's memory lockout answers, or 429 for the
// address; both with Retry-After.
func (g *guessGuard) check(account, source string, now time.Time) *httpError {
	if d := g.account.locked(account, now); d > 0 {
		return lockedError(http.StatusUnauthorized, "Your account has been locked.", d)
	}
	if d := g.source.locked(source, now); d > 0 {
		return lockedError(http.StatusTooManyRequests, "Too many failed attempts from this address; try again later.", d)
	}
	return nil
}

func (g *guessGuard) fail(account, source string, now time.Time) {
	g.account.fail(account, now)
	g.source.fail(source, now)
}

func (g *guessGuard) succeed(account string) { g.account.succeed(account) }

func lockedError(status int, msg string, d time.Duration) *httpError {
	e := errorf(status, "%s", msg)
	e.retryAfter = strconv.Itoa(int((d + time.Second - 1) / time.Second))
	return e
}

// accountKey names an account for throttling: the realm and the name as
// typed, case-folded as AM's directory compares names.
func accountKey(realm, user string) string { return realm + "\x00" + strings.ToLower(user) }

// checkLogin checks a password login under the password throttle. ok false
// with a nil error is a plain login failure.
func (s *Server) checkLogin(r *http.Request, realm, user, pw string) (id string, admin bool, err error) {
	acct, src, now := accountKey(realm, user), sourceAddr(r), s.now()
	s.mu.Lock()
	herr := s.passwordGuard.check(acct, src, now)
	s.mu.Unlock()
	if herr != nil {
		return "", false, herr
	}
	id, admin, ok := s.checkUserPassword(realm, user, pw)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		s.passwordGuard.fail(acct, src, s.now())
		return "", false, errLoginFailure()
	}
	s.passwordGuard.succeed(acct)
	return id, admin, nil
}
