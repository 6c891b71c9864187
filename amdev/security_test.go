package amdev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestThingIntrospectsOnlyItsOwnTokens: the things endpoint answers active
// only for the tokens the session's thing obtained in its own realm (its
// access and refresh tokens, the user tokens of its device-grant requests);
// another thing's token, a client's token and a token of another realm are
// inactive for it, whatever the token format.
func TestThingIntrospectsOnlyItsOwnTokens(t *testing.T) {
	for _, format := range []string{"jwt", "opaque"} {
		t.Run(format, func(t *testing.T) {
			e := startEnv(t, func(s *Settings) { s.OAuth2.TokenFormat = format; s.Realms = []string{"/a"} })
			actor := loggedIn(t, e, newThing(t, "actor", jose.ES256), "auth-tree", nil)
			other := loggedIn(t, e, newThing(t, "other", jose.ES256), "auth-tree", nil)
			_, own := actor.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
			_, theirs := other.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
			app, err := e.srv.IssueClientToken(context.Background(), CloudAppClientID, nil)
			if err != nil {
				t.Fatal(err)
			}
			foreign, err := e.srv.issue(grant{Realm: "/a", ClientID: DefaultClientID, Subject: "actor", SubjectType: "usr",
				ThingID: "actor", Scopes: []string{"publish"}, GrantType: grantJWTBearer}, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name, token string
				active      bool
			}{
				{"own access token", own["access_token"].(string), true},
				{"own refresh token", own["refresh_token"].(string), true},
				{"another thing's token", theirs["access_token"].(string), false},
				{"another thing's refresh token", theirs["refresh_token"].(string), false},
				{"a client's token", app, false},
				{"a token of the same id in another realm", foreign.AccessToken, false},
			} {
				status, in := actor.do("POST", introspectPath, map[string]any{"token": c.token}, true)
				if status != 200 || in["active"] != c.active {
					t.Errorf("%s: %d %v, want active %v", c.name, status, in, c.active)
				}
				if !c.active && len(in) != 1 {
					t.Errorf("%s: inactive answer tells more: %v", c.name, in)
				}
			}
			// The broker's introspection client still sees every token.
			for _, tok := range []string{theirs["access_token"].(string), app} {
				if _, in := e.form("/oauth2/introspect", basic(BrokerClientID, BrokerClientSecret), url.Values{"token": {tok}}); in["active"] != true {
					t.Errorf("broker introspection: %v", in)
				}
			}
		})
	}
}

// TestClientAssertionLifetimeAndReplay: a client assertion lives at most
// assertionMaxLifetime, is single-use with or without a jti (the
// client_assertion callback; the jwt-bearer grant requires a jti), and the
// replay cache holds each entry only until its assertion expires.
func TestClientAssertionLifetimeAndReplay(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "assertive", jose.ES256)
	e.registerManually(th, nil)
	aud := e.srv.Issuer() + "/access_token"
	now := time.Now()
	shortcut := func(assertion string) int {
		t.Helper()
		status, _ := e.call("POST", e.authURL("auth-tree-client-assertion", "/"), authHeaders(),
			`{"callbacks":[{"type":"HiddenValueCallback","output":[{"name":"id","value":"client_assertion"}],`+
				`"input":[{"name":"IDToken1","value":"`+assertion+`"}]}]}`)
		return status
	}
	for _, c := range []struct {
		name   string
		claims map[string]any
		status int
	}{
		{"exp a thousand years ahead", map[string]any{"jti": "a", "exp": now.AddDate(1000, 0, 0).Unix()}, 401},
		{"exp an hour ahead", map[string]any{"jti": "b", "exp": now.Add(time.Hour).Unix()}, 401},
		{"lifetime over the cap", map[string]any{"jti": "c", "iat": now.Add(-10 * time.Minute).Unix(), "exp": now.Add(time.Minute).Unix()}, 401},
		{"the SDK's 5 minutes", map[string]any{"jti": "d"}, 200},
	} {
		if got := shortcut(th.assertionJWT(t, aud, c.claims)); got != c.status {
			t.Errorf("%s: %d, want %d", c.name, got, c.status)
		}
	}
	// No jti (AM's SDK sends none): the assertion itself is single-use.
	noJTI := th.assertionJWT(t, aud, nil)
	if first, again := shortcut(noJTI), shortcut(noJTI); first != 200 || again != 401 {
		t.Errorf("assertion without jti: first %d, replay %d; want 200, 401", first, again)
	}
	if status := shortcut(th.assertionJWT(t, aud, nil)); status != 200 {
		t.Errorf("a fresh assertion without jti: %d", status)
	}
	// The jwt-bearer grant requires a jti and caps the lifetime too.
	iot := basic(DefaultClientID, DefaultClientSecret)
	for _, c := range []struct {
		name   string
		claims map[string]any
		status int
	}{
		{"no jti", nil, 400},
		{"exp a thousand years ahead", map[string]any{"jti": "g1", "exp": now.AddDate(1000, 0, 0).Unix()}, 400},
		{"jti and 5 minutes", map[string]any{"jti": "g2"}, 200},
	} {
		status, body := e.form("/oauth2/access_token", iot, url.Values{"grant_type": {grantJWTBearer},
			"assertion": {th.assertionJWT(t, aud, c.claims)}, "scope": {"publish"}})
		if status != c.status {
			t.Errorf("jwt-bearer %s: %d (error %v), want %d", c.name, status, body["error"], c.status)
		}
	}
	// Entries leave the cache when their assertions expire.
	e.clock.Advance(7 * time.Minute)
	e.srv.sweep()
	e.srv.mu.Lock()
	left := len(e.srv.seenJTIs.entries)
	e.srv.mu.Unlock()
	if left != 0 {
		t.Errorf("%d replay entries left after every assertion expired", left)
	}
}

// TestReplayCacheBounds: the cache is bounded in total and per issuer; a
// full share refuses new assertions of that issuer only, never forgets an
// unexpired one, and frees up as assertions expire.
func TestReplayCacheBounds(t *testing.T) {
	c := newReplayCache(5, 3)
	now := time.Now()
	exp := now.Add(5 * time.Minute)
	for i := range 3 {
		if err := c.remember("flood", fmt.Sprint(i), exp, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.remember("flood", "3", exp, now); err == nil {
		t.Fatal("issuer over its share accepted")
	}
	if err := c.remember("other", "x", exp, now); err != nil {
		t.Fatalf("another issuer refused while one floods: %v", err)
	}
	if err := c.remember("other", "x", exp, now); !errors.Is(err, errReplayed) {
		t.Fatalf("replay: %v", err)
	}
	_ = c.remember("third", "y", exp, now)
	if err := c.remember("fourth", "z", exp, now); err == nil || len(c.entries) != 5 {
		t.Fatalf("cache over its bound: %v, %d entries", err, len(c.entries))
	}
	later := exp.Add(time.Second)
	if err := c.remember("flood", "3", later.Add(5*time.Minute), later); err != nil || len(c.entries) != 1 {
		t.Fatalf("after expiry: %v, %d entries", err, len(c.entries))
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (Linux routes all of 127/8 to the loopback interface).
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// postFrom posts an authenticate body from client c and decodes the answer.
func postFrom(t *testing.T, c *http.Client, target, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range authHeaders() {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestPendingAuthFloodLocksNobodyOut: opening requests beyond the bound of
// pending authIds evict the oldest (the flooding source's own first) instead
// of answering 503, so a flow in progress from another address completes and
// new flows start, during and after floods from one and from many addresses.
func TestPendingAuthFloodLocksNobodyOut(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.MaxPendingAuth, s.MaxPendingAuthPerSource = 20, 5 })
	th := newThing(t, "patient", jose.ES256)
	e.registerManually(th, nil)
	target := e.authURL("auth-tree", "/")
	victim := clientFrom(t, "127.0.0.2")
	status, started := postFrom(t, victim, target, "{}")
	if status != 200 {
		t.Fatalf("open: %d %v", status, started)
	}
	flood := func(ip string, n int) {
		c := clientFrom(t, ip)
		for i := range n {
			if status, body := postFrom(t, c, target, "{}"); status != 200 {
				t.Fatalf("flood from %s, request %d: %d %v", ip, i, status, body)
			}
		}
	}
	flood("127.0.0.1", 100)
	status, body := postFrom(t, victim, target, answer(t, started, popFill(t, th, "/")))
	if status != 200 || body["tokenId"] == nil {
		t.Fatalf("flow in progress during a one-address flood: %d %v", status, body)
	}
	for i := 3; i <= 10; i++ {
		flood(fmt.Sprintf("127.0.0.%d", i), 10)
	}
	e.srv.mu.Lock()
	held := e.srv.authStates.len()
	e.srv.mu.Unlock()
	if held > 20 {
		t.Fatalf("%d pending authIds, bound 20", held)
	}
	status, reply := postFrom(t, victim, target, "{}")
	if status != 200 {
		t.Fatalf("new flow after a many-address flood: %d %v", status, reply)
	}
	if status, body := postFrom(t, victim, target, answer(t, reply, popFill(t, th, "/"))); status != 200 || body["tokenId"] == nil {
		t.Fatalf("login after the floods: %d %v", status, body)
	}
}

// TestRegistrationNamesOfOtherPrincipals: no registration takes the name of
// an OAuth2 client (the collision that let a self-made thing pass for the
// cloud application), of the administrator or of a user, whatever the tree;
// the trees without a trust anchor also hold names to their namePattern; the
// administrator's identity REST refuses client names too.
func TestRegistrationNamesOfOtherPrincipals(t *testing.T) {
	e := startEnv(t, func(s *Settings) {
		s.Trees["rotate"] = &Tree{Register: &RegisterNode{Method: MethodPoPWithoutTrust, CreateIdentity: true, AllowKeyRotation: true}}
	})
	cert := func(id string) *testThing {
		th := newThing(t, id, jose.ES256)
		th.cert = e.ca.issue(t, id, th.key.Public(), time.Now().Add(time.Hour))
		return th
	}
	for _, c := range []struct {
		name, tree string
		th         *testThing
		status     int
	}{
		{"client name without trust", "auth-reg-tree-pop", newThing(t, CloudAppClientID, jose.ES256), 401},
		{"client name, register-only without trust", "reg-tree-pop", newThing(t, BrokerClientID, jose.ES256), 401},
		{"client name in another case", "JWTRegWithPoP", newThing(t, "Cloud-App", jose.ES256), 401},
		{"client name with a certificate", "reg-tree", cert(DefaultClientID), 401},
		{"administrator name", "reg-tree-pop", newThing(t, "amadmin", jose.ES256), 401},
		{"user name", "reg-tree-pop", newThing(t, DemoUserID, jose.ES256), 401},
		{"user name where keys may rotate", "rotate", newThing(t, DemoUserID, jose.ES256), 401},
		{"name outside the pattern", "reg-tree-pop", newThing(t, "things/+/x", jose.ES256), 401},
		{"compound-looking name", "auth-reg-tree-pop", newThing(t, "(age!cloud-app)", jose.ES256), 401},
		{"overlong name", "reg-tree-pop", newThing(t, strings.Repeat("x", 65), jose.ES256), 401},
		{"an ordinary name", "auth-reg-tree-pop", newThing(t, "dynamic-thing", jose.ES256), 200},
	} {
		status, body := e.login(c.tree, "/", regFill(t, c.th, "", nil))
		if status != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, status, body["message"], c.status)
		}
	}
	// bjensen is still a user with her password, not a thing.
	if status, _ := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": DemoUserID,
		"X-OpenAM-Password": DefaultUserPassword, "Accept-API-Version": "resource=2.0, protocol=1.0"}, ""); status != 200 {
		t.Errorf("user login after a registration under her name: %d", status)
	}
	// Not through the identity REST either.
	th := newThing(t, CloudAppClientID, jose.ES256)
	b, _ := json.Marshal(map[string]any{"thingType": "device", "thingKeys": th.jwks(t)})
	status, body := e.call("PUT", e.srv.URL()+"/json/realms/root/users/"+CloudAppClientID, map[string]string{
		"Content-Type": "application/json", "Cookie": "iPlanetDirectoryPro=" + e.adminToken()}, string(b))
	if status != http.StatusConflict || !strings.Contains(body["message"].(string), "OAuth2 client") {
		t.Errorf("identity REST under a client name: %d %v", status, body)
	}
	// A configuration that seeds one is refused.
	st := DefaultSettings()
	st.Things[CloudAppClientID] = &Thing{Realm: "/", ThingType: "device"}
	if err := st.validate(); err == nil || !strings.Contains(err.Error(), "OAuth2 client") {
		t.Errorf("seeded thing under a client name: %v", err)
	}
}

// TestGatewayTypeNeedsTrust: a registration without a trust anchor cannot
// make itself a gateway (the default policy grants gateways other things'
// topics), by the thingType claim or a claim mapped to it; a certificate or
// a software statement vouches for it, and the realm setting decides.
func TestGatewayTypeNeedsTrust(t *testing.T) {
	e := startEnv(t, func(s *Settings) {
		s.Trees["map-type"] = &Tree{Register: &RegisterNode{Method: MethodPoPWithoutTrust, CreateIdentity: true,
			ClaimToAttributeMapping: map[string]string{"kind": "thingType"}}}
	})
	gw := map[string]any{"thingType": "gateway"}
	cert := func(id string) *testThing {
		th := newThing(t, id, jose.ES256)
		th.cert = e.ca.issue(t, id, th.key.Public(), time.Now().Add(time.Hour))
		return th
	}
	for _, c := range []struct {
		name, tree string
		th         *testThing
		stmt       bool
		extra      map[string]any
		status     int
		wantType   string
	}{
		{"gateway without trust", "auth-reg-tree-pop", newThing(t, "gw-rogue", jose.ES256), false, gw, 401, ""},
		{"gateway without trust, register-only", "reg-tree-pop", newThing(t, "gw-rogue-2", jose.ES256), false, gw, 401, ""},
		{"gateway through a mapped claim", "map-type", newThing(t, "gw-rogue-3", jose.ES256), false, map[string]any{"thingType": nil, "kind": "gateway"}, 401, ""},
		{"device without trust", "reg-tree-pop", newThing(t, "plain-device", jose.ES256), false, nil, 200, "device"},
		{"service without trust", "reg-tree-pop", newThing(t, "plain-service", jose.ES256), false, map[string]any{"thingType": "service"}, 200, "service"},
		{"gateway with a certificate", "auth-reg-tree", cert("gw-cert"), false, gw, 200, "gateway"},
		{"gateway with a software statement", "auth-reg-tree-pop-sw-stmt", newThing(t, "gw-stmt", jose.ES256), true, gw, 200, "gateway"},
	} {
		stmt := ""
		if c.stmt {
			stmt = e.pub.statement(t, c.th)
		}
		status, body := e.login(c.tree, "/", regFill(t, c.th, stmt, c.extra))
		if status != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, status, body["message"], c.status)
			continue
		}
		ident, err := e.srv.getIdentity("/", c.th.id)
		switch {
		case c.wantType == "" && err == nil:
			t.Errorf("%s: identity created (thingType %s)", c.name, ident.attr("thingType"))
		case c.wantType != "" && (err != nil || ident.attr("thingType") != c.wantType):
			t.Errorf("%s: identity %v %v, want thingType %s", c.name, ident, err, c.wantType)
		}
	}
	// A realm that trusts every registration's claim says so.
	e2 := startEnv(t, func(s *Settings) { s.IoT.RestrictedThingTypes = nil })
	if status, body := e2.login("reg-tree-pop", "/", regFill(t, newThing(t, "gw-open", jose.ES256), "", gw)); status != 200 {
		t.Errorf("gateway without trust in a realm without restricted types: %d %v", status, body)
	}
}

// headerLoginFrom logs in with X-OpenAM headers from client c.
func headerLoginFrom(t *testing.T, c *http.Client, base, user, pw string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/json/authenticate", nil)
	req.Header.Set("X-OpenAM-Username", user)
	req.Header.Set("X-OpenAM-Password", pw)
	req.Header.Set("Accept-API-Version", "resource=2.0, protocol=1.0")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

// TestPasswordGuessesAreThrottled: failed logins lock the account (401
// "Your account has been locked.", as AM's memory lockout) and, across
// accounts, the source address (429), both with Retry-After and both
// refusing even the right password until the lock ends; the username and
// password tree shares the count; other accounts and addresses are unaffected.
func TestPasswordGuessesAreThrottled(t *testing.T) {
	e := startEnv(t, func(s *Settings) {
		s.LoginThrottle = LoginThrottle{AccountFailures: 3, SourceFailures: 5, Duration: Duration(time.Minute)}
	})
	base := e.srv.URL()
	a, b := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
	for i := range 3 {
		if status, _, _ := headerLoginFrom(t, a, base, DemoUserID, "guess"+fmt.Sprint(i)); status != 401 {
			t.Fatalf("wrong password %d: %d", i, status)
		}
	}
	status, hdr, body := headerLoginFrom(t, b, base, DemoUserID, DefaultUserPassword)
	if status != 401 || body["message"] != "Your account has been locked." || hdr.Get("Retry-After") == "" {
		t.Fatalf("locked account, right password from another address: %d %v %q", status, body["message"], hdr.Get("Retry-After"))
	}
	if status, body := e.login("ldapService", "/", func(id, _ string) (string, bool) {
		return map[string]string{"User Name": DemoUserID, "Password": DefaultUserPassword}[id], true
	}); status != 401 || body["message"] != "Your account has been locked." {
		t.Fatalf("locked account through the tree: %d %v", status, body)
	}
	if status, _, _ := headerLoginFrom(t, a, base, "amAdmin", DefaultAdminPassword); status != 200 {
		t.Fatalf("another account: %d", status)
	}
	// Two more failures on other names fill the address's share.
	for _, u := range []string{"nobody", "amAdmin"} {
		headerLoginFrom(t, a, base, u, "wrong")
	}
	status, hdr, body = headerLoginFrom(t, a, base, "amAdmin", DefaultAdminPassword)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("locked address: %d %v", status, body)
	}
	if status, _, _ := headerLoginFrom(t, b, base, "amAdmin", DefaultAdminPassword); status != 200 {
		t.Fatalf("another address: %d", status)
	}
	e.clock.Advance(61 * time.Second)
	if status, _, _ := headerLoginFrom(t, a, base, DemoUserID, DefaultUserPassword); status != 200 {
		t.Fatalf("after the lock: %d", status)
	}
}

// TestUserCodeGuessesAreThrottled: a signed-in user who enters wrong user
// codes is stopped (429, Retry-After) before the codes can be enumerated,
// even for a right code, until the lock ends.
func TestUserCodeGuessesAreThrottled(t *testing.T) {
	e := startEnv(t, func(s *Settings) {
		s.LoginThrottle = LoginThrottle{AccountFailures: 3, SourceFailures: 10, Duration: Duration(time.Minute)}
	})
	th := newThing(t, "waiting", jose.ES256)
	p := loggedIn(t, e, th, "auth-tree", nil)
	_, dc := p.do("POST", userCodePath, map[string]any{}, true)
	verify := dc["verification_uri"].(string)
	c := newJarClient(t)
	_, page := get(t, c, verify)
	_, page = postForm(t, c, verify, url.Values{"username": {DemoUserID}, "password": {DefaultUserPassword},
		"login_csrf": {fields(page)["login_csrf"]}})
	csrf := fields(page)["csrf"]
	if csrf == "" {
		t.Fatalf("sign-in: %s", page)
	}
	for i := range 3 {
		if status, page := postForm(t, c, verify, url.Values{"user_code": {fmt.Sprintf("WRONG%03d", i)}, "csrf": {csrf}}); status != 200 || !strings.Contains(page, `errorCode: "not_found"`) {
			t.Fatalf("wrong code %d: %d %s", i, status, page)
		}
	}
	status, page := postForm(t, c, verify, url.Values{"user_code": {dc["user_code"].(string)}, "csrf": {csrf}})
	if status != http.StatusTooManyRequests || !strings.Contains(page, `errorCode: "too_many_attempts"`) || strings.Contains(page, `value="allow"`) {
		t.Fatalf("right code after wrong ones: %d %s", status, page)
	}
	e.clock.Advance(61 * time.Second)
	if status, page := postForm(t, c, verify, url.Values{"user_code": {dc["user_code"].(string)}, "csrf": {csrf}}); status != 200 || !strings.Contains(page, `value="allow"`) {
		t.Fatalf("after the lock: %d %s", status, page)
	}
}

// TestCookiesSecureWithHTTPSBaseURL: with an https base URL every cookie
// amdev sets is Secure; with http none is (a browser would drop them).
func TestCookiesSecureWithHTTPSBaseURL(t *testing.T) {
	for _, scheme := range []string{"https", "http"} {
		t.Run(scheme, func(t *testing.T) {
			e := startEnv(t)
			st := e.srv.Settings()
			dir := t.TempDir()
			srv, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", BaseURL: scheme + "://am.example.test/am",
				DataDir: dir, Settings: &st, Logger: discard()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			local := "http://" + srv.Addr() + "/am"
			noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			var cookies []*http.Cookie
			_, hdr, _ := headerLoginFrom(t, noRedirect, local, DemoUserID, DefaultUserPassword)
			cookies = append(cookies, (&http.Response{Header: hdr}).Cookies()...)
			resp, err := noRedirect.Get(local + "/oauth2/device/user")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cookies = append(cookies, resp.Cookies()...)
			form := url.Values{"username": {DemoUserID}, "password": {DefaultUserPassword}, "login_csrf": {fields(string(body))["login_csrf"]}}
			req, _ := http.NewRequest("POST", local+"/oauth2/device/user", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for _, c := range resp.Cookies() {
				req.AddCookie(c)
			}
			resp, err = noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cookies = append(cookies, resp.Cookies()...)
			if len(cookies) < 4 {
				t.Fatalf("%d cookies set", len(cookies))
			}
			for _, c := range cookies {
				if c.Secure != (scheme == "https") || !c.HttpOnly {
					t.Errorf("cookie %s: Secure %v HttpOnly %v with an %s base URL", c.Name, c.Secure, c.HttpOnly, scheme)
				}
			}
		})
	}
}
