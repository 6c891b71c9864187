package introspect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultAlgorithms is the allow-list used when JWTConfig.Algorithms is empty: what AM and RFC 9068 issuers sign
// access tokens with. HS* is never in it. Each call returns a new slice.
func DefaultAlgorithms() []string { return []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"} }

// DefaultLeeway is the clock skew tolerated on nbf and iat.
const DefaultLeeway = 30 * time.Second

// minSharedSecretBytes is the shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size).
const minSharedSecretBytes = 32

// JWTConfig configures local validation of JWT access tokens (AM client-based tokens, RFC 9068 tokens). Keys come
// from exactly one source: JWKSFile, else JWKSURL, else OIDC discovery from Issuer (or DiscoveryURL).
type JWTConfig struct {
	// Issuer is required; the iss claim must equal it exactly. For AM: {base}/oauth2 or
	// {base}/oauth2/realms/root/realms/NAME.
	Issuer string
	// DiscoveryURL overrides {Issuer}/.well-known/openid-configuration.
	DiscoveryURL string
	// JWKSURL fetches keys from this URL instead of the jwks_uri discovery names.
	JWKSURL string
	// JWKSFile reads keys from a local file (re-read on every refresh) instead of the network.
	JWKSFile string
	// Audience, when set, requires aud to contain at least one of these values (for AM: the thing's OAuth client).
	Audience []string
	// Algorithms is the allow-list; empty means DefaultAlgorithms (plus HS256/384/512 when SharedSecret is set).
	Algorithms []string
	// SharedSecret enables HS256/HS384/HS512 with this key (at least 32 bytes). Without it HMAC tokens are refused,
	// which is what stops an RSA public key from being used as an HMAC secret.
	SharedSecret []byte
	// Types, when set, lists the accepted typ header values, compared case-insensitively with an optional
	// "application/" prefix (RFC 7515 §4.1.9); e.g. "JWT" for AM, "at+jwt" for RFC 9068. A token without typ is
	// accepted only when Types contains "". Empty Types accepts any typ.
	Types []string
	// Leeway is the clock skew tolerated on nbf and iat (0 means DefaultLeeway, negative means none). exp gets
	// none: a token is never accepted after its expiry.
	Leeway time.Duration
	// MaxTokenBytes and MaxHeaderBytes cap sizes before any decoding (defaults DefaultMaxTokenBytes,
	// DefaultMaxHeaderBytes).
	MaxTokenBytes, MaxHeaderBytes int
	// Claims says which claims hold the scopes and the thing id (zero value: the defaults).
	Claims ClaimMap
	// RefreshInterval is how often keys are re-fetched (default DefaultRefreshInterval); a removed key is dropped
	// at the next refresh.
	RefreshInterval time.Duration
	// MinRefetchInterval rate-limits fetches forced by an unknown kid (default DefaultMinRefetchInterval); a failed
	// fetch does not count. While it holds, an unknown kid is ErrUnavailable (retry), not ErrInvalidToken.
	MinRefetchInterval time.Duration
	// MaxStaleness is how long the last good key set stays in use when refreshes fail (default
	// DefaultMaxStaleness); after that validation answers ErrUnavailable.
	MaxStaleness time.Duration
	// HTTPTimeout bounds each discovery or JWKS request (default DefaultHTTPTimeout).
	HTTPTimeout time.Duration
	// HTTPClient replaces the client built with its own bounded transport (for custom TLS roots, say).
	HTTPClient *http.Client
	// Logger receives key set events; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// JWTValidator validates JWT access tokens locally. It is safe for concurrent use.
type JWTValidator struct {
	issuer       string
	audience     []string
	algorithms   []string
	sharedSecret []byte
	types        []string
	leeway       time.Duration
	maxToken     int
	maxHeader    int
	now          func() time.Time
	claims       ClaimMap
	keys         *keySet
	stop         context.CancelFunc
	stopped      sync.WaitGroup
}

// NewJWT checks cfg, loads the key set once (a failure is logged, not returned: the validator then answers
// ErrUnavailable and keeps retrying in the background, and Ready reports why), and starts the periodic refresh. The
// refresh runs until ctx ends or Close is called.
func NewJWT(ctx context.Context, cfg JWTConfig) (*JWTValidator, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.fillDefaults()
	v := &JWTValidator{
		issuer:       cfg.Issuer,
		audience:     slices.Clone(cfg.Audience),
		algorithms:   cfg.Algorithms,
		sharedSecret: slices.Clone(cfg.SharedSecret),
		leeway:       cfg.Leeway,
		maxToken:     cfg.MaxTokenBytes,
		maxHeader:    cfg.MaxHeaderBytes,
		now:          cfg.Now,
		claims:       ClaimMap{Scopes: slices.Clone(cfg.Claims.Scopes), ThingID: cfg.Claims.ThingID},
	}
	for _, t := range cfg.Types {
		v.types = append(v.types, normalizeTyp(t))
	}
	v.keys = newKeySet(keySetConfig{
		issuer: cfg.Issuer, discoveryURL: cfg.DiscoveryURL, jwksURL: cfg.JWKSURL, file: cfg.JWKSFile,
		refresh: cfg.RefreshInterval, minRefetch: cfg.MinRefetchInterval, maxStale: cfg.MaxStaleness,
		fetchTimeout: cfg.HTTPTimeout, client: cfg.HTTPClient, log: cfg.Logger, now: cfg.Now,
	})
	if !v.hmacOnly() {
		if err := v.keys.refresh(ctx); err != nil {
			cfg.Logger.Warn("introspect: initial key set load failed; retrying in the background",
				"issuer", cfg.Issuer, "err", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.stop = cancel
	v.stopped.Add(1)
	go func() {
		defer v.stopped.Done()
		select { // ctx ending also stops the refresh, without tying it to ctx's values
		case <-ctx.Done():
			cancel()
		case <-runCtx.Done():
		}
	}()
	if !v.hmacOnly() {
		v.stopped.Add(1)
		go func() {
			defer v.stopped.Done()
			v.keys.run(runCtx)
		}()
	}
	return v, nil
}

// check reports configuration errors.
func (cfg *JWTConfig) check() error {
	if cfg.Issuer == "" {
		return errors.New("introspect jwt: Issuer is required")
	}
	if err := cfg.Claims.check(); err != nil {
		return err
	}
	for _, u := range []string{cfg.DiscoveryURL, cfg.JWKSURL} {
		if u != "" {
			if err := checkHTTPURL(u); err != nil {
				return fmt.Errorf("introspect jwt: %w", err)
			}
		}
	}
	if len(cfg.SharedSecret) > 0 && len(cfg.SharedSecret) < minSharedSecretBytes {
		return fmt.Errorf("introspect jwt: SharedSecret has %d bytes, at least %d required", len(cfg.SharedSecret),
			minSharedSecretBytes)
	}
	for _, a := range cfg.Algorithms {
		alg, ok := lookupAlgorithm(a)
		if !ok {
			return fmt.Errorf("introspect jwt: unsupported algorithm %q", a)
		}
		if alg.family == familyHMAC && len(cfg.SharedSecret) == 0 {
			return fmt.Errorf("introspect jwt: algorithm %s needs SharedSecret", a)
		}
	}
	return nil
}

// fillDefaults sets every zero field to its default.
func (cfg *JWTConfig) fillDefaults() {
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms()
		if len(cfg.SharedSecret) > 0 {
			cfg.Algorithms = append(cfg.Algorithms, "HS256", "HS384", "HS512")
		}
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	cfg.Leeway = leewayOrDefault(cfg.Leeway)
	cfg.MaxTokenBytes = positiveOr(cfg.MaxTokenBytes, DefaultMaxTokenBytes)
	cfg.MaxHeaderBytes = positiveOr(cfg.MaxHeaderBytes, DefaultMaxHeaderBytes)
	cfg.RefreshInterval = positiveOr(cfg.RefreshInterval, DefaultRefreshInterval)
	cfg.MinRefetchInterval = positiveOr(cfg.MinRefetchInterval, DefaultMinRefetchInterval)
	cfg.MaxStaleness = positiveOr(cfg.MaxStaleness, DefaultMaxStaleness)
	cfg.HTTPTimeout = positiveOr(cfg.HTTPTimeout, DefaultHTTPTimeout)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = newHTTPClient(cfg.HTTPTimeout, DefaultMaxConnsPerHost)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
}

// hmacOnly reports a validator configured with a shared secret and only HMAC algorithms: it needs no key set.
func (v *JWTValidator) hmacOnly() bool {
	for _, a := range v.algorithms {
		if alg, _ := lookupAlgorithm(a); alg.family != familyHMAC {
			return false
		}
	}
	return true
}

// Issuer is the configured issuer.
func (v *JWTValidator) Issuer() string { return v.issuer }

// Close stops the background refresh and waits for it to end.
func (v *JWTValidator) Close() error {
	v.stop()
	v.stopped.Wait()
	return nil
}

// Ready reports whether signing keys are loaded and not older than MaxStaleness.
func (v *JWTValidator) Ready(context.Context) error {
	if v.hmacOnly() {
		return nil
	}
	return v.keys.ready()
}

// Refresh fetches the key set now (SIGHUP): a key the issuer added is known, one it removed is gone. It joins a
// fetch already in flight and does not count against the unknown-kid rate limit.
func (v *JWTValidator) Refresh(ctx context.Context) error {
	if v.hmacOnly() {
		return nil
	}
	return v.keys.refresh(ctx)
}

// KeyFetches counts key set fetch attempts (discovery plus JWKS, or file reads) since start.
func (v *JWTValidator) KeyFetches() uint64 { return v.keys.attempts.Load() }

// Validate parses, verifies and checks a JWT.
func (v *JWTValidator) Validate(ctx context.Context, token string) (*Token, error) {
	jws, err := parseCompact(token, v.maxToken, v.maxHeader)
	if err != nil {
		return nil, err
	}
	return v.validateParsed(ctx, jws)
}

// VerifyClaims checks a compact JWS as Validate does up to the signature (size caps, header rules, the alg
// allow-list and typ, iss equal to the configured issuer, the key chosen by kid, the signature) and returns its
// claims without applying the access-token rules: a Security Event Token (RFC 8417) has no exp and no sub of its
// own, and its receiver checks aud, iat and jti itself. The map is the caller's.
func (v *JWTValidator) VerifyClaims(ctx context.Context, token string) (map[string]any, error) {
	jws, err := parseCompact(token, v.maxToken, v.maxHeader)
	if err != nil {
		return nil, err
	}
	if err := v.verifyParsed(ctx, jws); err != nil {
		return nil, err
	}
	return jws.claims, nil
}

// validateParsed checks a parsed JWS: header against configuration, issuer (before any key lookup, so a token of
// another issuer cannot force a key fetch), key, signature, then the remaining claims.
func (v *JWTValidator) validateParsed(ctx context.Context, jws *compactJWS) (*Token, error) {
	if err := v.verifyParsed(ctx, jws); err != nil {
		return nil, err
	}
	return v.checkClaims(jws.claims)
}

// verifyParsed is validateParsed without the claim rules: header, issuer, key and signature.
func (v *JWTValidator) verifyParsed(ctx context.Context, jws *compactJWS) error {
	alg, err := v.checkHeader(jws)
	if err != nil {
		return err
	}
	if iss, _ := jws.claims["iss"].(string); iss != v.issuer {
		return issuerMismatch(iss, v.issuer)
	}
	key, err := v.key(ctx, alg, jws.kid)
	if err != nil {
		return err
	}
	return verifySignature(alg, key, jws.signingInput, jws.signature)
}

// onlyIssuerVerifies reports whether jws is signed with HMAC and claims the configured issuer while no shared
// secret is configured: its signature cannot be checked here, only by the issuer (introspection). Anyone can
// make such a token, but no more cheaply than an opaque one, which goes to introspection anyway.
func (v *JWTValidator) onlyIssuerVerifies(jws *compactJWS) bool {
	alg, known := lookupAlgorithm(jws.alg)
	iss, _ := jws.claims["iss"].(string)
	return known && alg.family == familyHMAC && len(v.sharedSecret) == 0 && iss == v.issuer
}

// checkHeader applies the alg allow-list and the typ rule.
func (v *JWTValidator) checkHeader(jws *compactJWS) (algorithm, error) {
	alg, known := lookupAlgorithm(jws.alg)
	if !known || !slices.Contains(v.algorithms, jws.alg) {
		if known && alg.family == familyHMAC {
			return algorithm{}, invalid(ReasonHMACNotAllowed, nil)
		}
		return algorithm{}, invalid(ReasonAlgNotAllowed, fmt.Errorf("alg %q", truncate(jws.alg, 32)))
	}
	if len(v.types) > 0 && !slices.Contains(v.types, normalizeTyp(jws.typ)) {
		return algorithm{}, invalid(ReasonTypMismatch, fmt.Errorf("typ %q", truncate(jws.typ, 32)))
	}
	return alg, nil
}

// key returns the verification key for the token: the shared secret for HMAC, else the key named by kid, which
// must fit the algorithm (and the JWK's own alg, when it names one).
func (v *JWTValidator) key(ctx context.Context, alg algorithm, kid string) (any, error) {
	if alg.family == familyHMAC {
		return v.sharedSecret, nil
	}
	if kid == "" {
		return nil, invalid(ReasonKidMissing, nil)
	}
	k, err := v.keys.lookup(ctx, kid)
	if err != nil {
		return nil, err
	}
	if k.alg != "" && k.alg != alg.name {
		return nil, invalid(ReasonKeyAlgMismatch, fmt.Errorf("key is for %s, token says %s", k.alg, alg.name))
	}
	if err := checkKeyFits(alg, k.pub); err != nil {
		return nil, err
	}
	return k.pub, nil
}

// checkClaims applies the time and audience rules and builds the Token.
func (v *JWTValidator) checkClaims(claims map[string]any) (*Token, error) {
	t, err := tokenFromClaims(claims, MethodJWT, v.claims)
	if err != nil {
		return nil, err
	}
	if _, ok := claims["exp"]; !ok || t.Expiry.IsZero() {
		return nil, invalid(ReasonExpMissing, nil)
	}
	if err := checkTimes(t, v.now(), v.leeway); err != nil {
		return nil, err
	}
	if err := checkAudience(t.Audience, v.audience); err != nil {
		return nil, err
	}
	if err := checkAccessToken(claims); err != nil {
		return nil, err
	}
	return t, nil
}

// checkTimes rejects an expired, not yet valid or future-issued token. exp has no leeway.
func checkTimes(t *Token, now time.Time, leeway time.Duration) error {
	if !t.Expiry.IsZero() && !now.Before(t.Expiry) {
		return invalid(ReasonExpired, fmt.Errorf("expired %s ago", now.Sub(t.Expiry).Round(time.Second)))
	}
	if !t.NotBefore.IsZero() && now.Add(leeway).Before(t.NotBefore) {
		return invalid(ReasonNotYetValid, nil)
	}
	if !t.IssuedAt.IsZero() && now.Add(leeway).Before(t.IssuedAt) {
		return invalid(ReasonIssuedInFuture, nil)
	}
	return nil
}

// checkAudience requires one of want in aud, when want is set. The refusal names both, so an operator sees which
// audience the identity provider put in its tokens.
func checkAudience(aud, want []string) error {
	if len(want) == 0 {
		return nil
	}
	for _, a := range aud {
		if slices.Contains(want, a) {
			return nil
		}
	}
	shown := make([]string, 0, min(len(aud), 8))
	for _, a := range aud[:min(len(aud), 8)] {
		shown = append(shown, truncate(a, 128))
	}
	return invalid(ReasonAudienceMismatch, fmt.Errorf("token aud %q, expected one of %q", shown, want))
}

// issuerMismatch names the token's iss ("" when absent) and the issuer expected.
func issuerMismatch(iss, want string) error {
	return invalid(ReasonIssuerMismatch, fmt.Errorf("token iss %q, expected %q", truncate(iss, 128), want))
}

// positiveOr returns v when it is positive, else def: zero and negative sizes and durations mean "the default".
func positiveOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// leewayOrDefault maps 0 to DefaultLeeway and negative values to none.
func leewayOrDefault(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultLeeway
	case d < 0:
		return 0
	}
	return d
}

// normalizeTyp lower-cases a media type and drops "application/" (RFC 7515 §4.1.9).
func normalizeTyp(typ string) string {
	typ = strings.ToLower(typ)
	return strings.TrimPrefix(typ, "application/")
}
