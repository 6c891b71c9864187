package introspect

import (
	"context"
	"crypto/elliptic"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
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

// TestNeverFetchedKeysSaySo checks that an issuer whose key set never loaded is reported as such, by Ready, by
// Validate and in the log, rather than as "keeping the last good set".
func TestNeverFetchedKeysSaySo(t *testing.T) {
	k := newECKey(t, "k1", elliptic.P256(), "ES256")
	srv := newIssuerServer(t, k)
	srv.setJWKSStatus(http.StatusInternalServerError)
	var logs strings.Builder
	var mu sync.Mutex
	v, err := NewJWT(context.Background(), JWTConfig{
		Issuer: srv.issuer(),
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	const want = "no key set has ever been fetched for " // followed by the issuer
	if err := v.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), want+srv.issuer()) {
		t.Errorf("Ready: %v, want it to say %q", err, want)
	}
	_, err = v.Validate(context.Background(), signJOSE(t, k, "JWT", claimsFor(srv.issuer(), "t1")))
	if reasonOf(t, err, ErrUnavailable) != ReasonNoKeys || !strings.Contains(err.Error(), want+srv.issuer()) {
		t.Errorf("Validate: %v, want %q saying %q", err, ReasonNoKeys, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "no key set has ever been fetched for this issuer") ||
		strings.Contains(logs.String(), "keeping the last good set") {
		t.Errorf("log does not say that no key set was ever fetched:\n%s", logs.String())
	}
}

// lockedWriter serialises writes from the background refresh and the test.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
