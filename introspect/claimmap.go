package introspect

import (
	"fmt"
	"strings"

	"imb/internal/claimpath"
)

// DefaultScopeClaims are the claims scopes are read from when ClaimMap.Scopes is empty: scope (RFC 8693 §4.2, RFC
// 7662, AM, Keycloak, Auth0, Cognito) and scp (Ory Hydra, Okta, Microsoft Entra ID). Each call returns a new slice.
func DefaultScopeClaims() []string { return []string{"scope", "scp"} }

// ClaimMap says which claims carry the facts the broker needs. Identity providers differ: scopes may be in scope or
// scp, or the grants may be roles (Keycloak's realm_access.roles, Cognito's cognito:groups); the thing may be named
// by sub, by client_id for client_credentials tokens, or by a user name. Paths are dotted (see claimpath.Lookup).
// The zero value is the default.
type ClaimMap struct {
	// Scopes lists the claim paths whose values are the token's scopes; every one present contributes, each a
	// space-separated string or an array of strings, and duplicates are dropped. Empty means DefaultScopeClaims.
	Scopes []string
	// ThingID is the claim path naming the plain thing id that fills {sub} and the client id binding. Empty means
	// AM's rule: subname, else the id in "(usr!ID)" or "(age!ID)", else sub. A configured claim that is missing or
	// not a string refuses the token. It never changes the Principal, which stays the whole sub of the issuer.
	ThingID string
}

// check reports a path that can name no claim.
func (m ClaimMap) check() error {
	for _, p := range m.Scopes {
		if p == "" {
			return fmt.Errorf("introspect: empty scope claim name")
		}
	}
	return nil
}

// scopes reads the scopes by the map.
func (m ClaimMap) scopes(claims map[string]any) ([]string, error) {
	paths := m.Scopes
	if len(paths) == 0 {
		paths = DefaultScopeClaims()
	}
	var out []string
	for _, p := range paths {
		v, ok := claimpath.Lookup(claims, p)
		if !ok {
			continue
		}
		got, err := stringsOf(v, p, strings.Fields)
		if err != nil {
			return nil, err
		}
		for _, s := range got {
			if !contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// thingID reads the plain thing id by the map; sub is the token's subject as already read.
func (m ClaimMap) thingID(claims map[string]any, sub string) (string, error) {
	if m.ThingID == "" {
		subname, err := stringClaim(claims, "subname")
		if err != nil {
			return "", err
		}
		return thingID(sub, subname), nil
	}
	v, ok := claimpath.Lookup(claims, m.ThingID)
	if !ok {
		return "", invalid(ReasonThingIDMissing, fmt.Errorf("claim %q", m.ThingID))
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", claimTypeError(m.ThingID, "a non-empty string")
	}
	return s, nil
}

// stringsOf converts a claim value that is a string (by fromString) or an array of strings.
func stringsOf(v any, name string, fromString func(string) []string) ([]string, error) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil, nil
		}
		return fromString(v), nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, claimTypeError(name, "a string or an array of strings")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, claimTypeError(name, "a string or an array of strings")
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// ScopesOf reads the scopes of claims by the map, as validation does: for claims that changed after the token was
// validated (a CAEP token-claims-change event).
func (m ClaimMap) ScopesOf(claims map[string]any) ([]string, error) { return m.scopes(claims) }
