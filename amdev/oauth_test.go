package amdev

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func (e *env) form(path, auth string, v url.Values) (int, map[string]any) {
	e.t.Helper()
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if auth != "" {
		h["Authorization"] = auth
	}
	return e.call("POST", e.srv.URL()+path, h, v.Encode())
}

func TestOAuthClientCredentialsIntrospectRevoke(t *testing.T) {
	e := startEnv(t)
	cloud := basic(CloudAppClientID, CloudAppClientSecret)
	broker := basic(BrokerClientID, BrokerClientSecret)
	status, tok := e.form("/oauth2/access_token", cloud, url.Values{"grant_type": {"client_credentials"}, "scope": {"fleet:read fleet:command"}})
	if status != 200 || tok["scope"] != "fleet:read fleet:command" || tok["refresh_token"] != nil {
		t.Fatalf("client_credentials: %d %v", status, tok)
	}
	at := tok["access_token"].(string)
	cases := []struct {
		name   string
		auth   string
		form   url.Values
		status int
		oauth  string
	}{
		{"bad secret", basic(CloudAppClientID, "wrong"), url.Values{"grant_type": {"client_credentials"}}, 401, "invalid_client"},
		{"unknown client", basic("ghost", "x"), url.Values{"grant_type": {"client_credentials"}}, 401, "invalid_client"},
		{"no credentials", "", url.Values{"grant_type": {"client_credentials"}}, 401, "invalid_client"},
		{"post credentials", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {CloudAppClientID}, "client_secret": {CloudAppClientSecret}}, 200, ""},
		{"scope outside client", cloud, url.Values{"grant_type": {"client_credentials"}, "scope": {"publish"}}, 400, "invalid_scope"},
		{"grant not allowed", cloud, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, 400, "unauthorized_client"},
		{"no grant type", cloud, url.Values{}, 400, "invalid_request"},
	}
	for _, c := range cases {
		status, body := e.form("/oauth2/access_token", c.auth, c.form)
		if status != c.status || (c.oauth != "" && (body["error"] != c.oauth || body["code"] != float64(status))) {
			t.Errorf("%s: %d %v", c.name, status, body)
		}
	}
	// Introspection: own token (basic and post), broker sees everything, others see inactive.
	if _, in := e.form("/oauth2/introspect", cloud, url.Values{"token": {at}}); in["active"] != true || in["sub"] != "(age!cloud-app)" {
		t.Fatalf("own token: %v", in)
	}
	if _, in := e.form("/oauth2/introspect", "", url.Values{"token": {at}, "client_id": {BrokerClientID}, "client_secret": {BrokerClientSecret}}); in["active"] != true {
		t.Fatalf("broker (post auth): %v", in)
	}
	if _, in := e.form("/oauth2/introspect", basic(DefaultClientID, DefaultClientSecret), url.Values{"token": {at}}); in["active"] != false {
		t.Fatalf("other client sees token: %v", in)
	}
	if status, _ := e.form("/oauth2/introspect", basic(BrokerClientID, "x"), url.Values{"token": {at}}); status != 401 {
		t.Fatalf("bad introspection credentials: %d", status)
	}
	// Revocation: only the owner; afterwards inactive.
	if status, _ := e.form("/oauth2/token/revoke", broker, url.Values{"token": {at}}); status != 200 {
		t.Fatalf("revoke by non-owner: %d", status)
	}
	if _, in := e.form("/oauth2/introspect", broker, url.Values{"token": {at}}); in["active"] != true {
		t.Fatal("non-owner revoked the token")
	}
	if status, _ := e.form("/oauth2/token/revoke?realm=/", cloud, url.Values{"token": {at}}); status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if _, in := e.form("/oauth2/introspect", broker, url.Values{"token": {at}}); in["active"] != false {
		t.Fatalf("revoked token active: %v", in)
	}
}

func TestOAuthJWTBearerRefreshAndDeviceCode(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "bearer-thing", jose.ES256)
	e.registerManually(th, nil)
	iot := basic(DefaultClientID, DefaultClientSecret)
	assertion := th.assertionJWT(t, e.srv.Issuer()+"/access_token", map[string]any{"jti": "j1"})
	status, tok := e.form("/oauth2/access_token", iot, url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}, "scope": {"publish"}})
	if status != 200 || decodeJWT(t, tok["access_token"].(string))["subname"] != th.id {
		t.Fatalf("jwt-bearer: %d %v", status, tok)
	}
	if status, body := e.form("/oauth2/access_token", iot, url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}}); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("replayed assertion: %d %v", status, body)
	}
	// Device code grant through the OAuth endpoints, then refresh and revoke the grant.
	status, dc := e.form("/oauth2/device/code", iot, url.Values{"scope": {"publish subscribe"}})
	if status != 200 || dc["user_code"] == nil {
		t.Fatalf("device code: %d %v", status, dc)
	}
	poll := url.Values{"grant_type": {grantDeviceCode}, "device_code": {dc["device_code"].(string)}}
	if status, body := e.form("/oauth2/access_token", iot, poll); status != 403 || body["error"] != "authorization_pending" {
		t.Fatalf("pending: %d %v", status, body)
	}
	approve(t, dc["verification_uri_complete"].(string), DemoUserID, DefaultUserPassword, "allow")
	status, tok = e.form("/oauth2/access_token", iot, poll)
	if status != 200 || tok["refresh_token"] == nil {
		t.Fatalf("device token: %d %v", status, tok)
	}
	status, ref := e.form("/oauth2/access_token", iot, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "scope": {"subscribe"}})
	if status != 200 || ref["scope"] != "subscribe" {
		t.Fatalf("refresh: %d %v", status, ref)
	}
	if status, body := e.form("/oauth2/access_token", iot, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("spent refresh token: %d %v", status, body)
	}
	if status, _ := e.form("/oauth2/token/revoke", iot, url.Values{"token": {ref["refresh_token"].(string)}}); status != 200 {
		t.Fatalf("revoke refresh: %d", status)
	}
	if _, in := e.form("/oauth2/introspect", iot, url.Values{"token": {ref["access_token"].(string)}}); in["active"] != false {
		t.Fatalf("access token of a revoked grant still active: %v", in)
	}
}

func TestDiscoveryJWKSAndServerInfo(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.Realms = []string{"/a/b"}; s.RealmAliases = map[string]string{"alias-xyz": "/a"} })
	for _, c := range []struct{ path, issuer string }{
		{"/oauth2/.well-known/openid-configuration", e.srv.Issuer()},
		{"/oauth2/.well-known/openid-configuration?realm=/a/b", e.srv.Issuer() + "/realms/root/realms/a/realms/b"},
		{"/oauth2/.well-known/openid-configuration?realm=alias-xyz", e.srv.Issuer() + "/realms/root/realms/a"},
		{"/oauth2/realms/root/realms/a/.well-known/openid-configuration", e.srv.Issuer() + "/realms/root/realms/a"},
	} {
		status, d := e.call("GET", e.srv.URL()+c.path, nil, "")
		if status != 200 || d["issuer"] != c.issuer || d["jwks_uri"] != c.issuer+"/connect/jwk_uri" || d["device_authorization_endpoint"] == nil {
			t.Fatalf("%s: %d %v", c.path, status, d)
		}
	}
	if status, _ := e.call("GET", e.srv.URL()+"/oauth2/realms/root/realms/b/.well-known/openid-configuration", nil, ""); status != 404 {
		t.Fatalf("a realm found by its last segment: %d", status)
	}
	_, set := e.call("GET", e.srv.Issuer()+"/connect/jwk_uri", nil, "")
	keys := set["keys"].([]any)
	if len(keys) != 1 || keys[0].(map[string]any)["kid"] == "" || keys[0].(map[string]any)["alg"] != "ES256" {
		t.Fatalf("jwks: %v", set)
	}
	// A token verifies with the published key.
	ctx := context.Background()
	tok, err := e.srv.IssueAccessToken(ctx, DemoThingID, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || obj.Signatures[0].Header.KeyID != keys[0].(map[string]any)["kid"] {
		t.Fatalf("token kid: %v", err)
	}
	for _, h := range []string{"resource=1.1", "resource=1.0, protocol=1.0", ""} {
		status, info := e.call("GET", e.srv.URL()+"/json/serverinfo/*?_fields=cookieName", map[string]string{"Accept-API-Version": h}, "")
		if status != 200 || info["cookieName"] != "iPlanetDirectoryPro" {
			t.Fatalf("serverinfo %q: %d %v", h, status, info)
		}
	}
	if status, body := e.call("GET", e.srv.URL()+"/json/serverinfo/*", map[string]string{"Accept-API-Version": "resource=9.0"}, ""); status != 404 || body["code"] != float64(404) {
		t.Fatalf("unsupported version: %d %v", status, body)
	}
	for _, path := range []string{"/json/nothing", "/oauth2/nothing", "/elsewhere", "/json/things/x"} {
		status, body := e.call("GET", e.srv.URL()+path, nil, "")
		if status != 404 || body["reason"] != "Not Found" {
			t.Errorf("%s: %d %v", path, status, body)
		}
	}
	status, body := e.call("DELETE", e.srv.URL()+"/json/authenticate", nil, "")
	if status != http.StatusMethodNotAllowed || body["code"] != float64(405) {
		t.Fatalf("405: %d %v", status, body)
	}
	if status, body := e.call("POST", e.srv.URL()+"/json/authenticate?authIndexType=service&authIndexValue=no-such-tree", authHeaders(), "{}"); status != 400 {
		t.Fatalf("unknown tree: %d %v", status, body)
	}
	if status, body := e.call("POST", e.srv.URL()+"/json/authenticate", authHeaders(), "{not json"); status != 400 || !strings.Contains(body["message"].(string), "Invalid") {
		t.Fatalf("bad body: %d %v", status, body)
	}
}

func TestSubRealmThings(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.Realms = []string{"/a/b", "/x/b"} })
	th := newThing(t, "realm-thing", jose.ES256)
	admin := e.adminToken()
	status, body := e.call("PUT", e.srv.URL()+"/json/realms/root/realms/a/realms/b/users/"+th.id, map[string]string{
		"Content-Type": "application/json", "iPlanetDirectoryPro": admin}, `{"thingType":"device","thingKeys":`+quote(th.jwks(t))+`}`)
	if status != 201 {
		t.Fatalf("create in /a/b: %d %v", status, body)
	}
	status, body = e.login("auth-tree", "/a/b", popFill(t, th, "/a/b"))
	if status != 200 || body["realm"] != "/a/b" {
		t.Fatalf("login in /a/b: %d %v", status, body)
	}
	// The doppelganger realm /x/b does not know the thing.
	if status, _ := e.login("auth-tree", "/x/b", popFill(t, th, "/x/b")); status != 401 {
		t.Fatalf("doppelganger realm: %d", status)
	}
	p := &popSession{e: e, th: th, token: body["tokenId"].(string)}
	status, tok := p.do("POST", accessTokenPath+"&realm=/a/b", map[string]any{}, true)
	if status != 200 || decodeJWT(t, tok["access_token"].(string))["iss"] != e.srv.Issuer()+"/realms/root/realms/a/realms/b" {
		t.Fatalf("token in /a/b: %d %v", status, tok)
	}
}

func urlValues(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// TestDNSAliasHost: a request to a DNS alias host without a realm parameter is in
// the alias's realm, for OAuth URLs and for authentication trees alike.
func TestDNSAliasHost(t *testing.T) {
	e := startEnv(t, func(s *Settings) {
		s.Realms = []string{"/a/b"}
		s.RealmHosts = map[string]string{"sub.am.localtest.me": "/a/b"}
	})
	get := func(host, path string) (int, map[string]any) {
		req, err := http.NewRequest("GET", e.srv.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&d)
		return resp.StatusCode, d
	}
	alias := "sub.am.localtest.me:" + strings.Split(e.srv.Addr(), ":")[1]
	if status, d := get(alias, "/oauth2/.well-known/openid-configuration"); status != 200 || d["issuer"] != e.srv.Issuer()+"/realms/root/realms/a/realms/b" {
		t.Fatalf("discovery on the alias host: %d %v", status, d)
	}
	if status, d := get(e.srv.Addr(), "/oauth2/.well-known/openid-configuration"); status != 200 || d["issuer"] != e.srv.Issuer() {
		t.Fatalf("discovery on the plain host: %d %v", status, d)
	}
	if realm, err := e.srv.resolveRealm("", alias); err != nil || realm != "/a/b" {
		t.Fatalf("authenticate on the alias host resolves %q, %v", realm, err)
	}
	if realm, err := e.srv.resolveRealm("/", alias); err != nil || realm != "/" {
		t.Fatalf("an explicit realm parameter wins over the alias: %q, %v", realm, err)
	}
	if _, err := ParseSettings("x.yaml", []byte("realmHosts: {sub.example: /nope}\n")); err == nil {
		t.Fatal("a DNS alias to an unconfigured realm was accepted")
	}
}
