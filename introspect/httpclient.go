package introspect

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Defaults for calls to the identity provider.
const (
	DefaultHTTPTimeout      = 5 * time.Second
	DefaultMaxConnsPerHost  = 16
	maxMetadataBytes        = 1 << 20 // discovery documents and key sets
	maxIntrospectionAnswer  = 64 << 10
	idleConnTimeout         = 90 * time.Second
	defaultDialTimeout      = 3 * time.Second
	defaultTLSHandshakeTime = 5 * time.Second
)

// newHTTPClient builds a client with its own transport, so that the broker's calls to the identity provider have
// a bounded connection pool (a token flood queues instead of opening thousands of sockets) and no setting leaks
// in from http.DefaultTransport changes elsewhere in the process.
func newHTTPClient(timeout time.Duration, maxConns int) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: defaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:       maxConns,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   defaultTLSHandshakeTime,
		ResponseHeaderTimeout: timeout,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// Redirects would let an endpoint send the broker's client credentials or tokens elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// statusError is a non-200 answer from the identity provider.
type statusError struct {
	URL    string
	Status int
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s: HTTP %d", e.URL, e.Status) }

// fetchDocument GETs a JSON document (discovery, key set) of at most limit bytes and requires HTTP 200.
func fetchDocument(ctx context.Context, client *http.Client, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("introspect fetch %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("introspect fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // lets the connection be reused
		return nil, &statusError{URL: url, Status: resp.StatusCode}
	}
	return readLimited(resp.Body, limit)
}

// readLimited reads a whole body, failing when it exceeds limit instead of truncating it.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("introspect read body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("introspect read body: larger than %d bytes", limit)
	}
	return body, nil
}
