package amdev

import (
	"slices"
	"testing"
)

// TestTokenKeyRotationThroughSecretMappings rotates each token secret
// (ES256, RSA, HMAC signing and the encryption secret) as AM's automation
// does, checking through amdev's introspection that the new alias makes
// the next token, the old one still verifies until it is unmapped, and
// that mapping an alias again (here by DELETE, back to the default)
// brings its key back.
func TestTokenKeyRotationThroughSecretMappings(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	h := crestHeaders(admin, "protocol=1.0,resource=1.0")
	mappings := e.srv.URL() + "/json/global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/"
	issue, active := e.cloudAppToken, e.active
	mapTo := func(secret, method, body string) []any {
		t.Helper()
		status, doc := e.call(method, mappings+secret, h, body)
		if status != 200 || doc["secretId"] != secret {
			t.Fatalf("%s %s: %d %v", method, secret, status, doc)
		}
		return doc["aliases"].([]any)
	}
	for _, tc := range []struct {
		secret, defaultAlias, alg string
		encrypted                 bool
	}{
		{secretSigningES256, "es256test", "ES256", false},
		{secretSigningRSA, "rsajwtsigningkey", "RS256", false},
		{secretSigningHMAC, "hmacsigningtest", "HS256", false},
		{secretTokenEncryption, "directenctest", "ES256", true},
	} {
		t.Run(tc.alg+map[bool]string{true: " encrypted"}[tc.encrypted], func(t *testing.T) {
			e.setProvider(admin, "", map[string]any{"advancedOAuth2Config": map[string]any{
				"tokenSigningAlgorithm": tc.alg, "tokenEncryptionEnabled": tc.encrypted}})
			if got := mapTo(tc.secret, "GET", ""); !slices.Equal(got, []any{tc.defaultAlias}) {
				t.Fatalf("default mapping: %v", got)
			}
			old := issue()
			mapTo(tc.secret, "PUT", `{"secretId": "`+tc.secret+`", "aliases": ["rotated", "`+tc.defaultAlias+`"]}`)
			fresh := issue()
			if !active(old) || !active(fresh) {
				t.Fatalf("after rotation: old active %t, new active %t", active(old), active(fresh))
			}
			mapTo(tc.secret, "PUT", `{"aliases": ["rotated"]}`)
			if active(old) || !active(fresh) {
				t.Fatalf("after retiring the old alias: old active %t, new active %t", active(old), active(fresh))
			}
			if got := mapTo(tc.secret, "DELETE", ""); !slices.Equal(got, []any{"rotated"}) {
				t.Fatalf("DELETE answers the last state: %v", got)
			}
			if got := mapTo(tc.secret, "GET", ""); !slices.Equal(got, []any{tc.defaultAlias}) || !active(old) || active(fresh) {
				t.Fatalf("back to the default alias %v: old active %t, new active %t", got, active(old), active(fresh))
			}
		})
	}
	// Automation that creates the mapping, as in a fresh AM, sets it.
	status, doc := e.call("POST", mappings[:len(mappings)-1]+"?_action=create", h,
		`{"secretId": "`+secretSigningES256+`", "aliases": ["created", "es256test"]}`)
	if status != 201 || !slices.Equal(doc["aliases"].([]any), []any{"created", "es256test"}) {
		t.Fatalf("create: %d %v", status, doc)
	}
	if status, body := e.call("PUT", mappings+secretSigningES256, map[string]string{"iPlanetDirectoryPro": admin,
		"Accept-API-Version": "protocol=1.0,resource=1.0", "If-None-Match": "*"}, `{"aliases": ["x"]}`); status != 412 {
		t.Fatalf("PUT If-None-Match on an existing mapping: %d %v", status, body)
	}
	// The query lists every mapping amdev serves.
	status, q := e.call("GET", mappings[:len(mappings)-1]+"?_queryFilter=true", h, "")
	if status != 200 || q["resultCount"] != float64(len(tokenSecrets)+1) {
		t.Fatalf("query: %d %v", status, q)
	}
}
