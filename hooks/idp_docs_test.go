package hooks_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"imb/authz"
	"imb/broker"
	"imb/internal/issuer"
)

// docBlock matches a fenced block of a docs/idp page whose info string names what it is: "json token",
// "yaml imb.yaml" or "yaml topics.yaml".
var docBlock = regexp.MustCompile("(?s)```(?:json|yaml) (token|imb\\.yaml|topics\\.yaml)\n(.*?)```")

// TestIdPDocs takes each docs/idp page at its word: the token claims it shows (as that provider documents them)
// are signed by the test issuer, the broker runs with the page's imb.yaml and topics.yaml, and the thing must
// connect and be allowed and refused what the page says.
func TestIdPDocs(t *testing.T) {
	tests := []struct {
		page  string
		typ   string // JWT typ header the provider uses
		thing string // the thing id the page's configuration yields, used as MQTT client id
		allow []string
		deny  []string // refused publishes
	}{
		{"am.md", "JWT", "thermostat-1", []string{"things/thermostat-1/telemetry/temp"}, []string{"things/thermostat-2/telemetry/temp"}},
		{"hydra.md", "JWT", "thermostat-1", []string{"things/thermostat-1/telemetry/temp"}, []string{"things/thermostat-1/state"}},
		{"keycloak.md", "JWT", "thermostat-1", []string{"things/thermostat-1/telemetry/temp"}, []string{"things/service-account-thermostat-1/telemetry/x"}},
		{"okta.md", "JWT", "0oa8f5j3ecb5w8dxV4x7", []string{"things/0oa8f5j3ecb5w8dxV4x7/telemetry/temp"}, []string{"things/other/telemetry/x"}},
		{"entra-id.md", "JWT", "3f3c2a9e-8b5d-4d3e-9a26-0c1f5c7b9e10", []string{"things/3f3c2a9e-8b5d-4d3e-9a26-0c1f5c7b9e10/telemetry/t"}, []string{"things/b5a1c7e4-2d3f-4a6b-8c9d-0e1f2a3b4c5d/telemetry/t"}},
		{"auth0.md", "JWT", "Kq5lD4wSA0xGfQ7rhAvsJ0SPtJ9Qzv2B", []string{"things/Kq5lD4wSA0xGfQ7rhAvsJ0SPtJ9Qzv2B/telemetry/t"}, []string{"things/x/telemetry/t"}},
		{"cognito.md", "JWT", "thermostat-1", []string{"things/thermostat-1/telemetry/temp"}, []string{"things/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/telemetry/t"}},
		{"glewlwyd.md", "at+jwt", "thermostat-1", []string{"things/thermostat-1/telemetry/temp"}, []string{"things/thermostat-1/commands/x"}},
		{"node-oidc-provider.md", "at+jwt", "thermostat-1", []string{"things/thermostat-1/telemetry/temp"}, []string{"things/thermostat-2/telemetry/temp"}},
	}
	pages, err := filepath.Glob(filepath.Join("..", "docs", "idp", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) != len(tests)+1 { // plus README.md
		t.Fatalf("docs/idp has %d pages, the test covers %d: add the new page here", len(pages)-1, len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.page, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join("..", "docs", "idp", tt.page))
			if err != nil {
				t.Fatal(err)
			}
			blocks := map[string][]byte{}
			for _, m := range docBlock.FindAllSubmatch(text, -1) {
				blocks[string(m[1])] = m[2]
			}
			if len(blocks) != 3 {
				t.Fatalf("page has blocks %v, want token, imb.yaml and topics.yaml", keys(blocks))
			}
			var claims issuer.Claims
			dec := json.NewDecoder(bytes.NewReader(blocks["token"]))
			dec.UseNumber()
			if err := dec.Decode(&claims); err != nil {
				t.Fatalf("token block: %v", err)
			}
			pol, err := authz.Parse(tt.page+" topics.yaml", blocks["topics.yaml"])
			if err != nil {
				t.Fatal(err)
			}
			var page broker.Config
			yd := yaml.NewDecoder(bytes.NewReader(blocks["imb.yaml"]))
			yd.KnownFields(true)
			if err := yd.Decode(&page); err != nil {
				t.Fatalf("imb.yaml block: %v", err)
			}
			if page.Issuer == "" || page.Issuer != claims["iss"] {
				t.Fatalf("imb.yaml issuer %q is not the token's iss %v", page.Issuer, claims["iss"])
			}
			e := newEnv(t, func(c *broker.Config) {
				// The page's configuration, under the test issuer: its keys sign the page's claims.
				c.Audience, c.ScopeClaims, c.ThingIDClaim, c.TokenTypes = page.Audience, page.ScopeClaims, page.ThingIDClaim, page.TokenTypes
				c.Introspect, c.IntrospectURL, c.ClientID, c.ClientSecret = page.Introspect, "", "", ""
				c.Policy = pol
			})
			now := time.Now()
			claims["iss"] = e.iss.URL()
			for _, name := range []string{"iat", "nbf", "auth_time"} {
				if _, ok := claims[name]; ok {
					claims[name] = now.Unix()
				}
			}
			claims["exp"] = now.Add(time.Hour).Unix()
			if _, ok := claims["aud"]; !ok {
				claims["aud"] = nil // the provider issues none (Mint would add one)
			}
			r := e.connect5(tt.thing, e.iss.MintTyped(claims, time.Hour, tt.typ), v5opts{clean: true})
			if r.err != nil || r.code() != 0 {
				t.Fatalf("connect as %s: %v (code %d); audit %v", tt.thing, r.err, r.code(), e.audit.all())
			}
			for _, topic := range tt.allow {
				if code := r.publish(t, topic, 1, false, "21.5"); code != 0 {
					t.Errorf("publish %s: 0x%02x, want success; audit %v", topic, code, e.audit.find("connect"))
				}
			}
			for _, topic := range tt.deny {
				if code := r.publish(t, topic, 1, false, "21.5"); code != 0x87 {
					t.Errorf("publish %s: 0x%02x, want 0x87", topic, code)
				}
			}
		})
	}
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
