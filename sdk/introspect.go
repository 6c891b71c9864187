package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Introspection is the RFC 7662 answer about a token.
type Introspection struct {
	Active   bool
	Scopes   []string
	Subject  string // sub as issued: a plain id or AM's compound "(usr!id)"
	ClientID string
	Expiry   time.Time
	// Claims holds every member of the reply (or, for a local answer, every claim of the JWT).
	Claims map[string]any
	// Local is true when AM could not be asked and the answer comes from verifying the JWT against the
	// realm's JWKS.
	Local bool
}

// SubjectName returns the plain id of the token's subject: subname if present, else sub without AM's
// "(usr!" … ")" wrapping.
func (i *Introspection) SubjectName() string {
	if s, ok := i.Claims["subname"].(string); ok && s != "" {
		return s
	}
	return plainSubject(i.Subject)
}

func plainSubject(sub string) string {
	if strings.HasPrefix(sub, "(") && strings.HasSuffix(sub, ")") {
		if _, id, ok := strings.Cut(sub[1:len(sub)-1], "!"); ok {
			return id
		}
	}
	return sub
}

// IntrospectToken asks AM about token (introspect_token). When AM cannot answer (a transport or HTTP
// error), a JWT signed with an asymmetric key named by kid is verified locally against the realm's JWKS
// (refetched once on an unknown kid) with 60 s leeway on exp and nbf; the result then has Local set.
// If that is not possible either, the error of the AM call is returned.
func (t *Thing) IntrospectToken(ctx context.Context, token string) (*Introspection, error) {
	reply, err := t.call(ctx, "introspect_token", http.MethodPost, t.client.ep.thingsAction("introspect_token"), map[string]any{"token": token})
	if err == nil {
		return parseIntrospection(reply)
	}
	local, lerr := t.client.IntrospectLocally(ctx, token)
	if lerr != nil {
		t.client.log.DebugContext(ctx, "local introspection impossible", "token", Fingerprint(token), "err", lerr)
		return nil, err
	}
	return local, nil
}

func parseIntrospection(data []byte) (*Introspection, error) {
	var claims map[string]any
	if err := json.Unmarshal(data, &claims); err != nil {
		return nil, fmt.Errorf("introspect_token: decode: %w", err)
	}
	return introspectionFromClaims(claims)
}

func introspectionFromClaims(claims map[string]any) (*Introspection, error) {
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, errors.New("introspect_token: reply without boolean active")
	}
	in := &Introspection{Active: active, Claims: claims}
	in.Subject, _ = claims["sub"].(string)
	in.ClientID, _ = claims["client_id"].(string)
	switch s := claims["scope"].(type) {
	case string:
		in.Scopes = strings.Fields(s)
	case []any:
		for _, v := range s {
			if str, ok := v.(string); ok {
				in.Scopes = append(in.Scopes, str)
			}
		}
	}
	if exp, ok := claims["exp"].(float64); ok {
		in.Expiry = time.Unix(int64(exp), 0)
	}
	return in, nil
}
