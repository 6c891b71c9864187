package amdev

import (
	"encoding/json"
	"testing"
)

// TestCRESTItemSemantics runs CREST's member semantics over each
// collection of the admin REST that shares them: create only with
// If-None-Match: *, update only at the current revision, delete at the
// current revision answering the last state, then 404.
func TestCRESTItemSemantics(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	realm := e.srv.URL() + "/json/realms/root/realm-config"
	jwks, _ := json.Marshal(e.pub.jwks(t))
	for _, tc := range []struct{ name, url, body string }{
		{"OAuth2Client", realm + "/agents/OAuth2Client/crest-client", `{"coreOAuth2ClientConfig": {"userpassword": "crest-secret", "scopes": ["a"]}}`},
		{"SoftwarePublisher", realm + "/agents/SoftwarePublisher/crest-publisher", `{"issuer": "https://crest.example", "jwkSet": ` + string(jwks) + `}`},
		{"node", realm + "/authentication/authenticationtrees/nodes/" + nodeTypeAuthenticate + "/5d7e1e7a-0000-4000-8000-0000000000cc",
			`{"jwtAuthenticationMethod": "PROOF_OF_POSSESSION"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := func(k, v string) map[string]string {
				m := crestHeaders(admin, "protocol=1.0,resource=1.0")
				if k != "" {
					m[k] = v
				}
				return m
			}
			if status, body := e.call("PUT", tc.url, h("If-Match", `"x"`), tc.body); status != 404 {
				t.Fatalf("update of a missing one: %d %v", status, body)
			}
			status, created := e.call("PUT", tc.url, h("If-None-Match", "*"), tc.body)
			if status != 201 || created["_rev"] == nil {
				t.Fatalf("create: %d %v", status, created)
			}
			rev := created["_rev"].(string)
			if status, body := e.call("PUT", tc.url, h("If-None-Match", "*"), tc.body); status != 412 {
				t.Fatalf("create again: %d %v", status, body)
			}
			if status, body := e.call("PUT", tc.url, h("If-Match", `"stale"`), tc.body); status != 412 {
				t.Fatalf("update at a stale revision: %d %v", status, body)
			}
			if status, body := e.call("PUT", tc.url, h("If-Match", `"`+rev+`"`), tc.body); status != 200 || body["_rev"] != rev {
				t.Fatalf("update at the revision: %d %v", status, body)
			}
			if status, body := e.call("DELETE", tc.url, h("If-Match", `"stale"`), ""); status != 412 {
				t.Fatalf("delete at a stale revision: %d %v", status, body)
			}
			if status, body := e.call("DELETE", tc.url, h("", ""), ""); status != 200 || body["_rev"] != rev {
				t.Fatalf("delete: %d %v", status, body)
			}
			for _, m := range []string{"GET", "DELETE"} {
				if status, body := e.call(m, tc.url, h("", ""), ""); status != 404 {
					t.Fatalf("%s after delete: %d %v", m, status, body)
				}
			}
			if status, body := e.call("PATCH", tc.url, h("", ""), "{}"); status != 405 {
				t.Fatalf("PATCH: %d %v", status, body)
			}
		})
	}
}
