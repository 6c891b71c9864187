package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Accept-API-Version values, byte for byte as AM's own SDK sends them (the signed-request api header
// must repeat the value of the same request).
const (
	apiServerInfo   = "resource=1.1"
	apiAuthenticate = "protocol=1.0,resource=2.1"
	apiThings       = "protocol=2.0,resource=1.0"
	apiSessions     = "resource=4.0"
)

const (
	defaultCookieName = "iPlanetDirectoryPro"
	defaultTimeout    = 10 * time.Second
	contentJSON       = "application/json"
	contentJOSE       = "application/jose"
)

// Config configures a Client. Only BaseURL is required.
type Config struct {
	// BaseURL is AM's base URL including its deployment path, e.g. "http://am.localtest.me:8080/am".
	BaseURL string
	// Realm is "/" or empty for the root realm, a path such as "/a/b", an alias, or empty when the host
	// name of BaseURL is a DNS alias of the realm.
	Realm string
	// HTTPClient sends the requests; nil means a client of its own with no global state.
	HTTPClient *http.Client
	// Timeout bounds each HTTP request (default 10 s); the caller's context may shorten it.
	Timeout time.Duration
	// Logger receives debug lines; tokens are only ever logged as fingerprints. Nil discards.
	Logger *slog.Logger
	// Key is the thing's key, used over coap:// and coaps:// (an IoT Gateway) for the self-signed DTLS
	// client certificate; nil means a fresh P-256 key. Unused over HTTP.
	Key *Key
}

// Client talks to one AM realm. It is safe for concurrent use.
type Client struct {
	ep         endpoints
	realm      string
	http       *http.Client
	timeout    time.Duration
	log        *slog.Logger
	cookieName string
	tr         transport // nil: HTTP straight to AM

	jwksMu  sync.Mutex
	jwksURI string
	jwks    *jose.JSONWebKeySet
}

// NewClient checks cfg, learns AM's session cookie name from /json/serverinfo/* and, best effort, the
// realm's JWKS through OIDC discovery (used for local introspection when AM cannot be asked).
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("sdk: base URL %q: want http(s)://host[:port]/path or coap(s)://host[:port]", cfg.BaseURL)
	}
	switch u.Scheme {
	case "http", "https":
	case "coap", "coaps":
		return newGatewayClient(ctx, cfg, u)
	default:
		return nil, fmt.Errorf("sdk: base URL %q: want http(s)://host[:port]/path or coap(s)://host[:port]", cfg.BaseURL)
	}
	if err := checkRealm(cfg.Realm); err != nil {
		return nil, fmt.Errorf("sdk: %w", err)
	}
	c := &Client{
		ep:         endpoints{base: strings.TrimRight(cfg.BaseURL, "/"), realm: cfg.Realm},
		realm:      cfg.Realm,
		http:       cfg.HTTPClient,
		timeout:    cfg.Timeout,
		log:        cfg.Logger,
		cookieName: defaultCookieName,
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := c.loadServerInfo(ctx); err != nil {
		return nil, err
	}
	// Best effort, as AM's own SDK: the keys let IntrospectToken answer while AM is unreachable.
	if err := c.discover(ctx); err != nil {
		c.log.DebugContext(ctx, "oidc discovery failed; local introspection disabled until it works", "err", err)
	} else if _, err := c.fetchJWKS(ctx); err != nil {
		c.log.DebugContext(ctx, "jwks fetch failed", "err", err)
	}
	return c, nil
}

// newGatewayClient is a client whose requests go through an IoT Gateway: AM's URLs and realm are the
// gateway's (learnt from /aminfo), cfg.Realm is ignored.
func newGatewayClient(ctx context.Context, cfg Config, u *url.URL) (*Client, error) {
	tr, err := newCOAPTransport(u, cfg.Key)
	if err != nil {
		return nil, err
	}
	c := &Client{tr: tr, timeout: cfg.Timeout, log: cfg.Logger, cookieName: defaultCookieName}
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.ep, err = tr.gatewayEndpoints(ctx, c.timeout); err != nil {
		tr.close()
		return nil, err
	}
	c.realm = c.ep.realm
	return c, nil
}

// Close releases the client's gateway connection, if any; HTTP clients hold nothing to release.
func (c *Client) Close() error {
	if t, ok := c.tr.(*coapTransport); ok {
		t.close()
	}
	return nil
}

// Realm returns the realm the client was configured with.
func (c *Client) Realm() string { return c.realm }

// BaseURL returns AM's base URL without a trailing slash.
func (c *Client) BaseURL() string { return c.ep.base }

// OAuthBaseURL returns the realm's OAuth 2.0 base URL ({base}/oauth2[/realms/root/realms/…]).
func (c *Client) OAuthBaseURL() string { return c.ep.oauthBase() }

// CookieName returns the SSO cookie name AM announced.
func (c *Client) CookieName() string { return c.cookieName }

func (c *Client) loadServerInfo(ctx context.Context) error {
	resp, err := c.send(ctx, "serverinfo", httpRequest{method: http.MethodGet, url: c.ep.serverInfo(), api: apiServerInfo})
	if err != nil {
		return err
	}
	var info struct {
		CookieName string `json:"cookieName"`
	}
	if err := json.Unmarshal(resp, &info); err != nil {
		return fmt.Errorf("serverinfo: decode: %w", err)
	}
	if info.CookieName != "" {
		c.cookieName = info.CookieName
	}
	return nil
}

func (c *Client) discover(ctx context.Context) error {
	resp, err := c.send(ctx, "oidc discovery", httpRequest{method: http.MethodGet, url: c.ep.discovery()})
	if err != nil {
		return err
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(resp, &doc); err != nil {
		return fmt.Errorf("oidc discovery: decode: %w", err)
	}
	if doc.JWKSURI == "" {
		return errors.New("oidc discovery: no jwks_uri")
	}
	c.jwksMu.Lock()
	c.jwksURI = doc.JWKSURI
	c.jwksMu.Unlock()
	return nil
}

// httpRequest is one call to AM.
type httpRequest struct {
	method      string
	url         string
	api         string // Accept-API-Version, empty for none
	contentType string
	body        []byte
	ssoToken    string // sent as the session cookie
	header      http.Header
}

// send performs r within the client's timeout and returns the body of a success reply (200, 201, 204,
// 304); any other status becomes an *APIError carrying the raw body.
func (c *Client) send(ctx context.Context, op string, r httpRequest) ([]byte, error) {
	status, body, err := c.roundTrip(ctx, op, r)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusOK, http.StatusCreated, http.StatusNoContent, http.StatusNotModified:
		return body, nil
	}
	return nil, newAPIError(op, status, body)
}

// roundTrip performs r and returns status and body whatever the status.
func (c *Client) roundTrip(ctx context.Context, op string, r httpRequest) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.tr != nil {
		status, data, err := c.tr.roundTrip(ctx, op, r)
		if err == nil {
			c.log.DebugContext(ctx, "gateway call", "op", op, "status", status, "bytes", len(data))
		}
		return status, data, err
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", op, err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", contentJSON)
	if r.api != "" {
		req.Header.Set("Accept-API-Version", r.api)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.ssoToken != "" {
		req.AddCookie(&http.Cookie{Name: c.cookieName, Value: r.ssoToken})
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", op, redactURL(r.url), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%s: read reply: %w", op, err)
	}
	if len(data) > maxBody {
		return 0, nil, fmt.Errorf("%s: reply larger than %d bytes", op, maxBody)
	}
	c.log.DebugContext(ctx, "am call", "op", op, "status", resp.StatusCode, "bytes", len(data))
	return resp.StatusCode, data, nil
}

// redactURL drops the query, which never holds secrets in AM's IoT API but may hold a user code.
func redactURL(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i]
	}
	return raw
}
