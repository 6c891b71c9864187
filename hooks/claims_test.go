package hooks_test

import (
	"testing"
	"time"

	"imb/authz"
	"imb/broker"
	"imb/internal/issuer"
)

// TestClaimsMap connects through the real broker with tokens shaped by providers other than AM: scopes in scp,
// grants as Keycloak realm roles, the thing named by client_id, and a policy placeholder on a nested claim. The
// connect audit line must list the scopes read and the claims the policy used.
func TestClaimsMap(t *testing.T) {
	const nested = testPolicy + `  - name: by-site
    effect: allow
    actions: [publish]
    topics: ["sites/{claim.ext.site}/#"]
`
	tests := []struct {
		name     string
		mod      func(*broker.Config)
		claims   issuer.Claims
		clientID string
		topic    string
		scopes   string // the audit line's scopes
		used     string // the audit line's claims, "" for absent
	}{
		{"scp array", nil, issuer.Claims{"sub": "t1", "scp": []string{"publish"}}, "t1",
			"things/t1/telemetry/x", "[publish]", ""},
		{"scp string", nil, issuer.Claims{"sub": "t1", "scp": "publish subscribe"}, "t1",
			"things/t1/telemetry/x", "[publish subscribe]", ""},
		{"Keycloak realm roles", func(c *broker.Config) { c.ScopeClaims = []string{"realm_access.roles"} },
			issuer.Claims{"sub": "t1", "scope": "profile email", "realm_access": map[string]any{"roles": []string{"publish"}}}, "t1",
			"things/t1/state", "[publish]", ""},
		{"thing id from client_id", func(c *broker.Config) { c.ThingIDClaim = "client_id" },
			issuer.Claims{"sub": "8f2c-user-uuid", "client_id": "dev-7", "scope": "publish"}, "dev-7",
			"things/dev-7/telemetry/x", "[publish]", ""},
		{"nested claim placeholder", nil,
			issuer.Claims{"sub": "t1", "scope": "read", "ext": map[string]any{"site": "paris"}}, "t1",
			"sites/paris/line-1", "[read]", "map[ext.site:paris]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol, err := authz.Parse("topics.yaml", []byte(nested))
			if err != nil {
				t.Fatal(err)
			}
			mods := []func(*broker.Config){func(c *broker.Config) { c.Policy = pol }}
			if tt.mod != nil {
				mods = append(mods, tt.mod)
			}
			e := newEnv(t, mods...)
			r := e.connect5(tt.clientID, e.iss.Mint(tt.claims, time.Hour), v5opts{clean: true})
			if r.err != nil || r.code() != 0 {
				t.Fatalf("connect: %v (code %d)", r.err, r.code())
			}
			if code := r.publish(t, tt.topic, 1, false, "x"); code != 0 {
				t.Errorf("publish %s: reason 0x%02x, want success", tt.topic, code)
			}
			if code := r.publish(t, "things/other/telemetry/x", 1, false, "x"); code != 0x87 {
				t.Errorf("publish to another thing: reason 0x%02x, want 0x87", code)
			}
			lines := e.audit.find("connect")
			if len(lines) != 1 {
				t.Fatalf("connect audit lines: %v", lines)
			}
			if l := lines[0]; l["scopes"] != tt.scopes || l["claims"] != tt.used || l["thing_id"] != tt.clientID {
				t.Errorf("audit line %v: want scopes %s, claims %q, thing_id %s", l, tt.scopes, tt.used, tt.clientID)
			}
		})
	}
}

// TestRefusalNamesWhatWasWrong checks that the audit line of a refused CONNECT says which iss or aud the token
// carried and what was expected.
func TestRefusalNamesWhatWasWrong(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", "" })
	tests := []struct {
		name   string
		claims issuer.Claims
		reason string
		detail string
	}{
		{"issuer", issuer.Claims{"sub": "t1", "iss": "https://other.example/realms/x"}, "issuer not accepted",
			`token iss "https://other.example/realms/x", expected "` + e.iss.URL() + `"`},
		{"audience", issuer.Claims{"sub": "t1", "aud": []string{"account", "broker"}}, "audience not accepted",
			`token aud ["account" "broker"], expected one of ["imb"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.connect5("t1", e.iss.Mint(tt.claims, time.Hour), v5opts{clean: true})
			if r.code() != 0x86 {
				t.Fatalf("CONNACK %d, want 0x86", r.code())
			}
			lines := e.audit.find("connect_refused")
			if len(lines) == 0 {
				t.Fatal("no connect_refused line")
			}
			if l := lines[len(lines)-1]; l["reason"] != tt.reason || l["detail"] != tt.detail {
				t.Errorf("audit line %v: want reason %q, detail %s", l, tt.reason, tt.detail)
			}
		})
	}
}
