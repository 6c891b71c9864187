package amdev

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func TestManualRegistrationREST(t *testing.T) {
	e := startEnv(t)
	admin := e.adminToken()
	url := e.srv.URL() + "/json/realms/root/users/manual-thing"
	h := map[string]string{"Content-Type": "application/json", "Accept-Api-Version": "resource=4.0, protocol=2.1", "Cookie": "iPlanetDirectoryPro=" + admin}
	// The walk-through's exact body: thingKeys as JSON text.
	walk := `{"userPassword":"5tr0ngG3n3r@ted","thingType":"device","thingKeys":"{\"keys\":[{\"use\":\"sig\",\"kty\":\"EC\",\"kid\":\"cbnztC8J_l2feNf0aTFBDDQJuvrd2JbLPoOAxHR2N8o=\",\"crv\":\"P-256\",\"alg\":\"ES256\",\"x\":\"wjC9kMzwIeXNn6lsjdqplcq9aCWpAOZ0af1_yruCcJ4\",\"y\":\"ihIziCymBnU8W8m5zx69DsQr0sWDiXsDMq04lBmfEHw\"}]}"}`
	status, body := e.call("PUT", url, h, walk)
	if status != 201 || body["_id"] != "manual-thing" || body["realm"] != "/" || toStrings(body["thingType"])[0] != "device" ||
		!strings.Contains(toStrings(body["thingKeys"])[0], "cbnztC8J_l2feNf0aTFBDDQJuvrd2JbLPoOAxHR2N8o=") || body["userPassword"] != nil {
		t.Fatalf("PUT: %d %v", status, body)
	}
	if status, _ := e.call("PUT", url, h, walk); status != 200 {
		t.Fatalf("second PUT (update): %d", status)
	}
	if status, _ := e.call("PUT", url, map[string]string{"Content-Type": "application/json", "Cookie": "iPlanetDirectoryPro=" + admin, "If-None-Match": "*"}, walk); status != 412 {
		t.Fatalf("If-None-Match on existing: %d", status)
	}
	if status, body := e.call("GET", url, h, ""); status != 200 || body["username"] != "manual-thing" {
		t.Fatalf("GET: %d %v", status, body)
	}
	// The identity's password works for header login.
	if status, _ := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": "manual-thing", "X-OpenAM-Password": "5tr0ngG3n3r@ted"}, ""); status != 200 {
		t.Fatalf("thing password login: %d", status)
	}
	// thingKeys as an object (test framework), CREST create, older /json/users form.
	th := newThing(t, "crest-thing", jose.ES256)
	var keys map[string]any
	_ = json.Unmarshal([]byte(th.jwks(t)), &keys)
	create, _ := json.Marshal(map[string]any{"username": th.id, "userPassword": "pw", "thingType": "device", "thingKeys": keys, "thingConfig": "c"})
	status, body = e.call("POST", e.srv.URL()+"/json/users?realm=/&_action=create", map[string]string{"Content-Type": "application/json",
		"Accept-API-Version": "resource=3.0, protocol=1.0", "iPlanetDirectoryPro": admin}, string(create))
	if status != 201 || toStrings(body["_id"])[0] != th.id {
		t.Fatalf("CREST create: %d %v", status, body)
	}
	if status, _ := e.login("auth-tree", "/", popFill(t, th, "/")); status != 200 {
		t.Fatalf("login of CREST-created thing: %d", status)
	}
	if status, _ := e.call("GET", e.srv.URL()+"/json/users/"+th.id+"?realm=/", map[string]string{"iPlanetDirectoryPro": admin}, ""); status != 200 {
		t.Fatalf("GET older form: %d", status)
	}
	cases := []struct {
		name, method, url, token, body string
		status                         int
	}{
		{"no session", "PUT", url, "", walk, 401},
		{"user session", "PUT", url, e.userToken(), walk, 403},
		{"bad thingKeys", "PUT", url, admin, `{"thingKeys":"not json"}`, 400},
		{"bad attribute type", "PUT", url, admin, `{"thingType":42}`, 400},
		{"not JSON", "PUT", url, admin, `[`, 400},
		{"delete", "DELETE", url, admin, "", 200},
		{"delete again", "DELETE", url, admin, "", 404},
		{"get deleted", "GET", url, admin, "", 404},
	}
	for _, c := range cases {
		hh := map[string]string{"Content-Type": "application/json"}
		if c.token != "" {
			hh["iPlanetDirectoryPro"] = c.token
		}
		status, body := e.call(c.method, c.url, hh, c.body)
		if status != c.status || body["code"] != nil && body["code"] != float64(status) {
			t.Errorf("%s: %d %v", c.name, status, body)
		}
	}
	// A session of a deleted thing is dead on the things endpoint.
	p := loggedIn(t, e, newThing(t, "doomed", jose.ES256), "auth-tree", nil)
	e.call("DELETE", e.srv.URL()+"/json/realms/root/users/doomed", map[string]string{"iPlanetDirectoryPro": admin}, "")
	if status, _ := p.do("POST", accessTokenPath, map[string]any{}, true); status != 401 {
		t.Fatalf("deleted thing: %d", status)
	}
}

func (e *env) userToken() string {
	_, body := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": DemoUserID, "X-OpenAM-Password": DefaultUserPassword}, "")
	return body["tokenId"].(string)
}

func TestPersistenceAcrossRestart(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "survivor", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", nil)
	_, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
	ctx := context.Background()
	before, err := e.srv.IssueAccessToken(ctx, DemoThingID, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	st := e.srv.Settings()
	e.restart(&st)
	// The identity, the signing key (old tokens verify) and the refresh token survived.
	if status, body := e.login("auth-tree", "/", popFill(t, th, "/")); status != 200 {
		t.Fatalf("login after restart: %d %v", status, body)
	}
	_, in := e.form("/oauth2/introspect", basic(BrokerClientID, BrokerClientSecret), urlValues("token", before))
	if in["active"] != true {
		t.Fatalf("token from before the restart inactive: %v", in)
	}
	// The old SSO session is gone: 401, as after an AM restart without CTS.
	if status, _ := p.do("POST", accessTokenPath, map[string]any{}, true); status != 401 {
		t.Fatalf("old session: %d", status)
	}
	status, body := e.login("auth-tree", "/", popFill(t, th, "/"))
	if status != 200 {
		t.Fatalf("relogin: %d", status)
	}
	q := &popSession{e: e, th: th, token: body["tokenId"].(string)}
	if status, ref := q.do("POST", accessTokenPath, map[string]any{"refresh_token": tok["refresh_token"]}, true); status != 200 || ref["scope"] != "publish" {
		t.Fatalf("refresh after restart: %d %v", status, ref)
	}
}
