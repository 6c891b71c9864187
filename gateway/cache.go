package gateway

import (
	"sync"
	"time"
)

// authCache keeps authIds behind their digests for a fixed lifetime; expired entries are dropped
// whenever a new one is stored, so the map cannot outgrow the number of rounds in one lifetime.
type authCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]authEntry
}

type authEntry struct {
	authID  string
	expires time.Time
}

func newAuthCache(ttl time.Duration) *authCache {
	return &authCache{ttl: ttl, now: time.Now, entries: map[string]authEntry{}}
}

func (c *authCache) put(digest, authID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for k, e := range c.entries {
		if now.After(e.expires) {
			delete(c.entries, k)
		}
	}
	c.entries[digest] = authEntry{authID: authID, expires: now.Add(c.ttl)}
}

func (c *authCache) get(digest string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[digest]
	if !ok || c.now().After(e.expires) {
		return "", false
	}
	return e.authID, true
}
