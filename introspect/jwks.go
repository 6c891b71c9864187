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
	DefaultRefreshInterval    = 15 * time.Minute
	DefaultMinRefetchInterval = 30 * time.Second
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
		// An unknown kid is a verdict only when the key set could be asked: a provider
		// that rotated its key and is then unreachable is an outage, not a forgery.
		if last := k.lastError(); (err != nil && !errors.Is(err, errRefetchLimited)) || (errors.Is(err, errRefetchLimited) && last != nil) {
			return verificationKey{}, unavailable(ReasonKidUnverifiable, errors.Join(err, last))
		}
		return verificationKey{}, invalid(ReasonKidUnknown, nil)
	}
	return key, nil
}

// stale reports a snapshot older than maxStale.
func (k *keySet) stale(snap *keySnapshot) bool {
	return k.cfg.now().Sub(snap.fetched) > k.cfg.maxStale
}

// fetchForced fetches the key set unless a forced fetch ran within minRefetch; it joins a fetch already in flight.
func (k *keySet) fetchForced(ctx context.Context) error {
	return k.do(ctx, func() error {
		k.mu.Lock()
		if !k.lastForced.IsZero() && k.cfg.now().Sub(k.lastForced) < k.cfg.minRefetch {
			k.mu.Unlock()
			return errRefetchLimited
		}
		k.lastForced = k.cfg.now()
		k.mu.Unlock()
		return nil
	})
}

// refresh fetches the key set now (periodic refresh and start-up); it joins a fetch already in flight.
func (k *keySet) refresh(ctx context.Context) error {
	return k.do(ctx, func() error { return nil })
}

// do runs one single-flight fetch after gate allows it. The fetch runs under its own timeout, detached from the
// cancellation of whichever caller started it, so one impatient caller cannot fail the others waiting on it.
func (k *keySet) do(ctx context.Context, gate func() error) error {
	ch := k.flight.DoChan("fetch", func() (any, error) {
		if err := gate(); err != nil {
			return nil, err
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.fetchTimeout)
		defer cancel()
		err := k.fetch(fctx)
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
	k.current.Store(&keySnapshot{keys: keys, fetched: k.cfg.now()})
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
