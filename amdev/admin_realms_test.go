package amdev

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// crestHeaders are the headers AM's automation sends (ForgeRock's own
// functional test client): amAdmin's SSO token in the cookie-named header,
// the CREST version and a JSON body.
func crestHeaders(token, version string) map[string]string {
	h := map[string]string{"Accept-API-Version": version, "Content-Type": "application/json"}
	if token != "" {
		h["iPlanetDirectoryPro"] = token
	}
	return h
}

// TestRealmsAdminREST drives global-config/realms as ForgeRock's functional
// tests do: create a realm and a sub-realm with an alias and a DNS alias,
// read and query them in AM's JSON, use them (tokens, the alias, the DNS
// alias and its client-assertion audience), update and delete them.
func TestRealmsAdminREST(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	const version = "resource=1.0, protocol=2.0"
	realms := e.srv.URL() + "/json/global-config/realms"
	crest := crestHeaders(admin, version)
	mustJSON := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	cloud := basic(CloudAppClientID, CloudAppClientSecret)
	tokenIn := func(path, host string) (int, map[string]any) {
		t.Helper()
		h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": cloud}
		return send(t, "POST", e.srv.URL()+path, host, h, url.Values{"grant_type": {"client_credentials"}, "scope": {"fleet:read"}}.Encode())
	}
	port := e.srv.Addr()[strings.LastIndex(e.srv.Addr(), ":")+1:]
	const dnsAlias = "fleet.am.localtest.me"

	// Only amAdmin.
	if status, body := e.call("GET", realms+"?_queryFilter=true", crestHeaders("", version), ""); status != 401 {
		t.Fatalf("anonymous query: %d %v", status, body)
	}
	_, user := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": DemoUserID, "X-OpenAM-Password": DefaultUserPassword}, "")
	if status, body := e.call("GET", realms+"?_queryFilter=true", crestHeaders(user["tokenId"].(string), version), ""); status != 403 {
		t.Fatalf("user query: %d %v", status, body)
	}

	// Create: a realm with an alias, a sub-realm with a DNS alias.
	status, parent := e.call("POST", realms+"?_action=create", crest,
		mustJSON(map[string]any{"name": "fleet", "active": true, "parentPath": "/", "aliases": []string{"fleet-alias"}}))
	if status != 201 || parent["_id"] != "L2ZsZWV0" || parent["name"] != "fleet" || parent["parentPath"] != "/" ||
		parent["active"] != true || parent["_rev"] == nil {
		t.Fatalf("create /fleet: %d %v", status, parent)
	}
	status, sub := e.call("POST", realms+"?_action=create", crest,
		mustJSON(map[string]any{"name": "edge", "active": true, "parentPath": "/fleet", "aliases": []string{dnsAlias}}))
	if status != 201 || sub["_id"] != realmID("/fleet/edge") || sub["parentPath"] != "/fleet" {
		t.Fatalf("create /fleet/edge: %d %v", status, sub)
	}
	for _, bad := range []struct {
		body   map[string]any
		status int
		msg    string
	}{
		{map[string]any{"name": "fleet", "active": true, "parentPath": "/", "aliases": []string{}}, 409, "already exists"},
		{map[string]any{"name": "x", "active": true, "parentPath": "/nope", "aliases": []string{}}, 404, "Realm cannot be read: /nope"},
		{map[string]any{"name": "a/b", "active": true, "parentPath": "/", "aliases": []string{}}, 400, "Realm names cannot contain"},
		{map[string]any{"active": true, "parentPath": "/", "aliases": []string{}}, 400, "No name parameter provided"},
		{map[string]any{"name": "x", "active": "yes", "parentPath": "/", "aliases": []string{}}, 400, "Wrong parameter type provided in active"},
		{map[string]any{"name": "x", "active": true, "parentPath": "/"}, 400, "No aliases parameter provided"},
		{map[string]any{"name": "x", "active": true, "parentPath": "/", "aliases": []string{"fleet-alias"}}, 400, "already used by the realm /fleet"},
	} {
		status, body := e.call("POST", realms+"?_action=create", crest, mustJSON(bad.body))
		if msg, _ := body["message"].(string); status != bad.status || !strings.Contains(msg, bad.msg) || body["code"] != float64(bad.status) {
			t.Fatalf("create %v: %d %v, want %d %q", bad.body, status, body, bad.status, bad.msg)
		}
	}

	// Read and query, in AM's JSON.
	if status, got := e.call("GET", realms+"/"+realmID("/fleet"), crest, ""); status != 200 || got["_rev"] != parent["_rev"] ||
		len(got["aliases"].([]any)) != 1 || got["aliases"].([]any)[0] != "fleet-alias" {
		t.Fatalf("read /fleet: %d %v", status, got)
	}
	status, q := e.call("GET", realms+"?_queryFilter=true", crest, "")
	result, _ := q["result"].([]any)
	if status != 200 || q["resultCount"] != float64(3) || len(result) != 3 {
		t.Fatalf("query: %d %v", status, q)
	}
	if root := result[0].(map[string]any); root["_id"] != "Lw==" || root["name"] != "/" || root["parentPath"] != nil {
		t.Fatalf("root realm: %v", root)
	}
	if status, body := e.call("GET", realms+"?_queryFilter="+url.QueryEscape(`name eq "fleet"`), crest, ""); status != 501 {
		t.Fatalf("other query filter: %d %v", status, body)
	}
	if status, body := e.call("GET", realms+"/"+realmID("/nope"), crest, ""); status != 404 || body["reason"] != "Not Found" {
		t.Fatalf("read unknown realm: %d %v", status, body)
	}

	// Use: tokens by path, by alias, by DNS alias; a thing's client assertion
	// on the DNS alias host, whose audience has no realm path.
	if status, tok := tokenIn("/oauth2/realms/root/realms/fleet/realms/edge/access_token", ""); status != 200 ||
		decodeJWT(t, tok["access_token"].(string))["realm"] != "/fleet/edge" {
		t.Fatalf("token in /fleet/edge: %d %v", status, tok)
	}
	if status, tok := tokenIn("/oauth2/access_token?realm=fleet-alias", ""); status != 200 ||
		decodeJWT(t, tok["access_token"].(string))["realm"] != "/fleet" {
		t.Fatalf("token by alias: %d %v", status, tok)
	}
	if status, tok := tokenIn("/oauth2/access_token", dnsAlias+":"+port); status != 200 ||
		decodeJWT(t, tok["access_token"].(string))["realm"] != "/fleet/edge" {
		t.Fatalf("token on the DNS alias host: %d %v", status, tok)
	}
	th := newThing(t, "edge-thing", jose.ES256)
	reg := mustJSON(map[string]any{"userPassword": "5tr0ngG3n3r@ted", "thingType": "device", "thingKeys": th.jwks(t)})
	if status, body := e.call("PUT", e.srv.URL()+"/json/realms/root/realms/fleet/realms/edge/users/"+th.id, map[string]string{
		"Content-Type": "application/json", "Accept-Api-Version": "resource=4.0, protocol=2.1",
		"iPlanetDirectoryPro": admin}, reg); status != 201 {
		t.Fatalf("register in /fleet/edge: %d %v", status, body)
	}
	aliasBase := "http://" + dnsAlias + ":" + port + "/am/oauth2"
	if status, body := assertionLogin(t, e.srv.URL(), dnsAlias+":"+port, "", th.assertionJWT(t, aliasBase, freshJTI()), nil); status != 200 ||
		body["realm"] != "/fleet/edge" {
		t.Fatalf("client assertion on the DNS alias: %d %v", status, body)
	}

	// Update: the sub-realm inactive, the alias moved; a stale revision and a
	// body naming another realm are refused.
	upd := mustJSON(map[string]any{"name": "fleet", "active": true, "parentPath": "/", "aliases": []string{"fleet-renamed"}})
	stale := crestHeaders(admin, version)
	stale["If-Match"] = "0000"
	if status, body := e.call("PUT", realms+"/"+realmID("/fleet"), stale, upd); status != 412 {
		t.Fatalf("update with a stale revision: %d %v", status, body)
	}
	if status, body := e.call("PUT", realms+"/"+realmID("/fleet"), crest, mustJSON(map[string]any{"name": "other", "active": true, "parentPath": "/", "aliases": []string{}})); status != 400 ||
		!strings.Contains(body["message"].(string), "does not match") {
		t.Fatalf("update naming another realm: %d %v", status, body)
	}
	if status, got := e.call("PUT", realms+"/"+realmID("/fleet"), crest, upd); status != 200 || got["aliases"].([]any)[0] != "fleet-renamed" || got["_rev"] == parent["_rev"] {
		t.Fatalf("update /fleet: %d %v", status, got)
	}
	if status, body := tokenIn("/oauth2/access_token?realm=fleet-alias", ""); status != 404 {
		t.Fatalf("token by the old alias: %d %v", status, body)
	}
	if status, body := tokenIn("/oauth2/access_token?realm=fleet-renamed", ""); status != 200 {
		t.Fatalf("token by the new alias: %d %v", status, body)
	}
	if status, got := e.call("PUT", realms+"/"+realmID("/fleet/edge"), crest,
		mustJSON(map[string]any{"name": "edge", "active": false, "parentPath": "/fleet", "aliases": []string{dnsAlias}})); status != 200 || got["active"] != false {
		t.Fatalf("deactivate /fleet/edge: %d %v", status, got)
	}
	if status, body := tokenIn("/oauth2/realms/root/realms/fleet/realms/edge/access_token", ""); status != 404 {
		t.Fatalf("token in an inactive realm: %d %v", status, body)
	}

	// Delete: not the root, not a realm with sub-realms; then child, parent.
	if status, body := e.call("DELETE", realms+"/Lw==", crest, ""); status != 401 {
		t.Fatalf("delete root: %d %v", status, body)
	}
	if status, body := e.call("DELETE", realms+"/"+realmID("/fleet"), crest, ""); status != 409 {
		t.Fatalf("delete a realm with sub-realms: %d %v", status, body)
	}
	for _, p := range []string{"/fleet/edge", "/fleet"} {
		if status, body := e.call("DELETE", realms+"/"+url.PathEscape(realmID(p)), crest, ""); status != 200 || body["_id"] != realmID(p) {
			t.Fatalf("delete %s: %d %v", p, status, body)
		}
		if status, body := e.call("GET", realms+"/"+realmID(p), crest, ""); status != 404 {
			t.Fatalf("read deleted %s: %d %v", p, status, body)
		}
	}
	if status, body := tokenIn("/oauth2/realms/root/realms/fleet/access_token", ""); status != 404 {
		t.Fatalf("token in a deleted realm: %d %v", status, body)
	}
	if status, body := tokenIn("/oauth2/access_token", dnsAlias+":"+port); status != 200 ||
		decodeJWT(t, body["access_token"].(string))["realm"] != "/" {
		t.Fatalf("the deleted realm's DNS alias host is the root realm's again: %d %v", status, body)
	}
}
