package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// localLeeway is the clock skew allowed on exp and nbf when verifying a token locally.
const localLeeway = 60 * time.Second

// asymmetricAlgorithms are the JWS algorithms local introspection accepts: never HS*, whose key AM
// does not publish, and never "none".
var asymmetricAlgorithms = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.PS256, jose.PS384, jose.PS512, jose.RS256, jose.RS384, jose.RS512,
}

// errNotLocal reports a token that local introspection cannot judge (not a JWS, symmetric, no kid, no
// JWKS); the caller must rely on AM.
var errNotLocal = errors.New("token cannot be introspected locally")

// IntrospectLocally verifies a JWT access token against the realm's JWKS, the fallback of
// IntrospectToken. A token that is well formed but fails verification or is outside its validity
// window is inactive; one that cannot be judged locally yields an error.
func (c *Client) IntrospectLocally(ctx context.Context, token string) (*Introspection, error) {
	jws, err := jose.ParseSigned(token, asymmetricAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotLocal, err)
	}
	if len(jws.Signatures) != 1 || jws.Signatures[0].Header.KeyID == "" {
		return nil, fmt.Errorf("%w: no kid", errNotLocal)
	}
	kid := jws.Signatures[0].Header.KeyID
	key, err := c.jwk(ctx, kid)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return &Introspection{Active: false, Claims: map[string]any{"active": false}, Local: true}, nil
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return &Introspection{Active: false, Claims: map[string]any{"active": false}, Local: true}, nil
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return &Introspection{Active: false, Claims: map[string]any{"active": false}, Local: true}, nil
	}
	now := time.Now()
	active := true
	if exp, ok := claims["exp"].(float64); !ok || now.After(time.Unix(int64(exp), 0).Add(localLeeway)) {
		active = false
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Add(localLeeway).Before(time.Unix(int64(nbf), 0)) {
		active = false
	}
	if !active {
		return &Introspection{Active: false, Claims: map[string]any{"active": false}, Local: true}, nil
	}
	if list, ok := claims["scope"].([]any); ok {
		parts := make([]string, 0, len(list))
		for _, v := range list {
			if s, ok := v.(string); ok {
				parts = append(parts, s)
			}
		}
		claims["scope"] = strings.Join(parts, " ")
	}
	claims["active"] = true
	in, err := introspectionFromClaims(claims)
	if err != nil {
		return nil, err
	}
	in.Local = true
	return in, nil
}

// jwk returns the realm's key with kid, fetching the JWKS when it is not cached or lacks kid (once per
// call). It returns nil, nil for a kid the JWKS does not hold.
func (c *Client) jwk(ctx context.Context, kid string) (any, error) {
	c.jwksMu.Lock()
	set, uri := c.jwks, c.jwksURI
	c.jwksMu.Unlock()
	if set != nil {
		if keys := set.Key(kid); len(keys) > 0 {
			return keys[0].Key, nil
		}
	}
	if uri == "" {
		if err := c.discover(ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", errNotLocal, err)
		}
	}
	set, err := c.fetchJWKS(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotLocal, err)
	}
	if keys := set.Key(kid); len(keys) > 0 {
		return keys[0].Key, nil
	}
	return nil, nil
}

// fetchJWKS loads the JWKS from the discovered jwks_uri and caches it.
func (c *Client) fetchJWKS(ctx context.Context) (*jose.JSONWebKeySet, error) {
	c.jwksMu.Lock()
	uri := c.jwksURI
	c.jwksMu.Unlock()
	if uri == "" {
		return nil, errors.New("jwks: no jwks_uri discovered")
	}
	reply, err := c.send(ctx, "jwks", httpRequest{method: http.MethodGet, url: uri})
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(reply, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	c.jwksMu.Lock()
	c.jwks = &set
	c.jwksMu.Unlock()
	return &set, nil
}
