package amdev

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestOAuthProviderAdminREST drives realm-config/services/oauth-oidc as AM's
// automation does (amAdmin's SSO token in the cookie header, CREST version
// header, read → modify → write back): the change takes effect for the next
// token of that realm only, bad values are refused, and DELETE returns the
// realm to the configured settings.
func TestOAuthProviderAdminREST(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.Realms = []string{"/a"} })
	admin := e.adminToken()
	crest := func(token string) map[string]string {
		h := map[string]string{"Accept-API-Version": "protocol=1.0,resource=1.0", "Content-Type": "application/json"}
		if token != "" {
			h["iPlanetDirectoryPro"] = token
		}
		return h
	}
	pathURL := e.srv.URL() + "/json/realms/root/realms/a/realm-config/services/oauth-oidc"
	queryURL := e.srv.URL() + "/json/realm-config/services/oauth-oidc?realm=/a"
	cloud := basic(CloudAppClientID, CloudAppClientSecret)
	token := func(realmPath string) map[string]any {
		t.Helper()
		status, tok := e.form("/oauth2"+realmPath+"/access_token", cloud, url.Values{"grant_type": {"client_credentials"}, "scope": {"fleet:read"}})
		if status != 200 {
			t.Fatalf("client_credentials in %q: %d %v", realmPath, status, tok)
		}
		status, in := e.form("/oauth2"+realmPath+"/introspect", basic(BrokerClientID, BrokerClientSecret), url.Values{"token": {tok["access_token"].(string)}})
		if status != 200 || in["active"] != true {
			t.Fatalf("introspect in %q: %d %v", realmPath, status, in)
		}
		return tok
	}
	isJWT := func(tok map[string]any) bool { return strings.Count(tok["access_token"].(string), ".") == 2 }
	section := func(doc map[string]any, name string) map[string]any { return doc[name].(map[string]any) }

	// Only amAdmin reads it.
	if status, body := e.call("GET", pathURL, crest(""), ""); status != 401 {
		t.Fatalf("anonymous read: %d %v", status, body)
	}
	_, user := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": DemoUserID, "X-OpenAM-Password": DefaultUserPassword}, "")
	if status, body := e.call("GET", pathURL, crest(user["tokenId"].(string)), ""); status != 403 {
		t.Fatalf("user read: %d %v", status, body)
	}

	// Read: the configured settings, in AM's shape.
	status, doc := e.call("GET", queryURL, crest(admin), "")
	def := e.srv.Settings().OAuth2
	if status != 200 || section(doc, "coreOAuth2Config")["statelessTokensEnabled"] != true ||
		section(doc, "coreOAuth2Config")["accessTokenLifetime"] != float64(time.Duration(def.AccessTokenLifetime)/time.Second) ||
		section(doc, "_type")["_id"] != "oauth-oidc" || doc["_rev"] == "" {
		t.Fatalf("read: %d %v", status, doc)
	}
	if !isJWT(token("/realms/root/realms/a")) {
		t.Fatal("default token is not client-based")
	}

	// Update: CTS-based tokens living two minutes, written back whole with AM attributes amdev does not model.
	section(doc, "coreOAuth2Config")["statelessTokensEnabled"] = false
	section(doc, "coreOAuth2Config")["accessTokenLifetime"] = 120
	section(doc, "deviceCodeConfig")["deviceCodeLifetime"] = 600
	doc["coreOIDCConfig"] = map[string]any{"jwtTokenLifetime": 3600}
	b, _ := json.Marshal(doc)
	headers := crest(admin)
	headers["If-Match"] = doc["_rev"].(string)
	status, updated := e.call("PUT", pathURL, headers, string(b))
	if status != 200 || section(updated, "coreOAuth2Config")["statelessTokensEnabled"] != false || updated["coreOIDCConfig"] != nil {
		t.Fatalf("update: %d %v", status, updated)
	}
	if status, body := e.call("PUT", pathURL, headers, string(b)); status != http.StatusPreconditionFailed {
		t.Fatalf("update with a stale revision: %d %v", status, body)
	}
	if status, got := e.call("GET", pathURL, crest(admin), ""); status != 200 || section(got, "coreOAuth2Config")["accessTokenLifetime"] != float64(120) ||
		section(got, "deviceCodeConfig")["deviceCodeLifetime"] != float64(600) || got["_rev"] != updated["_rev"] {
		t.Fatalf("read after update: %d %v", status, got)
	}

	// Use: the realm's next token is opaque and lives two minutes; the root realm is unchanged.
	if tok := token("/realms/root/realms/a"); isJWT(tok) || tok["expires_in"] != float64(120) {
		t.Fatalf("token after update: %v", tok)
	}
	if tok := token(""); !isJWT(tok) {
		t.Fatalf("root realm token changed: %v", tok)
	}

	// What amdev cannot honour is refused, naming the attribute, and nothing changes.
	for _, bad := range []struct{ body, msg string }{
		{`{"advancedOAuth2Config": {"tokenSigningAlgorithm": "RS256"}}`, "tokenSigningAlgorithm RS256 is not supported"},
		{`{"advancedOAuth2Config": {"tokenEncryptionEnabled": true}}`, "tokenEncryptionEnabled true is not supported"},
		{`{"coreOAuth2Config": {"accessTokenLifetime": "soon"}}`, "accessTokenLifetime must be a whole number of seconds"},
		{`{"coreOAuth2Config": {"accessTokenLifetime": 0}}`, "accessTokenLifetime must be a whole number of seconds"},
		{`{"coreOAuth2Config": {"statelessTokensEnabled": "yes"}}`, "statelessTokensEnabled must be true or false"},
		{`{"deviceCodeConfig": []}`, "deviceCodeConfig must be an object"},
		{`[1]`, "not a JSON object"},
	} {
		status, body := e.call("PUT", pathURL, crest(admin), bad.body)
		if msg, _ := body["message"].(string); status != 400 || !strings.Contains(msg, bad.msg) {
			t.Fatalf("PUT %s: %d %v", bad.body, status, body)
		}
	}
	if _, got := e.call("GET", pathURL, crest(admin), ""); got["_rev"] != updated["_rev"] {
		t.Fatalf("a refused update changed the provider: %v", got)
	}

	// Delete: back to the configured settings.
	if status, body := e.call("DELETE", pathURL, crest(admin), ""); status != 200 {
		t.Fatalf("delete: %d %v", status, body)
	}
	if _, got := e.call("GET", pathURL, crest(admin), ""); section(got, "coreOAuth2Config")["statelessTokensEnabled"] != true {
		t.Fatalf("read after delete: %v", got)
	}
	if !isJWT(token("/realms/root/realms/a")) {
		t.Fatal("token after delete is not client-based")
	}
	if status, body := e.call("GET", e.srv.URL()+"/json/realms/root/realms/nope/realm-config/services/oauth-oidc", crest(admin), ""); status != 404 {
		t.Fatalf("unknown realm: %d %v", status, body)
	}
}

// TestAdminRESTNotServed: the admin resources amdev does not implement answer
// 501 with a message that says so, never a bare 404.
func TestAdminRESTNotServed(t *testing.T) {
	e := startEnv(t)
	for _, path := range []string{
		"/json/global-config/realms",
		"/json/realms/root/realm-config/authentication/authenticationtrees/trees/auth-tree",
		"/json/realm-config/agents/OAuth2Client/forgerock-iot-oauth2-client?realm=/",
		"/json/realms/root/realm-config/services/iot",
		"/json/scripts?realm=/",
		"/json/global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/am.services.oauth2.stateless.signing.ES256",
	} {
		status, body := e.call("GET", e.srv.URL()+path, map[string]string{"iPlanetDirectoryPro": e.adminToken()}, "")
		if msg, _ := body["message"].(string); status != 501 || !strings.Contains(msg, "amdev does not serve") {
			t.Fatalf("%s: %d %v", path, status, body)
		}
	}
}
