package amdev

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"imb/ssf"
)

// pairThing registers a thing, runs the device flow through the things endpoint and has bjensen approve it;
// it returns the user token response.
func pairThing(t *testing.T, e *env, thingID string) map[string]any {
	t.Helper()
	p := loggedIn(t, e, newThing(t, thingID, jose.ES256), "auth-tree", nil)
	status, dc := p.do("POST", userCodePath, map[string]any{"scope": []string{"publish"}}, true)
	if status != 200 {
		t.Fatalf("user code: %d %v", status, dc)
	}
	approve(t, dc["verification_uri_complete"].(string), DemoUserID, DefaultUserPassword, "allow")
	status, tok := p.do("POST", userTokenPath, map[string]any{"device_code": dc["device_code"]}, true)
	if status != 200 || tok["access_token"] == nil || tok["refresh_token"] == nil {
		t.Fatalf("user token: %d %v", status, tok)
	}
	return tok
}

// introspectActive asks /oauth2/introspect, as the broker does, whether token is active.
func introspectActive(t *testing.T, e *env, token string) bool {
	t.Helper()
	status, body := e.call("POST", e.srv.IntrospectionURL(), map[string]string{"Content-Type": "application/x-www-form-urlencoded",
		"Authorization": basicAuth(BrokerClientID, BrokerClientSecret)}, url.Values{"token": {token}}.Encode())
	if status != 200 {
		t.Fatalf("introspect: %d %v", status, body)
	}
	return body["active"] == true
}

func basicAuth(id, secret string) string {
	r, _ := http.NewRequest("GET", "http://x", nil)
	r.SetBasicAuth(id, secret)
	return r.Header.Get("Authorization")
}

func userSSO(t *testing.T, e *env) string {
	t.Helper()
	status, login := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": DemoUserID, "X-OpenAM-Password": DefaultUserPassword}, "")
	if status != 200 {
		t.Fatalf("user login: %d %v", status, login)
	}
	return login["tokenId"].(string)
}

// expectEvents reads n events from the receiver within 5 s.
func expectEvents(t *testing.T, events <-chan ssf.Event, n int) []ssf.Event {
	t.Helper()
	var got []ssf.Event
	for range n {
		select {
		case ev := <-events:
			got = append(got, ev)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d events reached the receiver: %+v", len(got), n, got)
		}
	}
	return got
}

// TestPairingListedAndRevoked (§2.7): the thing bjensen approved through the device flow is listed as hers;
// revoking it destroys the pairing's tokens (introspection says inactive, the refresh token is refused) and
// pushes a token-revoked SET for its access token and a session-revoked SET for the thing.
func TestPairingListedAndRevoked(t *testing.T) {
	e := startEnv(t)
	events := imbReceiver(t, e.srv)
	tok := pairThing(t, e, "paired-speaker")
	access, refresh := tok["access_token"].(string), tok["refresh_token"].(string)
	sso := userSSO(t, e)
	list := e.srv.URL() + "/json/realms/root/users/" + DemoUserID + "/pairings"
	user := map[string]string{"iPlanetDirectoryPro": sso}

	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no session", nil, http.StatusUnauthorized},
		{"a thing's session", map[string]string{"iPlanetDirectoryPro": loggedIn(t, e, newThing(t, "nosy-thing", jose.ES256), "auth-tree", nil).token}, http.StatusForbidden},
		{"the administrator", map[string]string{"iPlanetDirectoryPro": e.adminToken()}, http.StatusOK},
	} {
		if status, _ := e.call("GET", list, tc.headers, ""); status != tc.want {
			t.Errorf("%s lists bjensen's pairings: %d, want %d", tc.name, status, tc.want)
		}
	}
	status, body := e.call("GET", list, user, "")
	result, _ := body["result"].([]any)
	if status != 200 || len(result) != 1 || body["resultCount"] != float64(1) {
		t.Fatalf("pairings: %d %v", status, body)
	}
	pr := result[0].(map[string]any)
	if pr["thing"] != "paired-speaker" || pr["client"] != DefaultClientID || pr["_id"] == "" {
		t.Fatalf("pairing: %v", pr)
	}
	if strings.Contains(mustString(t, body), sha256Hex(access)) {
		t.Error("the listing shows a token hash")
	}
	if !introspectActive(t, e, access) {
		t.Fatal("the pairing's token is inactive before the revocation")
	}

	if status, _ := e.call("DELETE", list+"/"+pr["_id"].(string), user, ""); status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if introspectActive(t, e, access) || introspectActive(t, e, refresh) {
		t.Error("a token of the revoked pairing is still active")
	}
	if status, body := e.call("POST", e.srv.TokenURL(), map[string]string{"Content-Type": "application/x-www-form-urlencoded",
		"Authorization": basicAuth(DefaultClientID, DefaultClientSecret)},
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}.Encode()); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("refresh after the revocation: %d %v", status, body)
	}
	got := expectEvents(t, events, 2)
	slices.SortFunc(got, func(a, b ssf.Event) int { return strings.Compare(a.Type, b.Type) })
	if got[0].Type != ssf.SessionRevoked || got[0].Subject != (ssf.Subject{Format: ssf.FormatIssSub, Issuer: e.srv.Issuer(), ID: "paired-speaker"}) ||
		got[1].Type != ssf.TokenRevoked || got[1].Token != sha256Hex(access) {
		t.Fatalf("events: %+v", got)
	}
	if status, body := e.call("GET", list, user, ""); status != 200 || body["resultCount"] != float64(0) {
		t.Errorf("pairings after the revocation: %d %v", status, body)
	}
	if status, _ := e.call("DELETE", list+"/"+pr["_id"].(string), user, ""); status != 404 {
		t.Errorf("revoking it again: %d, want 404", status)
	}
}

// TestDeletedThingLosesItsPairings: deleting a paired thing revokes the pairing (its user token is inactive,
// named in a SET) before account-purged goes out.
func TestDeletedThingLosesItsPairings(t *testing.T) {
	e := startEnv(t)
	events := imbReceiver(t, e.srv)
	access := pairThing(t, e, "sold-speaker")["access_token"].(string)
	if status, _ := e.call("DELETE", e.srv.URL()+"/json/realms/root/users/sold-speaker", map[string]string{"iPlanetDirectoryPro": e.adminToken()}, ""); status != 200 {
		t.Fatalf("delete: %d", status)
	}
	if introspectActive(t, e, access) {
		t.Error("the deleted thing's user token is active")
	}
	types := map[string]ssf.Event{}
	for _, ev := range expectEvents(t, events, 3) {
		types[ev.Type] = ev
	}
	if types[ssf.TokenRevoked].Token != sha256Hex(access) || types[ssf.AccountPurged].Subject.ID != "sold-speaker" || types[ssf.SessionRevoked].Subject.ID != "sold-speaker" {
		t.Fatalf("events: %+v", types)
	}
	if status, body := e.call("GET", e.srv.URL()+"/json/realms/root/users/"+DemoUserID+"/pairings", map[string]string{"iPlanetDirectoryPro": userSSO(t, e)}, ""); status != 200 || body["resultCount"] != float64(0) {
		t.Errorf("pairings: %d %v", status, body)
	}
}

var pairingField = regexp.MustCompile(`name="pairing" value="([^"]*)"`)

// TestPairingsPage: the page a person uses: sign in, see the paired thing, revoke it; a forged form is refused.
func TestPairingsPage(t *testing.T) {
	e := startEnv(t)
	events := imbReceiver(t, e.srv)
	access := pairThing(t, e, "page-speaker")["access_token"].(string)
	pageURL := e.srv.Issuer() + "/device/pairings"
	c := newJarClient(t)
	status, page := get(t, c, pageURL)
	f := fields(page)
	if status != 200 || f["login_csrf"] == "" || !strings.Contains(page, `name="password"`) {
		t.Fatalf("login page: %d %s", status, page)
	}
	status, page = postForm(t, c, pageURL, url.Values{"username": {DemoUserID}, "password": {DefaultUserPassword}, "login_csrf": {f["login_csrf"]}})
	m := pairingField.FindStringSubmatch(page)
	if status != 200 || m == nil || !strings.Contains(page, "page-speaker") || fields(page)["csrf"] == "" {
		t.Fatalf("list page: %d %s", status, page)
	}
	csrf := fields(page)["csrf"]
	if status, page := postForm(t, c, pageURL, url.Values{"pairing": {m[1]}, "csrf": {"forged"}}); status != 403 || !strings.Contains(page, `errorCode: "csrf"`) {
		t.Fatalf("forged revoke: %d %s", status, page)
	}
	if !introspectActive(t, e, access) {
		t.Fatal("a forged form revoked the pairing")
	}
	status, page = postForm(t, c, pageURL, url.Values{"pairing": {m[1]}, "csrf": {csrf}})
	if status != 200 || !strings.Contains(page, "done: true") || !strings.Contains(page, "Revoked the pairing with page-speaker") || !strings.Contains(page, "No paired things") {
		t.Fatalf("revoke: %d %s", status, page)
	}
	if introspectActive(t, e, access) {
		t.Error("the revoked pairing's token is active")
	}
	expectEvents(t, events, 2)
}

func mustString(t *testing.T, v any) string { return string(mustJSON(t, v)) }
