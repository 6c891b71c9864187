package introspect

import (
	"errors"
	"slices"
	"testing"
)

// TestClaimMap reads scopes and the thing id the way each identity provider puts them.
func TestClaimMap(t *testing.T) {
	tests := []struct {
		name   string
		cm     ClaimMap
		claims map[string]any
		thing  string
		scopes []string
		reason string // expected refusal, "" for none
	}{
		{"scope string", ClaimMap{}, map[string]any{"sub": "a", "scope": "x y"}, "a", []string{"x", "y"}, ""},
		{"scp array (Okta, Entra ID)", ClaimMap{}, map[string]any{"sub": "a", "scp": []any{"x", "y"}}, "a", []string{"x", "y"}, ""},
		{"scp string (Entra ID delegated)", ClaimMap{}, map[string]any{"sub": "a", "scp": "x y"}, "a", []string{"x", "y"}, ""},
		{"scope and scp merged", ClaimMap{}, map[string]any{"sub": "a", "scope": "x", "scp": []any{"x", "z"}}, "a", []string{"x", "z"}, ""},
		{"scp of wrong type", ClaimMap{}, map[string]any{"sub": "a", "scp": 3.0}, "", nil, ReasonClaimType},
		{"Keycloak realm roles", ClaimMap{Scopes: []string{"realm_access.roles"}},
			map[string]any{"sub": "a", "scope": "profile", "realm_access": map[string]any{"roles": []any{"publisher"}}}, "a", []string{"publisher"}, ""},
		{"Keycloak client roles", ClaimMap{Scopes: []string{"resource_access.mqtt-broker.roles"}},
			map[string]any{"sub": "a", "resource_access": map[string]any{"mqtt-broker": map[string]any{"roles": []any{"sub", "pub"}}}}, "a", []string{"sub", "pub"}, ""},
		{"Cognito groups", ClaimMap{Scopes: []string{"scope", "cognito:groups"}},
			map[string]any{"sub": "a", "scope": "mqtt/publish", "cognito:groups": []any{"plant-a"}}, "a", []string{"mqtt/publish", "plant-a"}, ""},
		{"configured path absent", ClaimMap{Scopes: []string{"realm_access.roles"}}, map[string]any{"sub": "a", "scope": "x"}, "a", nil, ""},
		{"thing id from client_id", ClaimMap{ThingID: "client_id"}, map[string]any{"sub": "(usr!u)", "client_id": "dev-1"}, "dev-1", nil, ""},
		{"thing id from azp", ClaimMap{ThingID: "azp"}, map[string]any{"sub": "x1", "azp": "dev-2"}, "dev-2", nil, ""},
		{"thing id from preferred_username", ClaimMap{ThingID: "preferred_username"}, map[string]any{"sub": "uuid", "preferred_username": "dev-3"}, "dev-3", nil, ""},
		{"thing id from subname", ClaimMap{ThingID: "subname"}, map[string]any{"sub": "(usr!x)", "subname": "dev-4"}, "dev-4", nil, ""},
		{"thing id claim missing", ClaimMap{ThingID: "azp"}, map[string]any{"sub": "a"}, "", nil, ReasonThingIDMissing},
		{"thing id claim not a string", ClaimMap{ThingID: "azp"}, map[string]any{"sub": "a", "azp": []any{"x"}}, "", nil, ReasonClaimType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := tokenFromClaims(tt.claims, MethodJWT, tt.cm)
			if tt.reason != "" {
				var e *Error
				if !errors.As(err, &e) || e.Reason != tt.reason || !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("err %v, want reason %q", err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.ThingID != tt.thing || !slices.Equal(tok.Scopes, tt.scopes) {
				t.Errorf("thing %q scopes %q, want %q %q", tok.ThingID, tok.Scopes, tt.thing, tt.scopes)
			}
			if tok.Principal.Subject != tt.claims["sub"] {
				t.Errorf("principal %+v: the thing id claim must not replace sub", tok.Principal)
			}
		})
	}
}
