package introspect

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestUpstreamGate: requests in flight are bounded over all sources, each source
// address has a token bucket (burst twice the rate, refilled with time), validations
// without a source are rated by the in-flight bound alone, and negative limits lift
// the bounds.
func TestUpstreamGate(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	busy := func(t *testing.T, err error, reason string) {
		t.Helper()
		var e *Error
		if !errors.Is(err, ErrBusy) || !errors.As(err, &e) || e.Reason != reason || e.ReasonCode() != 0x9F {
			t.Fatalf("error %v, want ErrBusy %q with reason code 0x9F", err, reason)
		}
	}
	src := func(a string) context.Context { return WithSource(context.Background(), a) }

	t.Run("in flight", func(t *testing.T) {
		g := newUpstreamGate(UpstreamLimits{MaxInFlight: 2, PerSourceRate: -1}, clock)
		r1, err1 := g.acquire(context.Background())
		r2, err2 := g.acquire(src("192.0.2.1"))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		_, err := g.acquire(src("192.0.2.2"))
		busy(t, err, ReasonUpstreamBusy)
		r1()
		r3, err := g.acquire(context.Background())
		if err != nil {
			t.Fatalf("after a release: %v", err)
		}
		r2()
		r3()
	})
	t.Run("per source", func(t *testing.T) {
		g := newUpstreamGate(UpstreamLimits{MaxInFlight: -1, PerSourceRate: 2}, clock)
		for i := range 4 { // the burst
			r, err := g.acquire(src("192.0.2.1"))
			if err != nil {
				t.Fatalf("request %d within the burst: %v", i, err)
			}
			r()
		}
		_, err := g.acquire(src("192.0.2.1"))
		busy(t, err, ReasonSourceRateExceeded)
		if _, err := g.acquire(src("192.0.2.2")); err != nil {
			t.Fatalf("another source: %v", err)
		}
		if _, err := g.acquire(context.Background()); err != nil {
			t.Fatalf("no source (a revocation re-check): %v", err)
		}
		now = now.Add(500 * time.Millisecond) // one token at 2/s
		if _, err := g.acquire(src("192.0.2.1")); err != nil {
			t.Fatalf("after refill: %v", err)
		}
		_, err = g.acquire(src("192.0.2.1"))
		busy(t, err, ReasonSourceRateExceeded)
	})
	t.Run("table bounded", func(t *testing.T) {
		g := newUpstreamGate(UpstreamLimits{MaxInFlight: -1, PerSourceRate: 1}, clock)
		for i := range maxSources + 10 {
			if i == maxSources {
				now = now.Add(time.Minute) // every bucket refilled: forgettable
			}
			if _, err := g.acquire(src(fmt.Sprint("s", i))); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(g.buckets); n > maxSources {
			t.Fatalf("%d buckets kept, want at most %d", n, maxSources)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		g := newUpstreamGate(UpstreamLimits{}, clock)
		if cap(g.slots) != DefaultMaxUpstream || g.rate != DefaultSourceRate {
			t.Fatalf("in flight %d, rate %v", cap(g.slots), g.rate)
		}
	})
}
