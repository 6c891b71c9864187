package introspect

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Client authentication methods at the introspection endpoint (RFC 6749 §2.3.1).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
)

// IntrospectionConfig configures an RFC 7662 client: the broker authenticates as an OAuth client of its own and
// asks the identity provider about each token.
type IntrospectionConfig struct {
	// Endpoint is the introspection endpoint. When empty it is taken from discovery of Issuer
	// (introspection_endpoint); for AM it is {base}/oauth2[/realms/root/realms/NAME]/introspect.
	Endpoint string
	// Issuer is used for discovery and, with CheckIssuer, compared with the answer's iss.
	Issuer string
	// DiscoveryURL overrides {Issuer}/.well-known/openid-configuration.
	DiscoveryURL string
	// ClientID and ClientSecret are the broker's own credentials. With AM the client needs the scope
	// am-introspect-all-tokens to introspect tokens issued to other clients.
	ClientID, ClientSecret string
	// AuthMethod is AuthClientSecretBasic (default), AuthClientSecretPost, AuthPrivateKeyJWT, AuthTLSClientAuth,
	// AuthBearer or AuthNone. ClientID is required except for AuthBearer and AuthNone.
	AuthMethod string
	// ClientKey signs the client assertions of AuthPrivateKeyJWT (see LoadClientKey); ClientKeyID is their kid.
	ClientKey   crypto.Signer
	ClientKeyID string
	// ClientCertificate is presented in the TLS handshake with AuthTLSClientAuth (RFC 8705).
	ClientCertificate *tls.Certificate
	// BearerToken is sent as "Authorization: Bearer" with AuthBearer.
	BearerToken string
	// TokenTypeHint is sent as token_type_hint (default "access_token"); "none" sends no hint.
	TokenTypeHint string
	// CheckIssuer requires the answer's iss, when present, to equal Issuer; an answer without iss is taken as
	// Issuer's, since the endpoint was configured or discovered for it.
	CheckIssuer bool
	// Audience, when set, requires the answer's aud to contain one of these values.
	Audience []string
	// Claims says which claims hold the scopes and the thing id (zero value: the defaults).
	Claims ClaimMap
	// Leeway is the clock skew tolerated on nbf and iat (0 means DefaultLeeway, negative means none); exp gets
	// none.
	Leeway time.Duration
	// Timeout bounds each request (default DefaultHTTPTimeout).
	Timeout time.Duration
	// MaxConns caps connections to the endpoint (default DefaultMaxConnsPerHost); more concurrent requests queue.
	MaxConns int
	// HTTPClient replaces the client built from Timeout and MaxConns.
	HTTPClient *http.Client
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Limits bounds the requests unauthenticated clients can cause.
	Limits UpstreamLimits
}

// maxIntrospectedToken caps what is sent to the endpoint, as JWTs are capped: opaque tokens are short (AM's are
// under 100 bytes), so a larger one is refused without a request.
const maxIntrospectedToken = DefaultMaxTokenBytes

// Introspector validates tokens through an RFC 7662 endpoint. It is safe for concurrent use.
type Introspector struct {
	cfg    IntrospectionConfig
	client *http.Client
	flight singleflight.Group
	gate   *upstreamGate

	key *clientKey // private_key_jwt only

	mu       sync.Mutex
	endpoint string
	lastErr  error // why the endpoint is not known, while it is not
}

// NewIntrospection checks cfg and, when no Endpoint is configured, discovers it. A failed discovery is logged, not
// returned: Validate retries it (one request in flight) and answers ErrUnavailable meanwhile, and Ready reports it.
func NewIntrospection(ctx context.Context, cfg IntrospectionConfig) (*Introspector, error) {
	if cfg.Endpoint == "" && cfg.Issuer == "" {
		return nil, errors.New("introspect rfc7662: Endpoint or Issuer is required")
	}
	if err := cfg.Claims.check(); err != nil {
		return nil, err
	}
	cfg.Claims.Scopes = slices.Clone(cfg.Claims.Scopes)
	if cfg.CheckIssuer && cfg.Issuer == "" {
		return nil, errors.New("introspect rfc7662: CheckIssuer needs Issuer")
	}
	for _, u := range []string{cfg.Endpoint, cfg.DiscoveryURL} {
		if u != "" {
			if err := checkHTTPURL(u); err != nil {
				return nil, fmt.Errorf("introspect rfc7662: %w", err)
			}
		}
	}
	if cfg.TokenTypeHint == "" {
		cfg.TokenTypeHint = "access_token"
	}
	cfg.Leeway = leewayOrDefault(cfg.Leeway)
	cfg.Timeout = positiveOr(cfg.Timeout, DefaultHTTPTimeout)
	cfg.MaxConns = positiveOr(cfg.MaxConns, DefaultMaxConnsPerHost)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Audience = slices.Clone(cfg.Audience)
	in := &Introspector{cfg: cfg, client: cfg.HTTPClient, endpoint: cfg.Endpoint, gate: newUpstreamGate(cfg.Limits, cfg.Now)}
	if err := in.checkClientAuth(); err != nil {
		return nil, err
	}
	if in.client == nil {
		in.client = newHTTPClient(cfg.Timeout, cfg.MaxConns)
		withClientCertificate(in.client, cfg.ClientCertificate)
	}
	if in.endpoint == "" {
		if _, err := in.resolveEndpoint(ctx); err != nil {
			cfg.Logger.Warn("introspect: discovery of the introspection endpoint failed; retrying on demand",
				"issuer", cfg.Issuer, "err", err)
		}
	}
	return in, nil
}

// Endpoint is the introspection endpoint in use, "" while discovery has not succeeded.
func (in *Introspector) Endpoint() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.endpoint
}

// Close releases the idle connections to the endpoint. Validate still works afterwards, opening new ones.
func (in *Introspector) Close() error {
	in.client.CloseIdleConnections()
	return nil
}

// Ready reports whether the endpoint is known. It sends no request: the endpoint's health shows in the answers.
func (in *Introspector) Ready(context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.endpoint == "" {
		return unavailable(ReasonNoEndpoint, in.lastErr)
	}
	return nil
}

// resolveEndpoint returns the endpoint, discovering it (single-flight) when unknown.
func (in *Introspector) resolveEndpoint(ctx context.Context) (string, error) {
	if ep := in.Endpoint(); ep != "" {
		return ep, nil
	}
	ch := in.flight.DoChan("discover", func() (any, error) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.Timeout)
		defer cancel()
		md, err := discover(dctx, in.client, in.cfg.Issuer, in.cfg.DiscoveryURL)
		if err == nil && md.IntrospectionEndpoint == "" {
			err = fmt.Errorf("introspect discovery of %s: the document names no introspection_endpoint; "+
				"configure introspect_url", in.cfg.Issuer)
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		if err != nil {
			in.lastErr = err
			return "", err
		}
		in.endpoint, in.lastErr = md.IntrospectionEndpoint, nil
		return md.IntrospectionEndpoint, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Validate asks the endpoint about token. active:false, an expired answer, or a failed iss/aud check is
// ErrInvalidToken; no answer, an error status, or an answer that is not RFC 7662 JSON is ErrUnavailable.
func (in *Introspector) Validate(ctx context.Context, token string) (*Token, error) {
	if token == "" {
		return nil, invalid(ReasonEmptyToken, nil)
	}
	if len(token) > maxIntrospectedToken {
		return nil, invalid(ReasonTokenTooLarge, nil)
	}
	release, err := in.gate.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	endpoint, err := in.resolveEndpoint(ctx)
	if err != nil {
		return nil, unavailable(ReasonNoEndpoint, err)
	}
	claims, err := in.post(ctx, endpoint, token)
	if err != nil {
		return nil, err
	}
	return in.checkAnswer(claims)
}

// post sends the introspection request and decodes a 200 answer.
func (in *Introspector) post(ctx context.Context, endpoint, token string) (map[string]any, error) {
	form := url.Values{"token": {token}}
	if in.cfg.TokenTypeHint != "none" {
		form.Set("token_type_hint", in.cfg.TokenTypeHint)
	}
	rctx, cancel := context.WithTimeout(ctx, in.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return nil, unavailable(ReasonUpstreamNetwork, fmt.Errorf("introspect %s: %w", endpoint, err))
	}
	if err := in.authenticate(req, form, endpoint); err != nil {
		return nil, unavailable(ReasonUpstreamAuth, err)
	}
	encoded := form.Encode()
	req.Body = io.NopCloser(strings.NewReader(encoded))
	req.ContentLength = int64(len(encoded))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(encoded)), nil }
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := in.client.Do(req)
	if err != nil {
		return nil, unavailable(ReasonUpstreamNetwork, fmt.Errorf("introspect %s: %w", endpoint, scrubURLError(err)))
	}
	defer resp.Body.Close()
	body, err := readLimited(resp.Body, maxIntrospectionAnswer)
	if err != nil {
		return nil, unavailable(ReasonUpstreamNetwork, fmt.Errorf("introspect %s: %w", endpoint, err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusFailure(endpoint, resp.StatusCode, body)
	}
	claims, err := decodeStrictObject(body)
	if err != nil {
		return nil, unavailable(ReasonUpstreamMalformed, fmt.Errorf("introspect %s: %w", endpoint, err))
	}
	return claims, nil
}

// statusFailure classifies a non-200 answer. 401/403 mean the broker's own credentials are wrong, which no token
// can fix, so it is ErrUnavailable with its own reason; a 400 unsupported_token_type (node-oidc-provider refuses to
// introspect its JWTs) says this token can never be introspected there, so it is ErrInvalidToken.
func statusFailure(endpoint string, status int, body []byte) error {
	detail := fmt.Errorf("introspect %s: HTTP %d", endpoint, status)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return unavailable(ReasonUpstreamAuth, detail)
	case status == http.StatusBadRequest:
		if m, err := decodeStrictObject(body); err == nil && m["error"] == "unsupported_token_type" {
			return invalid(ReasonUnsupportedToken, detail)
		}
	}
	return unavailable(ReasonUpstreamStatus, detail)
}

// checkAnswer interprets a decoded introspection answer.
func (in *Introspector) checkAnswer(claims map[string]any) (*Token, error) {
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, unavailable(ReasonActiveMissing, nil)
	}
	if !active {
		return nil, invalid(ReasonInactive, nil)
	}
	t, err := tokenFromClaims(claims, MethodIntrospection, in.cfg.Claims)
	if err != nil {
		return nil, err
	}
	if err := checkAccessToken(claims); err != nil {
		return nil, err
	}
	if err := checkTimes(t, in.cfg.Now(), in.cfg.Leeway); err != nil {
		return nil, err
	}
	if in.cfg.CheckIssuer {
		switch t.Issuer {
		case in.cfg.Issuer:
		case "":
			// RFC 7662 makes iss optional (Ory Hydra and Glewlwyd leave it out). The endpoint was configured or
			// discovered for this issuer, so its answer speaks for it: the principal gets that issuer, and a
			// different iss is still refused below.
			t.Issuer = in.cfg.Issuer
			t.Principal.Issuer = in.cfg.Issuer
		default:
			return nil, issuerMismatch(t.Issuer, in.cfg.Issuer)
		}
	}
	if err := checkAudience(t.Audience, in.cfg.Audience); err != nil {
		return nil, err
	}
	return t, nil
}

// scrubURLError drops the request URL from a transport error; the endpoint is already in the message, and this
// keeps any query string out of logs.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
