package amdev

import (
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// loggedIn registers th manually and logs it in through tree; it returns its session.
func loggedIn(t *testing.T, e *env, th *testThing, tree string, extra map[string]any) *popSession {
	t.Helper()
	e.registerManually(th, extra)
	status, body := e.login(tree, "/", popFill(t, th, "/"))
	if status != 200 {
		t.Fatalf("login: %d %v", status, body)
	}
	return &popSession{e: e, th: th, token: body["tokenId"].(string)}
}

func TestSignedRequestChecks(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "signer", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", nil)
	target := e.srv.URL() + accessTokenPath
	api := "protocol=2.0,resource=1.0"
	send := func(body, apiHeader string) (int, map[string]any) {
		return e.call("POST", target, map[string]string{"Accept-API-Version": apiHeader, "Content-Type": "application/jose",
			"Cookie": "iPlanetDirectoryPro=" + p.token}, body)
	}
	good := func(nonce int, extra map[string]any) string {
		hdr := map[string]any{"aud": target, "api": api, "nonce": nonce}
		for k, v := range extra {
			hdr[k] = v
		}
		return signWith(t, th.key, th.alg, map[string]any{"csrf": p.token}, hdr)
	}
	if status, body := send(good(5, nil), api); status != 200 {
		t.Fatalf("valid signed request: %d %v", status, body)
	}
	other := newThing(t, "other", jose.ES256)
	tests := []struct {
		name   string
		body   string
		api    string
		status int
	}{
		{"same nonce again", good(5, nil), api, 403},
		{"lower nonce", good(4, nil), api, 403},
		{"string nonce", good(0, map[string]any{"nonce": "6"}), api, 403},
		{"wrong aud", good(6, map[string]any{"aud": e.srv.URL() + introspectPath}), api, 403},
		{"api mismatch", good(7, nil), "protocol=2.0, resource=1.0", 403},
		{"wrong key", signWith(t, other.key, other.alg, map[string]any{"csrf": p.token}, map[string]any{"aud": target, "api": api, "nonce": 8}), api, 403},
		{"wrong csrf", signWith(t, th.key, th.alg, map[string]any{"csrf": "nope"}, map[string]any{"aud": target, "api": api, "nonce": 9}), api, 403},
		{"malformed", "a.b", api, 400},
		{"next nonce still works", good(10, nil), api, 200},
	}
	for _, tc := range tests {
		status, body := send(tc.body, tc.api)
		if status != tc.status {
			t.Errorf("%s: %d, want %d: %v", tc.name, status, tc.status, body)
		}
		if status >= 400 && body["code"] != float64(status) {
			t.Errorf("%s: envelope %v", tc.name, body)
		}
	}
	// "%2A" in the path is the same URL as "*".
	enc := e.srv.URL() + "/json/things/%2A?_action=get_access_token"
	body := signWith(t, th.key, th.alg, map[string]any{"csrf": p.token}, map[string]any{"aud": enc, "api": api, "nonce": 11})
	if status, reply := e.call("POST", enc, map[string]string{"Accept-API-Version": api, "Content-Type": "application/jose",
		"Cookie": "iPlanetDirectoryPro=" + p.token}, body); status != 200 {
		t.Fatalf("%%2A: %d %v", status, reply)
	}
}

func TestSessionsValidateLogout(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "sess-thing", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", nil)
	if status, body := p.do("POST", "/json/sessions?_action=validate", nil, true); status != 200 || body["valid"] != true || body["uid"] != th.id {
		t.Fatalf("validate (signed): %d %v", status, body)
	}
	// Admin validates another session by tokenId in a header-carried admin token.
	admin := e.adminToken()
	hdr := map[string]string{"iPlanetDirectoryPro": admin, "Accept-API-Version": "resource=4.0", "Content-Type": "application/json"}
	if status, body := e.call("POST", e.srv.URL()+"/json/sessions?_action=validate", hdr, `{"tokenId":"`+p.token+`"}`); status != 200 || body["valid"] != true {
		t.Fatalf("admin validate: %d %v", status, body)
	}
	if status, body := p.do("POST", "/json/sessions?_action=logout", nil, true); status != 200 || body["result"] != "Successfully logged out" {
		t.Fatalf("logout: %d %v", status, body)
	}
	if status, body := p.do("POST", "/json/sessions?_action=validate", nil, true); status != 200 || body["valid"] != false {
		t.Fatalf("validate after logout: %d %v", status, body)
	}
	if status, body := p.do("POST", accessTokenPath, map[string]any{}, true); status != 401 || body["code"] != float64(401) {
		t.Fatalf("dead session on things: %d %v", status, body)
	}
	if status, _ := p.do("POST", "/json/sessions?_action=logout", nil, true); status != 401 {
		t.Fatalf("logout of a dead session: %d", status)
	}
	if status, _ := e.call("POST", e.srv.URL()+"/json/sessions?_action=frobnicate", hdr, ""); status != 400 {
		t.Fatalf("unknown action: %d", status)
	}
	// Sessions end at their lifetime.
	q := loggedIn(t, e, newThing(t, "short", jose.ES256), "JWTAuthWithPoPWithUnrestrictedToken", nil)
	e.clock.Advance(3 * time.Hour)
	if status, _ := q.do("POST", accessTokenPath, map[string]any{}, false); status != 401 {
		t.Fatalf("expired session: %d", status)
	}
}

func TestThingsActions(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "actor", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", map[string]any{"thingConfig": "host=localhost;port=80", "thingProperties": `{"a":1}`})

	status, body := p.do("POST", accessTokenPath+"&realm=/", map[string]any{"scope": []string{"publish", "delete"}}, true)
	if status != 400 || !strings.Contains(body["message"].(string), "Unknown/invalid scope(s)") ||
		body["detail"].(map[string]any)["error"] != "invalid_scope" {
		t.Fatalf("invalid scope: %d %v", status, body)
	}
	status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish", "subscribe"}}, true)
	if status != 200 || tok["refresh_token"] == nil {
		t.Fatalf("token: %d %v", status, tok)
	}
	status, in := p.do("POST", introspectPath, map[string]any{"token": tok["access_token"]}, true)
	if status != 200 || in["active"] != true || in["scope"] != "publish subscribe" || in["subname"] != th.id || in["client_id"] != DefaultClientID {
		t.Fatalf("introspect: %d %v", status, in)
	}
	if _, in := p.do("POST", introspectPath, map[string]any{"token": "forged.jwt.value"}, true); in["active"] != false {
		t.Fatalf("forged token active: %v", in)
	}
	// Refresh: narrower works, wider fails, another thing's refresh token fails.
	status, narrowed := p.do("POST", accessTokenPath, map[string]any{"refresh_token": tok["refresh_token"], "scope": []string{"publish"}}, true)
	if status != 200 || narrowed["scope"] != "publish" {
		t.Fatalf("refresh narrower: %d %v", status, narrowed)
	}
	status, body = p.do("POST", accessTokenPath, map[string]any{"refresh_token": narrowed["refresh_token"], "scope": []string{"publish", "subscribe"}}, true)
	if status != 400 || !strings.Contains(body["message"].(string)+body["detail"].(map[string]any)["error"].(string), "invalid_scope") {
		t.Fatalf("refresh wider: %d %v", status, body)
	}
	q := loggedIn(t, e, newThing(t, "thief", jose.ES256), "auth-tree", nil)
	status, body = q.do("POST", accessTokenPath, map[string]any{"refresh_token": narrowed["refresh_token"]}, true)
	if status != 400 || body["detail"].(map[string]any)["error"] != "invalid_grant" {
		t.Fatalf("refresh of another thing's token: %d %v", status, body)
	}
	// Attributes: allow-list, _fields, arrays, GET with a signed body.
	status, attrs := p.do("GET", "/json/things/*?realm=/&_fields=thingConfig,thingType,userPassword", nil, true)
	if status != 200 || attrs["_id"] != th.id || toStrings(attrs["thingConfig"])[0] != "host=localhost;port=80" ||
		toStrings(attrs["thingType"])[0] != "device" || attrs["userPassword"] != nil || attrs["thingProperties"] != nil {
		t.Fatalf("attributes: %d %v", status, attrs)
	}
	status, attrs = p.do("GET", "/json/things/*", nil, true)
	if status != 200 || attrs["thingProperties"] == nil || attrs["thingKeys"] == nil {
		t.Fatalf("all attributes: %d %v", status, attrs)
	}
	if status, body := p.do("POST", "/json/things/*?_action=explode", map[string]any{}, true); status != 400 {
		t.Fatalf("unknown action: %d %v", status, body)
	}
	if status, body := p.do("POST", accessTokenPath+"&realm=/nowhere", map[string]any{}, true); status != 400 {
		t.Fatalf("foreign realm: %d %v", status, body)
	}
}

func TestCustomThingClient(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "custom", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", map[string]any{"thingOAuth2ClientName": CustomThingClientID})
	status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"create", "modify", "delete"}}, true)
	if status != 200 || tok["scope"] != "create modify delete" {
		t.Fatalf("custom client token: %d %v", status, tok)
	}
	if c := decodeJWT(t, tok["access_token"].(string)); c["aud"] != CustomThingClientID {
		t.Fatalf("aud %v", c["aud"])
	}
	if status, _ := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true); status != 400 {
		t.Fatalf("default client's scope on the custom client: %d", status)
	}
	if status, body := p.do("POST", accessTokenPath, map[string]any{}, true); status != 400 || body["detail"].(map[string]any)["error"] != "invalid_scope" {
		t.Fatalf("no scope and no defaults: %d %v", status, body)
	}
}
