package amdev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
