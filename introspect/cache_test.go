package introspect

import (
	"crypto/elliptic"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newCachedIntrospection wraps a real introspector against e in a cache on clock.
func newCachedIntrospection(t *testing.T, e *introspectionEndpoint, cfg CacheConfig) *Cache {
	in := newTestIntrospector(t, IntrospectionConfig{Endpoint: e.issuer() + "/introspect", ClientID: brokerClientID,
		ClientSecret: brokerClientSecret, Now: cfg.Now})
	return NewCache(in, cfg)
}

func TestCacheHitSharesToken(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	c := newCachedIntrospection(t, e, CacheConfig{})
	first, err := c.Validate(t.Context(), "active")
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Validate(t.Context(), "active")
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Error("a hit returned a different *Token")
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 1 || s.Upstream != 1 || s.Entries != 1 {
		t.Errorf("stats %+v", s)
	}
	if n := e.requests.Load(); n != 1 {
		t.Errorf("%d introspection requests", n)
	}
}

func TestCacheTTLNeverPastExp(t *testing.T) {
	k := newECKey(t, "k", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k)
	clock := newTestClock()
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), Now: clock.Now})
	c := NewCache(v, CacheConfig{MaxTTL: 5 * time.Minute, Now: clock.Now})
	claims := claimsFor(srv.issuer(), "a")
	claims["exp"] = clock.Now().Add(30 * time.Second).Unix()
	claims["iat"] = clock.Now().Unix()
	short := signJOSE(t, k, "JWT", claims)
	if _, err := c.Validate(t.Context(), short); err != nil {
		t.Fatal(err)
	}
	clock.Advance(28 * time.Second)
	if _, err := c.Validate(t.Context(), short); err != nil {
		t.Fatalf("before exp: %v", err)
	}
	if s := c.Stats(); s.Hits != 1 || s.Upstream != 1 {
		t.Fatalf("before exp: stats %+v", s)
	}
	clock.Advance(3 * time.Second)
	_, err := c.Validate(t.Context(), short)
	if r := reasonOf(t, err, ErrInvalidToken); r != ReasonExpired {
		t.Errorf("after exp: reason %q", r)
	}
	if s := c.Stats(); s.Hits != 1 || s.Upstream != 2 {
		t.Errorf("after exp: stats %+v (the entry outlived exp)", s)
	}

	// A long-lived token is re-checked after MaxTTL.
	c = NewCache(v, CacheConfig{MaxTTL: time.Minute, Now: clock.Now})
	claims["exp"] = clock.Now().Add(time.Hour).Unix()
	long := signJOSE(t, k, "JWT", claims)
	c.Validate(t.Context(), long)
	clock.Advance(59 * time.Second)
	c.Validate(t.Context(), long)
	clock.Advance(2 * time.Second)
	if _, err := c.Validate(t.Context(), long); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Hits != 1 || s.Upstream != 2 {
		t.Errorf("MaxTTL: stats %+v", s)
	}
}

func TestCacheNegative(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	clock := newTestClock()
	c := newCachedIntrospection(t, e, CacheConfig{NegativeTTL: 10 * time.Second, Now: clock.Now})
	for range 3 {
		_, err := c.Validate(t.Context(), "inactive")
		if r := reasonOf(t, err, ErrInvalidToken); r != ReasonInactive {
			t.Fatalf("reason %q", r)
		}
	}
	if s := c.Stats(); s.Upstream != 1 || s.NegativeHits != 2 || s.UpstreamInvalid != 1 {
		t.Errorf("stats %+v", s)
	}
	clock.Advance(11 * time.Second)
	c.Validate(t.Context(), "inactive")
	if s := c.Stats(); s.Upstream != 2 {
		t.Errorf("negative entry outlived NegativeTTL: %+v", s)
	}
	// Unavailable is never cached.
	for range 3 {
		_, err := c.Validate(t.Context(), "server-error")
		reasonOf(t, err, ErrUnavailable)
	}
	if s := c.Stats(); s.Upstream != 5 || s.UpstreamErrors != 3 {
		t.Errorf("unavailable answers cached: %+v", s)
	}
}

func TestCacheSingleFlight(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	release := e.holdAnswer("held")
	c := newCachedIntrospection(t, e, CacheConfig{})
	const n = 50
	tokens := make([]*Token, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { tokens[i], errs[i] = c.Validate(t.Context(), "held") })
	}
	waitFor(t, "all callers waiting", func() bool { return c.Stats().Misses == n })
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
	}
	if got := e.requests.Load(); got != 1 {
		t.Errorf("%d concurrent validations made %d upstream requests, want 1", n, got)
	}
	if s := c.Stats(); s.Upstream != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestCacheRevalidate(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	var revoked, broken atomic.Bool
	answer := e.answer("active")
	e.setAnswer("revocable", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case broken.Load():
			http.Error(w, "down", http.StatusServiceUnavailable)
		case revoked.Load():
			fmt.Fprint(w, `{"active":false}`)
		default:
			answer(w, r)
		}
	})
	c := newCachedIntrospection(t, e, CacheConfig{})
	if _, err := c.Validate(t.Context(), "revocable"); err != nil {
		t.Fatal(err)
	}
	broken.Store(true)
	_, err := c.Revalidate(t.Context(), "revocable")
	reasonOf(t, err, ErrUnavailable)
	if _, err := c.Validate(t.Context(), "revocable"); err != nil {
		t.Fatalf("an unavailable revalidation dropped the entry: %v", err)
	}
	broken.Store(false)
	revoked.Store(true)
	if _, err := c.Validate(t.Context(), "revocable"); err != nil {
		t.Fatalf("cached entry: %v", err)
	}
	_, err = c.Revalidate(t.Context(), "revocable")
	if r := reasonOf(t, err, ErrInvalidToken); r != ReasonInactive {
		t.Errorf("revalidate: reason %q", r)
	}
	_, err = c.Validate(t.Context(), "revocable")
	if r := reasonOf(t, err, ErrInvalidToken); r != ReasonInactive {
		t.Errorf("after revalidate: reason %q", r)
	}
	if s := c.Stats(); s.Upstream != 3 || s.NegativeHits != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestCacheForgetAndBound(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	var observed atomic.Int64
	c := newCachedIntrospection(t, e, CacheConfig{Size: 2, Observe: func(d time.Duration, err error) {
		if d <= 0 {
			t.Error("non-positive duration observed")
		}
		observed.Add(1)
	}})
	c.Validate(t.Context(), "active")
	c.Forget("active")
	c.Validate(t.Context(), "active")
	if s := c.Stats(); s.Upstream != 2 {
		t.Errorf("Forget kept the entry: %+v", s)
	}
	c.Validate(t.Context(), "active-aud")
	c.Validate(t.Context(), "no-exp")
	if s := c.Stats(); s.Entries != 2 {
		t.Errorf("%d entries with Size 2", s.Entries)
	}
	if got := observed.Load(); got != 4 {
		t.Errorf("%d observations, want 4", got)
	}
}

func TestCacheCallerGivesUp(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	release := e.holdAnswer("held")
	c := newCachedIntrospection(t, e, CacheConfig{})
	ctx, cancel := contextWithCancel(t)
	first := make(chan error, 1)
	go func() { _, err := c.Validate(ctx, "held"); first <- err }()
	waitFor(t, "the first caller waiting", func() bool { return c.Stats().Misses == 1 })
	second := make(chan error, 1)
	go func() { _, err := c.Validate(t.Context(), "held"); second <- err }()
	waitFor(t, "the second caller waiting", func() bool { return c.Stats().Misses == 2 })
	cancel()
	if r := reasonOf(t, <-first, ErrUnavailable); r != ReasonUpstreamNetwork {
		t.Errorf("cancelled caller: reason %q", r)
	}
	close(release)
	if err := <-second; err != nil {
		t.Errorf("the other caller failed with the first: %v", err)
	}
}
