package sdk

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Token is an OAuth 2.0 token response from AM. AccessToken and RefreshToken are bearer secrets: the
// String and LogValue methods print only fingerprints.
type Token struct {
	AccessToken  string
	RefreshToken string
	TokenType    string
	Scopes       []string
	// ExpiresIn is the lifetime AM announced, in seconds; Expiry is the instant it ends, computed when
	// the reply arrived (zero when AM gave no lifetime).
	ExpiresIn int64
	Expiry    time.Time
}

// Valid reports whether the token has an access token that has not expired.
func (t *Token) Valid() bool {
	return t != nil && t.AccessToken != "" && (t.Expiry.IsZero() || time.Now().Before(t.Expiry))
}

// ExpiresWithin reports whether the token expires within d from now; a token without expiry never does.
func (t *Token) ExpiresWithin(d time.Duration) bool {
	return !t.Expiry.IsZero() && time.Until(t.Expiry) < d
}

// String describes the token without revealing it.
func (t Token) String() string {
	return fmt.Sprintf("token %s scopes=%v expiry=%s", Fingerprint(t.AccessToken), t.Scopes, t.Expiry.Format(time.RFC3339))
}

// GoString keeps %#v from printing the secrets.
func (t Token) GoString() string { return t.String() }

// LogValue implements slog.LogValuer with fingerprints only.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access", Fingerprint(t.AccessToken)),
		slog.Any("scopes", t.Scopes),
		slog.Time("expiry", t.Expiry),
	)
}

// tokenResponse is RFC 6749 §5.1; scope is a space-separated string (a JSON array is tolerated).
type tokenResponse struct {
	AccessToken  string          `json:"access_token"`
	RefreshToken string          `json:"refresh_token"`
	TokenType    string          `json:"token_type"`
	Scope        json.RawMessage `json:"scope"`
	ExpiresIn    json.Number     `json:"expires_in"`
}

func parseToken(op string, data []byte, now time.Time) (*Token, error) {
	var r tokenResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: decode token response: %w", op, err)
	}
	if r.AccessToken == "" {
		return nil, fmt.Errorf("%s: token response without access_token", op)
	}
	t := &Token{AccessToken: r.AccessToken, RefreshToken: r.RefreshToken, TokenType: r.TokenType, Scopes: parseScope(r.Scope)}
	if r.ExpiresIn != "" {
		secs, err := r.ExpiresIn.Int64()
		if err != nil || secs < 0 {
			return nil, fmt.Errorf("%s: bad expires_in %q", op, r.ExpiresIn)
		}
		t.ExpiresIn = secs
		t.Expiry = now.Add(time.Duration(secs) * time.Second)
	}
	return t, nil
}

// parseScope reads a scope value that is a space-separated string or an array of strings.
func parseScope(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.Fields(s)
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	return nil
}
