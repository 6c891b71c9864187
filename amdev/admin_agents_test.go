package amdev

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// amClientJSON is an OAuth2Client agent in the form AM exports and its
// automation imports: inheritable attributes, and sections amdev does not
// model (redirect URIs, OIDC, signing), which must not stop the import.
func amClientJSON(id, secret string, scopes, grants []string, lifetime int) string {
	b, _ := json.Marshal(map[string]any{
		"_id": id,
		"coreOAuth2ClientConfig": map[string]any{
			"userpassword":        inheritable(secret),
			"status":              inheritable("Active"),
			"scopes":              inheritable(scopes),
			"defaultScopes":       inheritable([]string{}),
			"accessTokenLifetime": inheritable(lifetime),
			"redirectionUris":     inheritable([]string{}),
			"clientType":          inheritable("Confidential"),
			"agentgroup":          "",
		},
		"advancedOAuth2ClientConfig": map[string]any{
			"grantTypes":              inheritable(grants),
			"tokenEndpointAuthMethod": inheritable("client_secret_basic"),
			"sectorIdentifierUri":     map[string]any{"inherited": false},
		},
		"signEncOAuth2ClientConfig": map[string]any{"idTokenSignedResponseAlg": inheritable("RS256")},
		"coreOpenIDClientConfig":    map[string]any{"jwtTokenLifetime": inheritable(0)},
		"_type":                     map[string]any{"_id": "OAuth2Client", "name": "OAuth2 Clients", "collection": true},
	})
	return string(b)
}

// TestOAuth2ClientAgentsAdminREST drives realm-config/agents/OAuth2Client
// as ForgeRock's functional tests do (PUT with If-None-Match: * to create,
// PUT to update, DELETE): each client is per realm, takes effect at once
// for client_credentials and for a thing's jwt-bearer grant, and AM's
// export form is accepted.
func TestOAuth2ClientAgentsAdminREST(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.Realms = []string{"/a"} })
	admin := e.adminToken()
	const version = "protocol=2.0,resource=1.0"
	agents := e.srv.URL() + "/json/realms/root/realms/a/realm-config/agents/OAuth2Client/"
	create := crestHeaders(admin, version)
	create["If-None-Match"] = "*"
	ccToken := func(realmPath, id, secret string) (int, map[string]any) {
		t.Helper()
		return e.form("/oauth2"+realmPath+"/access_token", basic(id, secret), url.Values{"grant_type": {"client_credentials"}, "scope": {"fleet:read"}})
	}
	scopesOf := func(doc map[string]any) any {
		return doc["coreOAuth2ClientConfig"].(map[string]any)["scopes"].(map[string]any)["value"]
	}

	// Read a configured client and query the realm's clients; the secret is never read back.
	status, doc := e.call("GET", agents+DefaultClientID, crestHeaders(admin, version), "")
	if status != 200 || doc["_id"] != DefaultClientID || doc["_type"].(map[string]any)["_id"] != "OAuth2Client" ||
		strings.Contains(mustMarshal(doc), DefaultClientSecret) {
		t.Fatalf("read %s: %d %v", DefaultClientID, status, doc)
	}
	if status, q := e.call("GET", strings.TrimSuffix(agents, "/")+"?_queryFilter=true", crestHeaders(admin, version), ""); status != 200 ||
		q["resultCount"] != float64(len(e.srv.Settings().Clients)) {
		t.Fatalf("query: %d %v", status, q)
	}
	if status, body := e.call("GET", agents+"nope", crestHeaders(admin, version), ""); status != 404 || body["reason"] != "Not Found" {
		t.Fatalf("read unknown client: %d %v", status, body)
	}
	_, user := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": DemoUserID, "X-OpenAM-Password": DefaultUserPassword}, "")
	if status, body := e.call("GET", agents+DefaultClientID, crestHeaders(user["tokenId"].(string), version), ""); status != 403 {
		t.Fatalf("user read: %d %v", status, body)
	}

	// Create, in AM's export form.
	const appID, appSecret = "fleet-app", "fl33t-@pp-s3cret"
	status, app := e.call("PUT", agents+appID, create, amClientJSON(appID, appSecret, []string{"fleet:read"}, []string{grantClientCredentials}, 90))
	if status != 201 || app["_rev"] == nil || scopesOf(app).([]any)[0] != "fleet:read" {
		t.Fatalf("create %s: %d %v", appID, status, app)
	}
	const thingClient, thingSecret = "sensor-oauth2-client", "s3ns0r-s3cret"
	if status, body := e.call("PUT", agents+thingClient, create, amClientJSON(thingClient, thingSecret, []string{"publish"}, []string{grantJWTBearer}, 0)); status != 201 {
		t.Fatalf("create %s: %d %v", thingClient, status, body)
	}
	for _, bad := range []struct {
		id, body string
		status   int
		msg      string
	}{
		{appID, amClientJSON(appID, appSecret, nil, nil, 0), 412, "exists"},
		{"no-secret", `{"coreOAuth2ClientConfig": {"scopes": {"value": ["a"]}}}`, 400, "userpassword is required"},
		{"bad-default", `{"coreOAuth2ClientConfig": {"userpassword": "x", "scopes": ["a"], "defaultScopes": ["b"]}}`, 400, "not one of the client's scopes"},
		{"bad-status", `{"coreOAuth2ClientConfig": {"userpassword": "x", "status": "Maybe"}}`, 400, "status must be"},
		{"bad-lifetime", `{"coreOAuth2ClientConfig": {"userpassword": "x", "accessTokenLifetime": -1}}`, 400, "accessTokenLifetime must be"},
		{"other-id", `{"_id": "elsewhere", "coreOAuth2ClientConfig": {"userpassword": "x"}}`, 400, "not the id"},
		{"amAdmin", `{"coreOAuth2ClientConfig": {"userpassword": "x"}}`, 409, "administrator"},
	} {
		status, body := e.call("PUT", agents+bad.id, create, bad.body)
		if msg, _ := body["message"].(string); status != bad.status || !strings.Contains(msg, bad.msg) {
			t.Fatalf("create %s: %d %v, want %d %q", bad.id, status, body, bad.status, bad.msg)
		}
	}

	// Use: client_credentials in /a with the client's own lifetime, not in the root realm.
	if status, tok := ccToken("/realms/root/realms/a", appID, appSecret); status != 200 || tok["expires_in"] != float64(90) {
		t.Fatalf("client_credentials in /a: %d %v", status, tok)
	}
	if status, body := ccToken("", appID, appSecret); status != 401 || body["error"] != "invalid_client" {
		t.Fatalf("client_credentials in the root realm: %d %v", status, body)
	}
	// A thing in /a whose thingOAuth2ClientName is the new client gets its tokens through it.
	th := newThing(t, "sensor-1", jose.ES256)
	reg, _ := json.Marshal(map[string]any{"userPassword": "5tr0ngG3n3r@ted", "thingType": "device", "thingKeys": th.jwks(t),
		"thingOAuth2ClientName": thingClient})
	if status, body := e.call("PUT", e.srv.URL()+"/json/realms/root/realms/a/users/"+th.id, map[string]string{
		"Content-Type": "application/json", "Accept-Api-Version": "resource=4.0, protocol=2.1", "iPlanetDirectoryPro": admin}, string(reg)); status != 201 {
		t.Fatalf("register %s: %d %v", th.id, status, body)
	}
	tokenURL := e.srv.URL() + "/oauth2/realms/root/realms/a/access_token"
	status, tok := e.form("/oauth2/realms/root/realms/a/access_token", basic(thingClient, thingSecret), url.Values{
		"grant_type": {grantJWTBearer}, "assertion": {th.assertionJWT(t, tokenURL, freshJTI())}, "scope": {"publish"}})
	if status != 200 || decodeJWT(t, tok["access_token"].(string))["aud"] != thingClient {
		t.Fatalf("jwt-bearer through %s: %d %v", thingClient, status, tok)
	}
	// A thing may not take a client's name, nor a client an identity's.
	if status, body := e.call("PUT", e.srv.URL()+"/json/realms/root/realms/a/users/"+appID, map[string]string{
		"Content-Type": "application/json", "iPlanetDirectoryPro": admin}, `{"userPassword": "5tr0ngG3n3r@ted"}`); status != 409 {
		t.Fatalf("identity named like a client: %d %v", status, body)
	}
	if status, body := e.call("PUT", agents+th.id, create, `{"coreOAuth2ClientConfig": {"userpassword": "x"}}`); status != 409 {
		t.Fatalf("client named like an identity: %d %v", status, body)
	}

	// Update: a stale revision is refused; Inactive refuses authentication at once.
	upd := crestHeaders(admin, version)
	upd["If-Match"] = "stale"
	inactive := `{"coreOAuth2ClientConfig": {"status": {"inherited": false, "value": "Inactive"}}}`
	if status, body := e.call("PUT", agents+appID, upd, inactive); status != 412 {
		t.Fatalf("update with a stale revision: %d %v", status, body)
	}
	upd["If-Match"] = app["_rev"].(string)
	if status, got := e.call("PUT", agents+appID, upd, inactive); status != 200 ||
		got["coreOAuth2ClientConfig"].(map[string]any)["status"].(map[string]any)["value"] != "Inactive" {
		t.Fatalf("deactivate: %d %v", status, got)
	}
	if status, body := ccToken("/realms/root/realms/a", appID, appSecret); status != 401 {
		t.Fatalf("client_credentials of an inactive client: %d %v", status, body)
	}
	// A configured client changed in /a is unchanged in the root realm.
	if status, got := e.call("PUT", agents+CloudAppClientID, crestHeaders(admin, version),
		`{"coreOAuth2ClientConfig": {"scopes": ["fleet:read"], "defaultScopes": ["fleet:read"]}}`); status != 200 || len(scopesOf(got).([]any)) != 1 {
		t.Fatalf("update %s in /a: %d %v", CloudAppClientID, status, got)
	}
	if _, root := e.call("GET", e.srv.URL()+"/json/realm-config/agents/OAuth2Client/"+CloudAppClientID+"?realm=/", crestHeaders(admin, version), ""); len(scopesOf(root).([]any)) != 2 {
		t.Fatalf("the root realm's %s changed: %v", CloudAppClientID, root)
	}

	// Delete: the client is gone from /a at once; a configured client deleted in /a stays in the root realm.
	for _, id := range []string{appID, CloudAppClientID} {
		if status, body := e.call("DELETE", agents+id, crestHeaders(admin, version), ""); status != 200 || body["_id"] != id {
			t.Fatalf("delete %s: %d %v", id, status, body)
		}
		if status, body := e.call("GET", agents+id, crestHeaders(admin, version), ""); status != 404 {
			t.Fatalf("read deleted %s: %d %v", id, status, body)
		}
	}
	if status, body := ccToken("/realms/root/realms/a", CloudAppClientID, CloudAppClientSecret); status != 401 {
		t.Fatalf("client_credentials of a deleted client: %d %v", status, body)
	}
	if status, body := ccToken("", CloudAppClientID, CloudAppClientSecret); status != 200 {
		t.Fatalf("client_credentials in the root realm after deleting in /a: %d %v", status, body)
	}
}

func mustMarshal(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestSoftwarePublisherAgentsAdminREST: a software publisher created in a
// realm through realm-config/agents/SoftwarePublisher (AM's export form)
// vouches for registrations there at once, not in other realms, and no
// longer once it is deleted.
func TestSoftwarePublisherAgentsAdminREST(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.Realms = []string{"/a"} })
	admin := e.adminToken()
	const version = "protocol=2.0,resource=1.0"
	agents := e.srv.URL() + "/json/realms/root/realms/a/realm-config/agents/SoftwarePublisher/"
	create := crestHeaders(admin, version)
	create["If-None-Match"] = "*"
	pub := newPublisher(t)
	pub.issuer = "https://fleet-publisher.example"
	register := func(realm string) int {
		t.Helper()
		th := newThing(t, "", jose.ES256)
		status, _ := e.login("reg-tree-sw-stmt", realm, regFill(t, th, pub.statement(t, th), nil))
		return status
	}
	if status := register("/a"); status != 401 {
		t.Fatalf("registration before the publisher exists: %d", status)
	}
	body, _ := json.Marshal(map[string]any{"_id": "fleet-publisher", "publicKeyLocation": "jwks", "jwksCacheTimeout": 3600000,
		"softwareStatementSigningAlgorithm": "ES256", "jwkSet": pub.jwks(t), "issuer": pub.issuer, "jwksUri": "", "agentgroup": ""})
	status, doc := e.call("PUT", agents+"fleet-publisher", create, string(body))
	if status != 201 || doc["issuer"] != pub.issuer || doc["_type"].(map[string]any)["_id"] != "SoftwarePublisher" {
		t.Fatalf("create: %d %v", status, doc)
	}
	if status := register("/a"); status != 200 {
		t.Fatalf("registration in /a: %d", status)
	}
	if status := register("/"); status != 401 {
		t.Fatalf("registration in the root realm: %d", status)
	}
	for _, bad := range []struct{ body, msg string }{
		{`{"issuer": "x", "publicKeyLocation": "jwks_uri", "jwksUri": "https://x/jwks"}`, "publicKeyLocation jwks_uri is not supported"},
		{`{"issuer": "x", "jwkSet": "{\"keys\": []}"}`, "jwkSet must be a JSON Web Key Set"},
		{`{"jwkSet": "{}"}`, "JSON Web Key Set"},
	} {
		if status, got := e.call("PUT", agents+"bad", create, bad.body); status != 400 || !strings.Contains(got["message"].(string), bad.msg) {
			t.Fatalf("create %s: %d %v", bad.body, status, got)
		}
	}
	if status, q := e.call("GET", strings.TrimSuffix(agents, "/")+"?_queryFilter=true", crestHeaders(admin, version), ""); status != 200 ||
		q["resultCount"] != float64(len(e.srv.Settings().SoftwarePublishers)+1) {
		t.Fatalf("query: %d %v", status, q)
	}
	if status, got := e.call("DELETE", agents+"fleet-publisher", crestHeaders(admin, version), ""); status != 200 || got["_id"] != "fleet-publisher" {
		t.Fatalf("delete: %d %v", status, got)
	}
	if status := register("/a"); status != 401 {
		t.Fatalf("registration after the delete: %d", status)
	}
}
