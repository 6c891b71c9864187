package amdev

import (
	"errors"
	"fmt"
	"time"
)

// Bounds of the replay cache of client assertions. An entry lives until its
// assertion expires (at most assertionMaxLifetime plus the clock skew), and
// only assertions signed by a registered thing key get that far, so these
// bounds are reached only by a flood; the flooding issuer is then refused
// first, and nobody's assertion is ever forgotten early (that would let it be
// replayed).
const (
	maxSeenAssertions          = 100_000
	maxSeenAssertionsPerIssuer = 1_000
)

// replayCache remembers the client assertions (RFC 7523) already used, by
// issuer and jti, until they expire.
type replayCache struct {
	max, perIssuer int
	entries        map[string]seenAssertion
	byIssuer       map[string]int
}

type seenAssertion struct {
	issuer  string
	expires time.Time
}

func newReplayCache(max, perIssuer int) *replayCache {
	return &replayCache{max: max, perIssuer: perIssuer, entries: map[string]seenAssertion{}, byIssuer: map[string]int{}}
}

var errReplayed = errors.New("assertion replayed")

// remember records issuer's assertion id until expires. It refuses an id seen
// before, and a new one when the issuer or the whole cache holds its share.
func (c *replayCache) remember(issuer, id string, expires, now time.Time) error {
	key := issuer + "\x00" + id
	if e, ok := c.entries[key]; ok && now.Before(e.expires) {
		return errReplayed
	}
	if c.byIssuer[issuer] >= c.perIssuer || len(c.entries) >= c.max {
		c.sweep(now)
	}
	if c.byIssuer[issuer] >= c.perIssuer {
		return fmt.Errorf("%d unexpired client assertions of %s already: refused until some expire", c.perIssuer, quote(issuer))
	}
	if len(c.entries) >= c.max {
		return fmt.Errorf("%d unexpired client assertions already: refused until some expire", c.max)
	}
	c.entries[key] = seenAssertion{issuer: issuer, expires: expires}
	c.byIssuer[issuer]++
	return nil
}

// sweep forgets the assertions that have expired (they fail the exp check now).
func (c *replayCache) sweep(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			c.forget(k, e)
		}
	}
}

func (c *replayCache) forget(key string, e seenAssertion) {
	delete(c.entries, key)
	if c.byIssuer[e.issuer]--; c.byIssuer[e.issuer] <= 0 {
		delete(c.byIssuer, e.issuer)
	}
}
