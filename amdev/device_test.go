package amdev

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var hiddenField = regexp.MustCompile(`name="(csrf|login_csrf|user_code)" value="([^"]*)"`)

// fields returns the hidden form fields of an HTML page.
func fields(page string) map[string]string {
	out := map[string]string{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		out[m[1]] = m[2]
	}
	return out
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// approve drives the HTML page as a person would: sign in, confirm the code, decide.
func approve(t *testing.T, verifyURI, user, pw, decision string) string {
	t.Helper()
	c := newJarClient(t)
	status, page := get(t, c, verifyURI)
	f := fields(page)
	if status != 200 || f["login_csrf"] == "" || !strings.Contains(page, `name="password"`) {
		t.Fatalf("login page: %d %s", status, page)
	}
	// A sign-in without the double-submit token is refused.
	if _, page := postForm(t, newJarClient(t), verifyURI, url.Values{"username": {user}, "password": {pw}}); strings.Contains(page, `name="decision"`) || !strings.Contains(page, "expired") {
		t.Fatalf("sign-in without csrf accepted: %s", page)
	}
	status, page = postForm(t, c, verifyURI, url.Values{"username": {user}, "password": {pw}, "login_csrf": {f["login_csrf"]}, "user_code": {f["user_code"]}})
	f = fields(page)
	if status != 200 || f["csrf"] == "" || !strings.Contains(page, "Confirm") {
		t.Fatalf("code page: %d %s", status, page)
	}
	// A forged form (wrong csrf) is refused.
	if status, page := postForm(t, c, verifyURI, url.Values{"user_code": {f["user_code"]}, "csrf": {"forged"}, "decision": {"allow"}}); status != 403 || !strings.Contains(page, `errorCode: "csrf"`) {
		t.Fatalf("forged decision: %d %s", status, page)
	}
	status, page = postForm(t, c, verifyURI, url.Values{"user_code": {f["user_code"]}, "csrf": {f["csrf"]}})
	if status != 200 || !strings.Contains(page, `value="allow"`) {
		t.Fatalf("consent page: %d %s", status, page)
	}
	f = fields(page)
	status, page = postForm(t, c, verifyURI, url.Values{"user_code": {f["user_code"]}, "csrf": {f["csrf"]}, "decision": {decision}})
	if status != 200 {
		t.Fatalf("decision: %d %s", status, page)
	}
	return page
}

func TestDeviceGrantThroughThingsEndpoint(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "user-authorized-thing", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", nil)
	if status, body := p.do("POST", userCodePath, map[string]any{"scope": []string{"publish", "nope"}}, true); status != 400 ||
		!strings.Contains(body["message"].(string), "Unknown/invalid scope(s)") {
		t.Fatalf("unsupported scope: %d %v", status, body)
	}
	status, dc := p.do("POST", userCodePath, map[string]any{"scope": []string{"subscribe", "publish"}}, true)
	if status != 200 || dc["verification_uri"] != e.srv.Issuer()+"/device/user" || dc["expires_in"] != float64(300) {
		t.Fatalf("user code: %d %v", status, dc)
	}
	status, body := p.do("POST", userTokenPath, map[string]any{"device_code": dc["device_code"]}, true)
	if status != 403 || body["detail"].(map[string]any)["error"] != "authorization_pending" {
		t.Fatalf("pending: %d %v", status, body)
	}
	page := approve(t, dc["verification_uri_complete"].(string), DemoUserID, DefaultUserPassword, "allow")
	if !strings.Contains(page, "done: true") {
		t.Fatalf("done marker missing: %s", page)
	}
	status, tok := p.do("POST", userTokenPath, map[string]any{"device_code": dc["device_code"]}, true)
	if status != 200 || tok["scope"] != "subscribe publish" {
		t.Fatalf("user token: %d %v", status, tok)
	}
	_, in := p.do("POST", introspectPath, map[string]any{"token": tok["access_token"]}, true)
	if in["sub"] != "(usr!bjensen)" || in["subname"] != "bjensen" || in["user_id"] != "bjensen" {
		t.Fatalf("user token introspection: %v", in)
	}
	status, ref := p.do("POST", accessTokenPath, map[string]any{"refresh_token": tok["refresh_token"], "scope": []string{"publish"}}, true)
	if status != 200 || ref["scope"] != "publish" || decodeJWT(t, ref["access_token"].(string))["subname"] != "bjensen" {
		t.Fatalf("refresh user token: %d %v", status, ref)
	}
	// The code is spent.
	if status, _ := p.do("POST", userTokenPath, map[string]any{"device_code": dc["device_code"]}, true); status != 400 {
		t.Fatalf("spent device code: %d", status)
	}
	// Deny.
	_, dc2 := p.do("POST", userCodePath, map[string]any{}, true)
	approve(t, dc2["verification_uri_complete"].(string), DemoUserID, DefaultUserPassword, "deny")
	status, body = p.do("POST", userTokenPath, map[string]any{"device_code": dc2["device_code"]}, true)
	if status != 403 || body["detail"].(map[string]any)["error"] != "authorization_declined" {
		t.Fatalf("denied: %d %v", status, body)
	}
	// Expiry.
	_, dc3 := p.do("POST", userCodePath, map[string]any{}, true)
	e.clock.Advance(6 * time.Minute)
	status, body = p.do("POST", userTokenPath, map[string]any{"device_code": dc3["device_code"]}, true)
	if status != 403 || body["detail"].(map[string]any)["error"] != "expired_token" {
		t.Fatalf("expired: %d %v", status, body)
	}
}

func TestDeviceGrantHeaderLoginFormAndSlowDown(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.OAuth2.DevicePollInterval = Duration(5 * time.Second) })
	th := newThing(t, "poller", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", nil)
	_, dc := p.do("POST", userCodePath, map[string]any{}, true)
	if dc["interval"] != float64(5) {
		t.Fatalf("interval %v", dc["interval"])
	}
	p.do("POST", userTokenPath, map[string]any{"device_code": dc["device_code"]}, true)
	if _, body := p.do("POST", userTokenPath, map[string]any{"device_code": dc["device_code"]}, true); body["detail"].(map[string]any)["error"] != "slow_down" {
		t.Fatalf("fast poll: %v", body)
	}
	// The test framework's way: header login, then one form POST with csrf = SSO token.
	status, login := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": "bjensen", "X-OpenAM-Password": DefaultUserPassword}, "")
	if status != 200 {
		t.Fatalf("header login: %d %v", status, login)
	}
	sso := login["tokenId"].(string)
	form := url.Values{"user_code": {dc["user_code"].(string)}, "decision": {"allow"}, "csrf": {sso}}
	status, page := e.callRaw("POST", dc["verification_uri"].(string), map[string]string{"Content-Type": "application/x-www-form-urlencoded",
		"Cookie": "iPlanetDirectoryPro=" + sso}, form.Encode())
	if status != 200 || !strings.Contains(string(page), "done: true") {
		t.Fatalf("form consent: %d %s", status, page)
	}
	e.clock.Advance(6 * time.Second)
	if status, tok := p.do("POST", userTokenPath, map[string]any{"device_code": dc["device_code"]}, true); status != 200 || tok["scope"] != "subscribe" {
		t.Fatalf("token after consent: %d %v", status, tok)
	}
	// Unknown code.
	status, page = e.callRaw("POST", dc["verification_uri"].(string), map[string]string{"Content-Type": "application/x-www-form-urlencoded",
		"Cookie": "iPlanetDirectoryPro=" + sso}, url.Values{"user_code": {"NOPE"}, "decision": {"allow"}, "csrf": {sso}}.Encode())
	if status != 200 || !strings.Contains(string(page), `errorCode: "not_found"`) {
		t.Fatalf("unknown code: %d %s", status, page)
	}
}

// pageDataRe and the two marker regexes read the device page the way AM's own
// clients do: cut out the pageData object, then look for errorCode: "…" (any
// match, even an empty value, is a failure) and done: ….
var (
	pageDataRe  = regexp.MustCompile(`(?s:pageData.*})`)
	errorCodeRe = regexp.MustCompile(`(errorCode:\s*")(.*)(")`)
	doneRe      = regexp.MustCompile(`(done:\s*)(.*)`)
)

// TestDeviceConsentPageData checks the page data of each outcome of the consent
// form against AM's: done only after a decision, errorCode only on failure.
func TestDeviceConsentPageData(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "consenting-thing", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", nil)
	status, login := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": DemoUserID, "X-OpenAM-Password": DefaultUserPassword}, "")
	if status != 200 {
		t.Fatalf("header login: %d %v", status, login)
	}
	sso := login["tokenId"].(string)
	consent := func(verify, code, decision string) string {
		t.Helper()
		form := url.Values{"user_code": {code}, "decision": {decision}, "csrf": {sso}}
		status, page := e.callRaw("POST", verify, map[string]string{"Content-Type": "application/x-www-form-urlencoded",
			"Cookie": "iPlanetDirectoryPro=" + sso}, form.Encode())
		if status != 200 {
			t.Fatalf("consent %s: %d %s", decision, status, page)
		}
		return string(page)
	}
	cases := []struct {
		name     string
		prepare  func(verify, code string) string // returns the code to submit
		decision string
		data     string // the exact pageData literal
		errCode  string // what the client's errorCode regex captures; "" for no match
	}{
		{"allow", func(_, code string) string { return code }, "allow", `{ realm: "/", done: true }`, ""},
		{"deny", func(_, code string) string { return code }, "deny", `{ realm: "/", done: true }`, ""},
		{"wrong code", func(_, _ string) string { return "WRONGCODE" }, "allow", `{ realm: "/", errorCode: "not_found" }`, "not_found"},
		{"expired code", func(_, code string) string { e.clock.Advance(6 * time.Minute); return code }, "allow",
			`{ realm: "/", errorCode: "not_found" }`, "not_found"},
		{"already used", func(verify, code string) string {
			if page := consent(verify, code, "allow"); !strings.Contains(page, "done: true") {
				t.Fatalf("first decision: %s", page)
			}
			return code
		}, "deny", `{ realm: "/", errorCode: "not_found" }`, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, dc := p.do("POST", userCodePath, map[string]any{}, true)
			verify := dc["verification_uri"].(string)
			page := consent(verify, tc.prepare(verify, dc["user_code"].(string)), tc.decision)
			if !strings.Contains(page, "var pageData = "+tc.data+";") {
				t.Fatalf("page data: want %s in %s", tc.data, page)
			}
			data := pageDataRe.FindString(page)
			m := errorCodeRe.FindStringSubmatch(data)
			switch {
			case tc.errCode == "" && m != nil:
				t.Fatalf("a client reads errorCode %q on a successful page: %s", m[2], data)
			case tc.errCode != "" && (m == nil || m[2] != tc.errCode):
				t.Fatalf("errorCode: want %q, got %v in %s", tc.errCode, m, data)
			case tc.errCode == "" && !doneRe.MatchString(data):
				t.Fatalf("no done marker: %s", data)
			case tc.errCode != "" && doneRe.MatchString(data):
				t.Fatalf("done marker on a failed page: %s", data)
			}
		})
	}
}
