package amdev

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestAdminChangesSurviveRestart makes one change of each kind through
// the admin REST (a realm, its OAuth2 Provider and IoT Service, a client,
// a node and a tree, a signing-key rotation, the certificate mapping),
// restarts amdev on the same data directory, and reads every resource
// back unchanged (same revision), in force: the client gets the realm's
// CTS-based token, and a token signed with the rotated key still verifies.
func TestAdminChangesSurviveRestart(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	h := crestHeaders(admin, "protocol=1.0,resource=1.0")
	realmURL := "/json/realms/root/realms/kept"
	const node = "5d7e1e7a-0000-4000-8000-0000000000aa"
	const es256 = "/json/global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/" + secretSigningES256
	changes := []struct{ method, url, body string }{
		{"POST", "/json/global-config/realms?_action=create", `{"name": "kept", "parentPath": "/", "active": true, "aliases": ["kept-alias"]}`},
		{"PUT", realmURL + "/realm-config/services/oauth-oidc", `{"coreOAuth2Config": {"statelessTokensEnabled": false, "accessTokenLifetime": 600}}`},
		{"PUT", realmURL + "/realm-config/services/iot", `{"attributeAllowlist": ["thingType"]}`},
		{"PUT", realmURL + "/realm-config/agents/OAuth2Client/kept-client", `{"coreOAuth2ClientConfig": {"userpassword": "kept-secret", "scopes": ["fleet:read"]},
			"advancedOAuth2ClientConfig": {"grantTypes": ["client_credentials"]}}`},
		{"PUT", realmURL + "/realm-config/authentication/authenticationtrees/nodes/" + nodeTypeAuthenticate + "/" + node,
			`{"jwtAuthenticationMethod": "CLIENT_ASSERTION", "issueRestrictedToken": false}`},
		{"PUT", realmURL + "/realm-config/authentication/authenticationtrees/trees/KeptTree", `{"entryNodeId": "` + node + `", "nodes": {"` + node +
			`": {"displayName": "Auth", "nodeType": "` + nodeTypeAuthenticate + `", "x": 100.5, "y": 7, "connections": {"success": "` + successNodeID +
			`", "failure": "` + failureNodeID + `", "register": "` + failureNodeID + `"}}}, "staticNodes": {"startNode": {"x": 50, "y": 58}}}`},
		{"PUT", es256, `{"aliases": ["es256-next", "es256test"]}`},
		{"PUT", "/json/global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/" + secretCertVerification, `{"aliases": ["es256test"]}`},
	}
	for _, c := range changes {
		if status, body := e.call(c.method, e.srv.URL()+c.url, h, c.body); status != 200 && status != 201 {
			t.Fatalf("%s %s: %d %v", c.method, c.url, status, body)
		}
	}
	reads := []string{
		"/json/global-config/realms/" + realmID("/kept"),
		realmURL + "/realm-config/services/oauth-oidc",
		realmURL + "/realm-config/services/iot",
		realmURL + "/realm-config/agents/OAuth2Client/kept-client",
		realmURL + "/realm-config/authentication/authenticationtrees/nodes/" + nodeTypeAuthenticate + "/" + node,
		realmURL + "/realm-config/authentication/authenticationtrees/trees/KeptTree",
		es256,
		"/json/global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/" + secretCertVerification,
	}
	revs := map[string]any{}
	for _, u := range reads {
		status, doc := e.call("GET", e.srv.URL()+u, h, "")
		if status != 200 || doc["_rev"] == nil {
			t.Fatalf("GET %s: %d %v", u, status, doc)
		}
		revs[u] = doc["_rev"]
	}
	rotated, err := e.srv.IssueAccessToken(t.Context(), DemoThingID, "", nil)
	if err != nil {
		t.Fatal(err)
	}

	st := e.srv.Settings()
	e.restart(&st)
	admin = e.adminToken()
	h = crestHeaders(admin, "protocol=1.0,resource=1.0")
	for _, u := range reads {
		if status, doc := e.call("GET", e.srv.URL()+u, h, ""); status != 200 || doc["_rev"] != revs[u] {
			t.Errorf("after restart GET %s: %d %v, want revision %v", u, status, doc, revs[u])
		}
	}
	status, tok := e.form("/oauth2/realms/root/realms/kept/access_token", basic("kept-client", "kept-secret"),
		url.Values{"grant_type": {"client_credentials"}, "scope": {"fleet:read"}})
	if status != 200 || isJWT(tok) || tok["expires_in"] != float64(600) {
		t.Fatalf("kept-client after restart: %d %v", status, tok)
	}
	if _, in := e.form("/oauth2/introspect", basic(BrokerClientID, BrokerClientSecret), url.Values{"token": {rotated}}); in["active"] != true {
		t.Fatalf("a token of the rotated key after restart: %v", in)
	}
}

// TestDeletingARealmEmptiesIt deletes a realm with an identity, a client
// of its own and tokens, creates it again at once, and finds it empty: no identity,
// the configured provider, the old tokens inactive (a JWT of the old realm
// still verifies, and is refused all the same), while a new token works.
func TestDeletingARealmEmptiesIt(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	h := crestHeaders(admin, "protocol=1.0,resource=1.0")
	realms := e.srv.URL() + "/json/global-config/realms"
	realmURL := e.srv.URL() + "/json/realms/root/realms/gone"
	create := func() {
		t.Helper()
		if status, body := e.call("POST", realms+"?_action=create", h, `{"name": "gone", "parentPath": "/", "active": true, "aliases": []}`); status != 201 {
			t.Fatalf("create realm: %d %v", status, body)
		}
	}
	token := func(stateless bool) string {
		t.Helper()
		status, tok := e.form("/oauth2/realms/root/realms/gone/access_token", basic(CloudAppClientID, CloudAppClientSecret),
			url.Values{"grant_type": {"client_credentials"}, "scope": {"fleet:read"}})
		if status != 200 || isJWT(tok) != stateless {
			t.Fatalf("token in /gone: %d %v", status, tok)
		}
		return tok["access_token"].(string)
	}
	active := func(tok string) bool {
		t.Helper()
		_, in := e.form("/oauth2/realms/root/realms/gone/introspect", basic(BrokerClientID, BrokerClientSecret), url.Values{"token": {tok}})
		return in["active"] == true
	}
	userURL := realmURL + "/users/gone-user"
	userHeaders := map[string]string{"Content-Type": "application/json", "Cookie": "iPlanetDirectoryPro=" + admin}

	create()
	if status, body := e.call("PUT", userURL, userHeaders, `{"userPassword": "G0ne-but-not-forgotten", "thingType": "device"}`); status != 201 {
		t.Fatalf("PUT identity: %d %v", status, body)
	}
	clientURL := realmURL + "/realm-config/agents/OAuth2Client/gone-client"
	if status, body := e.call("PUT", clientURL, h, `{"coreOAuth2ClientConfig": {"userpassword": "gone-secret"}}`); status != 201 {
		t.Fatalf("PUT client: %d %v", status, body)
	}
	jwt := token(true)
	e.setProvider(admin, "/realms/root/realms/gone", map[string]any{"coreOAuth2Config": map[string]any{"statelessTokensEnabled": false}})
	opaque := token(false)
	if !active(jwt) || !active(opaque) {
		t.Fatal("tokens of the realm inactive before its deletion")
	}

	if status, body := e.call("DELETE", realms+"/"+realmID("/gone"), h, ""); status != 200 {
		t.Fatalf("delete realm: %d %v", status, body)
	}
	e.clock.Advance(time.Second) // the test clock stands still; a real one has moved on by now
	create()
	if status, body := e.call("GET", userURL, userHeaders, ""); status != 404 {
		t.Fatalf("identity of the deleted realm: %d %v", status, body)
	}
	if status, body := e.call("GET", clientURL, h, ""); status != 404 {
		t.Fatalf("client of the deleted realm: %d %v", status, body)
	}
	if active(jwt) || active(opaque) {
		t.Fatal("a token of the deleted realm is active in the realm created again")
	}
	fresh := token(true) // the configured provider again: client-based
	if !active(fresh) {
		t.Fatal("a token of the realm created again is inactive")
	}
	// The realm's end outlives a restart.
	st := e.srv.Settings()
	e.restart(&st)
	if !active(fresh) || active(jwt) {
		t.Fatal("after restart: the new token must be active, the old one not")
	}
}

// isJWT reports a token response whose access token is a signed JWT.
func isJWT(tok map[string]any) bool {
	s, _ := tok["access_token"].(string)
	return strings.Count(s, ".") == 2
}
