package introspect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// Cache defaults.
const (
	DefaultCacheSize   = 10000
	DefaultMaxTTL      = 5 * time.Minute
	DefaultNegativeTTL = 10 * time.Second
)

// CacheConfig bounds the cache.
type CacheConfig struct {
	// Size is the maximum number of entries (default DefaultCacheSize); the least recently used entry goes first.
	Size int
	// MaxTTL caps how long a valid token is trusted without asking again (default DefaultMaxTTL); an entry never
	// outlives the token's exp. It is also the revocation delay for introspected tokens.
	MaxTTL time.Duration
	// NegativeTTL is how long an ErrInvalidToken answer is remembered (default DefaultNegativeTTL; negative
	// disables). ErrUnavailable answers are never cached: the next attempt asks again.
	NegativeTTL time.Duration
	// Observe, when set, is called after every upstream validation with its duration and outcome (for a latency
	// histogram). It runs on the goroutine making the upstream call and must be quick.
	Observe func(elapsed time.Duration, err error)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Stats are cumulative counters since the cache was built, plus the current entry count.
type Stats struct {
	Hits            uint64 // answered from a valid entry
	NegativeHits    uint64 // answered from a cached ErrInvalidToken
	Misses          uint64 // no usable entry: joined or started an upstream validation
	Upstream        uint64 // upstream validations run (concurrent misses of one token share one)
	UpstreamErrors  uint64 // upstream validations that ended in ErrUnavailable
	UpstreamInvalid uint64 // upstream validations that ended in ErrInvalidToken
	Entries         int
}

// cacheEntry is immutable once stored.
type cacheEntry struct {
	tok   *Token
	err   error
	until int64 // Unix nanoseconds; the entry is unusable from then on
}

// Cache wraps a Validator with an LRU keyed by the SHA-256 of the token, so tokens themselves are never kept.
// Concurrent validations of one token collapse into one upstream call. A hit returns the *Token stored by the miss
// (shared, read-only) and allocates nothing. Cache is safe for concurrent use and implements Validator and Readier.
type Cache struct {
	v       Validator
	entries *lru.Cache[[sha256.Size]byte, *cacheEntry]
	flight  singleflight.Group
	maxTTL  time.Duration
	negTTL  time.Duration
	observe func(time.Duration, error)
	now     func() time.Time

	hits, negHits, misses, upstream, upErrs, upInvalid atomic.Uint64
}

// NewCache wraps v.
func NewCache(v Validator, cfg CacheConfig) *Cache {
	cfg.Size = positiveOr(cfg.Size, DefaultCacheSize)
	cfg.MaxTTL = positiveOr(cfg.MaxTTL, DefaultMaxTTL)
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	entries, err := lru.New[[sha256.Size]byte, *cacheEntry](cfg.Size)
	if err != nil { // only for a non-positive size, excluded above
		panic(err)
	}
	return &Cache{v: v, entries: entries, maxTTL: cfg.MaxTTL, negTTL: cfg.NegativeTTL, observe: cfg.Observe,
		now: cfg.Now}
}

// Validate answers from the cache when it holds a live entry for token, else validates upstream (sharing an
// upstream call already in flight for the same token) and remembers the outcome.
func (c *Cache) Validate(ctx context.Context, token string) (*Token, error) {
	key := tokenKey(token)
	if e, ok := c.entries.Get(key); ok && c.now().UnixNano() < e.until {
		if e.err != nil {
			c.negHits.Add(1)
			return nil, e.err
		}
		c.hits.Add(1)
		return e.tok, nil
	}
	c.misses.Add(1)
	return c.load(ctx, key, token)
}

// tokenKey is the cache key of a token: its SHA-256. The string is hashed in place: converting it to []byte would
// copy (and allocate) the whole token on every hit, and sha256 only reads its input.
func tokenKey(token string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// Revalidate validates token upstream whatever the cache holds (for periodic revocation checks) and replaces the
// entry with the outcome. On ErrUnavailable the existing entry is left alone.
func (c *Cache) Revalidate(ctx context.Context, token string) (*Token, error) {
	return c.load(ctx, tokenKey(token), token)
}

// Purge drops every entry: after the key set was reloaded, no token is accepted on the strength of a removed key.
func (c *Cache) Purge() { c.entries.Purge() }

// Forget drops the entry for token, if any.
func (c *Cache) Forget(token string) {
	c.entries.Remove(tokenKey(token))
}

// Refuse makes the token whose SHA-256 is hash (hex) invalid here for the cache's
// longest TTL, whatever was cached: another node of a cluster found it revoked.
// After that an upstream check says so itself. A malformed hash is ignored.
func (c *Cache) Refuse(hash string) {
	var key [sha256.Size]byte
	if n, err := hex.Decode(key[:], []byte(hash)); err != nil || n != sha256.Size {
		return
	}
	c.entries.Add(key, &cacheEntry{err: &Error{Kind: ErrInvalidToken, Reason: "token revoked"},
		until: c.now().Add(c.maxTTL).UnixNano()})
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), NegativeHits: c.negHits.Load(), Misses: c.misses.Load(),
		Upstream: c.upstream.Load(), UpstreamErrors: c.upErrs.Load(), UpstreamInvalid: c.upInvalid.Load(),
		Entries: c.entries.Len(),
	}
}

// Ready delegates to the wrapped validator when it is a Readier.
func (c *Cache) Ready(ctx context.Context) error {
	if r, ok := c.v.(Readier); ok {
		return r.Ready(ctx)
	}
	return nil
}

// load runs one upstream validation per token at a time. The upstream call is detached from the cancellation of
// the caller that started it (the validators bound their own network time), so one caller giving up does not fail
// the others waiting on the same token; each caller still stops waiting when its own ctx ends.
func (c *Cache) load(ctx context.Context, key [sha256.Size]byte, token string) (*Token, error) {
	ch := c.flight.DoChan(string(key[:]), func() (any, error) {
		c.upstream.Add(1)
		start := time.Now()
		tok, err := c.v.Validate(context.WithoutCancel(ctx), token)
		if c.observe != nil {
			c.observe(time.Since(start), err)
		}
		c.store(key, tok, err)
		return tok, err
	})
	select {
	case r := <-ch:
		tok, _ := r.Val.(*Token)
		return tok, r.Err
	case <-ctx.Done():
		return nil, unavailable(ReasonUpstreamNetwork, ctx.Err())
	}
}

// store remembers an outcome: a valid token until min(MaxTTL, exp), an invalid one for NegativeTTL, an
// unavailable one not at all.
func (c *Cache) store(key [sha256.Size]byte, tok *Token, err error) {
	now := c.now()
	switch {
	case err == nil && tok != nil:
		until := now.Add(c.maxTTL)
		if !tok.Expiry.IsZero() && tok.Expiry.Before(until) {
			until = tok.Expiry
		}
		if until.After(now) {
			c.entries.Add(key, &cacheEntry{tok: tok, until: until.UnixNano()})
		} else {
			c.entries.Remove(key)
		}
	case errors.Is(err, ErrInvalidToken):
		c.upInvalid.Add(1)
		if c.negTTL > 0 {
			c.entries.Add(key, &cacheEntry{err: err, until: now.Add(c.negTTL).UnixNano()})
		} else {
			c.entries.Remove(key)
		}
	default:
		c.upErrs.Add(1)
	}
}
