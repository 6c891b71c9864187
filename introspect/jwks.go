package introspect

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// Defaults for key set maintenance.
const (
	// DefaultRefreshInterval is how often the key set is fetched again: a key the issuer removed is dropped then.
	DefaultRefreshInterval = 5 * time.Minute
	// DefaultMinRefetchInterval spaces the fetches an unknown kid forces: short enough that a second rotation soon
	// after the first is seen at once, long enough that a flood of forged kids costs one request per interval.
	DefaultMinRefetchInterval = 5 * time.Second
	DefaultMaxStaleness       = 24 * time.Hour
	minRetryInterval          = time.Second
)

// verificationKey is one public key of the issuer, as selected by its kid.
type verificationKey struct {
	alg string // the JWK's own alg, "" when it does not restrict itself
	pub crypto.PublicKey
}

// keySnapshot is an immutable, complete key set; a refresh replaces the whole snapshot atomically.
type keySnapshot struct {
	keys    map[string]verificationKey
	fetched time.Time
	// changed says the fetch brought a different set of kids than the snapshot before it (or the first set): the
	// issuer is rotating, so an unknown kid soon after may be its next key rather than a forgery.
	changed bool
}

// keySetConfig says where keys come from and how often they may be fetched.
type keySetConfig struct {
	issuer, discoveryURL, jwksURL, file string
	refresh, minRefetch, maxStale       time.Duration
	fetchTimeout                        time.Duration
	client                              *http.Client
	log                                 *slog.Logger
	now                                 func() time.Time
}

// keySet holds the issuer's verification keys. Readers take the current snapshot without locking; fetches are
// single-flight, and fetches forced by unknown kids or a missing key set are rate-limited, so a flood of forged
// kids costs the identity provider at most one request per minRefetch.
type keySet struct {
	cfg      keySetConfig
	current  atomic.Pointer[keySnapshot]
	flight   singleflight.Group
	attempts atomic.Uint64 // fetch attempts, for tests and diagnostics

	mu          sync.Mutex
	lastForced  time.Time // start of the last rate-limited fetch
	lastErr     error     // outcome of the last fetch attempt
	resolvedURL string    // jwks_uri from discovery, once known
}

// errRefetchLimited means a forced fetch was skipped because one ran less than minRefetch ago.
var errRefetchLimited = errors.New("key set refetch rate-limited")

// newKeySet builds a key set; nothing is fetched yet.
func newKeySet(cfg keySetConfig) *keySet {
	return &keySet{cfg: cfg, resolvedURL: cfg.jwksURL}
}

// lookup returns the key named kid. An unknown kid, a stale key set or no key set at all triggers one
// rate-limited fetch first.
func (k *keySet) lookup(ctx context.Context, kid string) (verificationKey, error) {
	if snap := k.current.Load(); snap != nil && !k.stale(snap) {
		if key, ok := snap.keys[kid]; ok {
			return key, nil
		}
	}
	err := k.fetchForced(ctx)
	if errors.Is(err, errRefetchLimited) {
		err = k.awaitRefetch(ctx, kid)
	}
	snap := k.current.Load()
	if snap == nil {
		return verificationKey{}, unavailable(ReasonNoKeys, fmt.Errorf("no key set has ever been fetched for %s: %w",
			k.cfg.issuer, errors.Join(err, k.lastError())))
	}
	if k.stale(snap) {
		return verificationKey{}, unavailable(ReasonKeysStale, k.lastError())
	}
	key, ok := snap.keys[kid]
	if !ok {
		// An unknown kid is a verdict only when the key set was just asked: a provider that rotated its key and
		// is then unreachable is an outage, not a forgery, and a kid seen while the refetch is rate-limited may
		// be a key rotated in since the last fetch, so the thing is told to retry (0x88) rather than that its
		// good token is bad.
		switch {
		case errors.Is(err, errRefetchLimited):
			return verificationKey{}, unavailable(ReasonKidRateLimited, errors.Join(err, k.lastError()))
		case err != nil:
			return verificationKey{}, unavailable(ReasonKidUnverifiable, errors.Join(err, k.lastError()))
		}
		return verificationKey{}, invalid(ReasonKidUnknown, nil)
	}
	return key, nil
}

// awaitRefetch handles an unknown kid met while forced fetches are rate-limited. When the last fetch brought the
// same kids as before, the issuer is not rotating and the set in hand is the verdict (0x86): a flood of forged
// kids costs one fetch per window and gets its answer at once. When the last fetch changed the set, the issuer is
// rotating, and answering from that set would tell a thing whose issuer rotated a second time within minRefetch
// that its good token is bad; so the lookup waits for the window to open (never past ctx) and fetches then, every
// waiter sharing that one fetch. A ctx that ends first is ErrUnavailable (0x88, retry), never ErrInvalidToken.
func (k *keySet) awaitRefetch(ctx context.Context, kid string) error {
	if snap := k.current.Load(); snap != nil && !k.stale(snap) {
		if _, ok := snap.keys[kid]; ok || !snap.changed { // found meanwhile, or a verdict from a steady set
			return nil
		}
	}
	k.mu.Lock()
	wait := k.lastForced.Add(k.cfg.minRefetch).Sub(k.cfg.now())
	k.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return errRefetchLimited
		case <-t.C:
		}
	}
	err := k.fetchForced(ctx)
	if errors.Is(err, errRefetchLimited) {
		return nil // another waiter fetched after this one started waiting
	}
	return err
}

// sameKids reports whether keys names exactly the kids of snap.
func sameKids(snap *keySnapshot, keys map[string]verificationKey) bool {
	if snap == nil || len(snap.keys) != len(keys) {
		return false
	}
	for kid := range keys {
		if _, ok := snap.keys[kid]; !ok {
			return false
		}
	}
	return true
}

// stale reports a snapshot older than maxStale.
func (k *keySet) stale(snap *keySnapshot) bool {
	return k.cfg.now().Sub(snap.fetched) > k.cfg.maxStale
}

// fetchForced fetches the key set unless a forced fetch succeeded within minRefetch; it joins a fetch already in
// flight. A failed fetch does not use up the interval (the next unknown kid may try again), but failed fetches are
// themselves spaced by minRetryInterval, so forged kids during an outage cost at most one request a second.
func (k *keySet) fetchForced(ctx context.Context) error {
	gate := func() error {
		k.mu.Lock()
		defer k.mu.Unlock()
		if !k.lastForced.IsZero() && k.cfg.now().Sub(k.lastForced) < k.cfg.minRefetch {
			return errRefetchLimited
		}
		k.lastForced = k.cfg.now()
		return nil
	}
	failed := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.cfg.minRefetch > minRetryInterval {
			k.lastForced = k.cfg.now().Add(minRetryInterval - k.cfg.minRefetch)
		}
	}
	return k.do(ctx, gate, failed)
}

// refresh fetches the key set now (periodic refresh, start-up, SIGHUP); it joins a fetch already in flight.
func (k *keySet) refresh(ctx context.Context) error {
	return k.do(ctx, func() error { return nil }, func() {})
}

// do runs one single-flight fetch after gate allows it, and calls failed when the fetch fails. The fetch runs
// under its own timeout, detached from the cancellation of whichever caller started it, so one impatient caller
// cannot fail the others waiting on it.
func (k *keySet) do(ctx context.Context, gate func() error, failed func()) error {
	ch := k.flight.DoChan("fetch", func() (any, error) {
		if err := gate(); err != nil {
			return nil, err
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.fetchTimeout)
		defer cancel()
		err := k.fetch(fctx)
		if err != nil {
			failed()
		}
		k.mu.Lock()
		k.lastErr = err
		k.mu.Unlock()
		if err != nil {
			// Say what is in force: a set fetched earlier, or none at all (tokens of this issuer get 0x88).
			if k.current.Load() == nil {
				k.cfg.log.Warn("introspect: key set fetch failed; no key set has ever been fetched for this issuer",
					"issuer", k.cfg.issuer, "err", err)
			} else {
				k.cfg.log.Warn("introspect: key set fetch failed; keeping the last good set", "issuer", k.cfg.issuer,
					"err", err)
			}
		}
		return nil, err
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetch reads and parses the key set from its source and installs it.
func (k *keySet) fetch(ctx context.Context) error {
	k.attempts.Add(1)
	body, err := k.read(ctx)
	if err != nil {
		return err
	}
	keys, err := parseKeySet(body, k.cfg.log)
	if err != nil {
		return fmt.Errorf("introspect key set of %s: %w", k.cfg.issuer, err)
	}
	k.current.Store(&keySnapshot{keys: keys, fetched: k.cfg.now(), changed: !sameKids(k.current.Load(), keys)})
	return nil
}

// read returns the raw key set: from the file, from the configured URL, or from the URL discovery names.
func (k *keySet) read(ctx context.Context) ([]byte, error) {
	if k.cfg.file != "" {
		f, err := os.Open(k.cfg.file)
		if err != nil {
			return nil, fmt.Errorf("introspect key set: %w", err)
		}
		defer f.Close()
		return readLimited(f, maxMetadataBytes)
	}
	k.mu.Lock()
	u := k.resolvedURL
	k.mu.Unlock()
	if u == "" {
		md, err := discover(ctx, k.cfg.client, k.cfg.issuer, k.cfg.discoveryURL)
		if err != nil {
			return nil, err
		}
		if md.JWKSURI == "" {
			return nil, fmt.Errorf("introspect discovery of %s: no jwks_uri", k.cfg.issuer)
		}
		u = md.JWKSURI
		k.mu.Lock()
		k.resolvedURL = u
		k.mu.Unlock()
	}
	return fetchDocument(ctx, k.cfg.client, u, maxMetadataBytes)
}

// run refreshes the key set every refresh interval until ctx ends, retrying sooner (with backoff) after a failure.
func (k *keySet) run(ctx context.Context) {
	wait := k.cfg.refresh
	if k.current.Load() == nil {
		wait = minRetryInterval
	}
	retry := minRetryInterval
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.refresh(ctx); err != nil {
			t.Reset(retry)
			retry = min(2*retry, k.cfg.refresh)
			continue
		}
		retry = minRetryInterval
		t.Reset(k.cfg.refresh)
	}
}

// ready reports whether a key set is loaded and younger than maxStale.
func (k *keySet) ready() error {
	snap := k.current.Load()
	if snap == nil {
		return unavailable(ReasonNoKeys, fmt.Errorf("no key set has ever been fetched for %s: %w", k.cfg.issuer,
			k.lastError()))
	}
	if k.stale(snap) {
		age := k.cfg.now().Sub(snap.fetched).Round(time.Second)
		return unavailable(ReasonKeysStale, fmt.Errorf("key set is %s old: %w", age, k.lastError()))
	}
	return nil
}

// lastError is the outcome of the last fetch attempt.
func (k *keySet) lastError() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastErr
}

// parseKeySet reads a JWKS (RFC 7517 §5). go-jose parses each key, since it validates EC points and RSA moduli and
// handles x5c chains; keys are parsed one by one so that a key of an unsupported type (an X25519 encryption key,
// say) is skipped instead of failing the whole set. Keys without kid, keys for encryption, symmetric keys and
// repeated kids are skipped: a key is only ever chosen by its kid, and never by trying several.
func parseKeySet(body []byte, log *slog.Logger) (map[string]verificationKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("malformed JWKS: %w", err)
	}
	keys := make(map[string]verificationKey, len(doc.Keys))
	for i, raw := range doc.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			log.Warn("introspect: skipping unparsable JWK", "index", i, "err", err)
			continue
		}
		skip := ""
		pub := publicPart(jwk.Key)
		switch {
		case jwk.KeyID == "":
			skip = "no kid"
		case jwk.Use != "" && jwk.Use != "sig":
			skip = "use is not sig"
		case pub == nil:
			skip = fmt.Sprintf("unsupported key type %T", jwk.Key)
		case keys[jwk.KeyID].pub != nil:
			skip = "kid repeated"
		}
		if skip != "" {
			log.Warn("introspect: skipping JWK", "index", i, "kid", truncate(jwk.KeyID, 64), "why", skip)
			continue
		}
		keys[jwk.KeyID] = verificationKey{alg: jwk.Algorithm, pub: pub}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable signing key")
	}
	return keys, nil
}

// publicPart returns the public key of an asymmetric JWK (a JWKS that wrongly includes private parts still yields
// only the public half), nil for symmetric or unknown keys.
func publicPart(key any) crypto.PublicKey {
	switch k := key.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return k
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case *rsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return nil
}
