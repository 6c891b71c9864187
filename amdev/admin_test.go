package amdev

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
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
		{`{"advancedOAuth2Config": {"tokenSigningAlgorithm": "PS512"}}`, "tokenSigningAlgorithm PS512 is not supported"},
		{`{"advancedOAuth2Config": {"tokenEncryptionEnabled": "on"}}`, "tokenEncryptionEnabled must be true or false"},
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
		"/json/realms/root/realm-config/authentication/authenticationtrees/nodes",
		"/json/realm-config/agents/J2EEAgent/web-agent?realm=/",
		"/json/realms/root/realm-config/services/policyconfiguration",
		"/json/global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/am.services.oauth2.oidc.signing.RSA",
	} {
		status, body := e.call("GET", e.srv.URL()+path, map[string]string{"iPlanetDirectoryPro": e.adminToken()}, "")
		if msg, _ := body["message"].(string); status != 501 || !strings.Contains(msg, "amdev does not serve") {
			t.Fatalf("%s: %d %v", path, status, body)
		}
	}
}

// TestScriptsAndUnknownAdminPaths: amdev holds no scripts, says so for one
// sent to be stored (501 naming it, never stored and silently ignored), and
// an admin path AM does not have either is AM's 404 envelope.
func TestScriptsAndUnknownAdminPaths(t *testing.T) {
	e := startEnv(t)
	crest := crestHeaders(e.adminToken(), "protocol=1.0,resource=1.0")
	script := `{"name": "IoT Access Token Modification", "context": "OAUTH2_ACCESS_TOKEN_MODIFICATION",
		"language": "JAVASCRIPT", "script": "dmFyIHggPSAxOw=="}`
	for _, tc := range []struct {
		method, path, body string
		status             int
		msg                string
	}{
		{"POST", "/json/scripts?_action=create&realm=/", script, 501, `amdev cannot run scripts: the script "IoT Access Token Modification" (OAUTH2_ACCESS_TOKEN_MODIFICATION, JAVASCRIPT) was not stored`},
		{"PUT", "/json/realms/root/scripts/3f93ef6e-e54a-4393-aba1-f322656db28a", `{"language": "GROOVY"}`, 501, `the script "3f93ef6e-e54a-4393-aba1-f322656db28a" (GROOVY) was not stored`},
		{"GET", "/json/scripts/3f93ef6e-e54a-4393-aba1-f322656db28a?realm=/", "", 404, "not found"},
		{"GET", "/json/nonsense", "", 404, "Resource 'nonsense' not found"},
		{"GET", "/json/realms/root/realms/nope/realm-config/agents/OAuth2Client/x", "", 404, "Realm not found"},
	} {
		status, body := e.call(tc.method, e.srv.URL()+tc.path, crest, tc.body)
		msg, _ := body["message"].(string)
		if status != tc.status || body["code"] != float64(tc.status) || body["reason"] != http.StatusText(tc.status) || !strings.Contains(msg, tc.msg) {
			t.Fatalf("%s %s: %d %v, want %d %q", tc.method, tc.path, status, body, tc.status, tc.msg)
		}
	}
	status, q := e.call("GET", e.srv.URL()+"/json/scripts?_queryFilter=true&realm=/", crest, "")
	if status != 200 || q["resultCount"] != float64(0) {
		t.Fatalf("query scripts: %d %v", status, q)
	}
}

// TestCertVerificationSecretMapping: ForgeRock's functional tests map
// am.services.iot.cert.verification to es256test before registering
// things with certificates; the mapping chooses which configured CAs are
// trusted from the next registration on, and names no key amdev lacks.
func TestCertVerificationSecretMapping(t *testing.T) {
	e := startEnv(t)
	crest := crestHeaders(e.adminToken(), "protocol=2.0,resource=1.0")
	mapping := e.srv.URL() + "/json/global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/am.services.iot.cert.verification"
	n := 0
	register := func() int {
		t.Helper()
		n++
		th := newThing(t, fmt.Sprintf("mapped-%d", n), jose.ES256)
		th.cert = e.ca.issue(t, th.id, th.key.Public(), time.Now().Add(time.Hour))
		status, _ := e.login("reg-tree", "/", regFill(t, th, "", nil))
		return status
	}
	status, doc := e.call("GET", mapping, crest, "")
	if status != 200 || fmt.Sprint(doc["aliases"]) != fmt.Sprintf("[%s es256test]", e.ca.path) {
		t.Fatalf("read: %d %v", status, doc)
	}
	if status := register(); status != 200 {
		t.Fatalf("registration with the test CA: %d", status)
	}
	put := func(body string) (int, map[string]any) {
		t.Helper()
		return e.call("PUT", mapping, crest, body)
	}
	if status, got := put(`{"secretId": "am.services.iot.cert.verification", "aliases": ["es256test"]}`); status != 200 || fmt.Sprint(got["aliases"]) != "[es256test]" {
		t.Fatalf("map to es256test: %d %v", status, got)
	}
	if status := register(); status != 401 {
		t.Fatalf("registration with a CA no longer mapped: %d", status)
	}
	if status, got := put(`{"aliases": ["` + e.ca.path + `", "es256test"]}`); status != 200 {
		t.Fatalf("map both: %d %v", status, got)
	}
	if status := register(); status != 200 {
		t.Fatalf("registration after mapping the CA again: %d", status)
	}
	for _, bad := range []string{`{"aliases": ["/etc/ssl/other.pem"]}`, `{"aliases": []}`, `{"secretId": "x"}`} {
		if status, got := put(bad); status != 400 {
			t.Fatalf("PUT %s: %d %v", bad, status, got)
		}
	}
}

// TestIoTServiceAdminREST: realm-config/services/iot created as ForgeRock's
// functional tests create it, then changed: the thing's next token comes
// through the named client, and its attributes follow the allow-list.
func TestIoTServiceAdminREST(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	crest := crestHeaders(admin, "protocol=2.0,resource=1.0")
	svc := e.srv.URL() + "/json/realms/root/realm-config/services/iot"
	th := newThing(t, "iot-svc-thing", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", map[string]any{"thingConfig": "cfg-1"})
	tokenAud := func() any {
		t.Helper()
		status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
		if status != 200 {
			t.Fatalf("token: %d %v", status, tok)
		}
		return decodeJWT(t, tok["access_token"].(string))["aud"]
	}
	attrs := func() map[string]any {
		t.Helper()
		status, a := p.do("GET", "/json/things/*", nil, true)
		if status != 200 {
			t.Fatalf("attributes: %d %v", status, a)
		}
		return a
	}
	status, doc := e.call("POST", svc+"?_action=create", crest, `{"oauthJwtIssuerName": "forgerock-iot-jwt-issuer",
		"oauthClientName": "forgerock-iot-oauth2-client", "createOAuthClient": true, "createOAuthJwtIssuer": true,
		"attributeAllowlist": ["thingType"]}`)
	if status != 201 || fmt.Sprint(doc["attributeAllowlist"]) != "[thingType]" {
		t.Fatalf("create: %d %v", status, doc)
	}
	if a := attrs(); a["thingConfig"] != nil || a["thingType"] == nil {
		t.Fatalf("attributes with allow-list [thingType]: %v", a)
	}
	if aud := tokenAud(); aud != DefaultClientID {
		t.Fatalf("aud %v", aud)
	}
	if status, body := e.call("PUT", svc, crest, `{"oauthClientName": "no-such-client"}`); status != 400 {
		t.Fatalf("unknown client: %d %v", status, body)
	}
	if status, body := e.call("PUT", e.srv.URL()+"/json/realms/root/realm-config/agents/OAuth2Client/iot-svc-client", crest,
		amClientJSON("iot-svc-client", "1ot-svc-s3cret", []string{"publish"}, []string{grantJWTBearer}, 0)); status != 201 {
		t.Fatalf("create client: %d %v", status, body)
	}
	if status, body := e.call("PUT", svc, crest, `{"oauthClientName": "iot-svc-client", "attributeAllowlist": ["thingConfig"]}`); status != 200 {
		t.Fatalf("update: %d %v", status, body)
	}
	if aud := tokenAud(); aud != "iot-svc-client" {
		t.Fatalf("aud after update %v", aud)
	}
	if a := attrs(); a["thingConfig"] == nil {
		t.Fatalf("attributes with allow-list [thingConfig]: %v", a)
	}
	if status, body := e.call("DELETE", svc, crest, ""); status != 200 {
		t.Fatalf("delete: %d %v", status, body)
	}
	if aud := tokenAud(); aud != DefaultClientID {
		t.Fatalf("aud after delete %v", aud)
	}
}

// TestAdministrationClientCalls: the calls Frodo (ForgeRock's administration
// CLI) makes before any command, as it makes them: server version,
// getSessionInfo with the token in the body only, CREST paths with a
// trailing slash.
func TestAdministrationClientCalls(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	if status, v := e.call("GET", e.srv.URL()+"/json/serverinfo/version", map[string]string{"Accept-API-Version": "resource=1.0"}, ""); status != 200 ||
		v["version"] != amVersion || !strings.HasPrefix(v["fullVersion"].(string), "ForgeRock Access Management "+amVersion+" Build") {
		t.Fatalf("version: %d %v", status, v)
	}
	info := e.srv.URL() + "/json/realms/root/sessions/?_action=getSessionInfo"
	h := map[string]string{"Accept-API-Version": "resource=4.0", "Content-Type": "application/json"}
	if status, s := e.call("POST", info, h, `{"tokenId": "`+admin+`"}`); status != 200 || s["username"] != "amAdmin" || s["realm"] != "/" ||
		s["maxIdleExpirationTime"] == nil {
		t.Fatalf("getSessionInfo: %d %v", status, s)
	}
	if status, s := e.call("POST", info, h, `{"tokenId": "nope"}`); status != 401 {
		t.Fatalf("getSessionInfo of no session: %d %v", status, s)
	}
	if status, q := e.call("GET", e.srv.URL()+"/json/global-config/realms/?_queryFilter=true",
		crestHeaders(admin, "protocol=2.0,resource=1.0"), ""); status != 200 || q["resultCount"] != float64(1) {
		t.Fatalf("realms with a trailing slash: %d %v", status, q)
	}
}
