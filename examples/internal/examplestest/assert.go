package examplestest

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"imb/sdk"
)

// tokenLines are the walk-through's last lines of every thing example.
var tokenLines = regexp.MustCompile(`(?m)^Requesting access token\.\.\. Done\nAccess token: (\S+)\nExpires in: (\d+)\nScope\(s\): \[(.*)\]\n\z`)

// TokenLines checks that out ends with the walk-through's token lines, with scopes and an hour's
// lifetime, and returns the printed access token.
func TokenLines(t testing.TB, out, scopes string) string {
	t.Helper()
	m := tokenLines.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output does not end with the token lines:\n%s", out)
	}
	if m[2] != "3600" && m[2] != "3599" {
		t.Errorf("Expires in: %s, want about an hour", m[2])
	}
	if m[3] != scopes {
		t.Errorf("Scope(s): [%s], want [%s]", m[3], scopes)
	}
	return m[1]
}

// KeyFile writes a fresh ES256 key as a PKCS#8 PEM file for -key and returns its path and the key.
func KeyFile(t testing.TB) (string, *sdk.Key) {
	t.Helper()
	key, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key.Signer())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "thing.key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

// Introspect asks AM, through the things endpoint of thingID (authenticated with key in tree), about token.
func Introspect(t testing.TB, env *Env, tree, thingID string, key *sdk.Key, token string) *sdk.Introspection {
	t.Helper()
	client, err := sdk.NewClient(t.Context(), sdk.Config{BaseURL: env.URL()})
	if err != nil {
		t.Fatal(err)
	}
	in, err := client.NewThing(tree, &sdk.Authenticator{ThingID: thingID, Key: key}).IntrospectToken(t.Context(), token)
	if err != nil {
		t.Fatalf("introspect: %v", err)
	}
	return in
}
