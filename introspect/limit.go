package introspect

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ErrBusy marks a validation refused before any request was sent, because upstream
// validations are at their bound (all sources together, or the share of the
// client's source address). It says nothing about the token: the client may retry
// later. The broker answers it with CONNACK 0x9F Connection rate exceeded.
var ErrBusy = errors.New("too many upstream validations")

// ReasonCodeRateExceeded is the MQTT 5 reason code of an ErrBusy refusal.
const ReasonCodeRateExceeded byte = 0x9F

// Reasons of an ErrBusy refusal.
const (
	ReasonUpstreamBusy       = "too many validations in flight at the identity provider"
	ReasonSourceRateExceeded = "too many new tokens from this address"
)

// Defaults of UpstreamLimits.
const (
	// DefaultMaxUpstream is the default bound on introspection requests in flight:
	// as many as the default connections to the endpoint, so that a request never
	// waits in the HTTP client's queue behind a flood.
	DefaultMaxUpstream = DefaultMaxConnsPerHost
	// DefaultSourceRate is the default rate of introspection requests per source
	// address, per second, with a burst of twice that: a thing reconnects with a
	// known (cached) token, so only new tokens count, and a site of things behind one
	// NAT address that all reconnect at once is spread over a few seconds.
	DefaultSourceRate = 20
)

// UpstreamLimits bounds the introspection requests unauthenticated clients can cause:
// every unknown token in a CONNECT costs one request made with the broker's
// privileged credentials.
type UpstreamLimits struct {
	// MaxInFlight bounds requests in flight over all sources (0: DefaultMaxUpstream;
	// negative: no bound). Beyond it a validation fails at once with ErrBusy: a queue
	// would only make every client wait behind the flood.
	MaxInFlight int
	// PerSourceRate is the requests per second one source address may cause, with a
	// burst of twice that (0: DefaultSourceRate; negative: no bound). The source is
	// taken from the context (WithSource); validations without one, such as the
	// broker's own revocation re-checks, are not rated.
	PerSourceRate float64
}

type sourceKey struct{}

// WithSource tells the validators which network address a validation is made for,
// so that upstream requests can be rated per source.
func WithSource(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, sourceKey{}, addr)
}

// upstreamGate enforces UpstreamLimits. Its per-source buckets are the same
// token buckets (golang.org/x/time/rate) as the per-identity limits of the
// broker's hook: before authentication the source address is the only identity.
type upstreamGate struct {
	slots chan struct{} // nil: no bound in flight
	rate  rate.Limit    // tokens per second; 0: no per-source bound
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// maxSources bounds the per-source table; beyond it buckets that have refilled are
// forgotten (a full bucket is the same as no bucket).
const maxSources = 1 << 16

func newUpstreamGate(l UpstreamLimits, now func() time.Time) *upstreamGate {
	g := &upstreamGate{now: now, buckets: map[string]*rate.Limiter{}}
	switch {
	case l.MaxInFlight == 0:
		g.slots = make(chan struct{}, DefaultMaxUpstream)
	case l.MaxInFlight > 0:
		g.slots = make(chan struct{}, l.MaxInFlight)
	}
	switch {
	case l.PerSourceRate == 0:
		g.rate = DefaultSourceRate
	case l.PerSourceRate > 0:
		g.rate = rate.Limit(l.PerSourceRate)
	}
	g.burst = max(1, int(2*g.rate))
	return g
}

// acquire admits one upstream request for ctx's source, or says why not. The
// returned function releases the in-flight slot.
func (g *upstreamGate) acquire(ctx context.Context) (func(), error) {
	if src, ok := ctx.Value(sourceKey{}).(string); ok && g.rate > 0 && !g.take(src) {
		return nil, &Error{Kind: ErrBusy, Reason: ReasonSourceRateExceeded}
	}
	if g.slots == nil {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	default:
		return nil, &Error{Kind: ErrBusy, Reason: ReasonUpstreamBusy}
	}
}

// take spends one token of src's bucket.
func (g *upstreamGate) take(src string) bool {
	now := g.now()
	g.mu.Lock()
	b := g.buckets[src]
	if b == nil {
		if len(g.buckets) >= maxSources {
			g.prune(now)
		}
		b = rate.NewLimiter(g.rate, g.burst)
		g.buckets[src] = b
	}
	g.mu.Unlock()
	return b.AllowN(now, 1)
}

// prune forgets the buckets that have refilled; the caller holds g.mu.
func (g *upstreamGate) prune(now time.Time) {
	for k, b := range g.buckets {
		if b.TokensAt(now) >= float64(g.burst) {
			delete(g.buckets, k)
		}
	}
}
