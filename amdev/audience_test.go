package amdev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var jtiSeq atomic.Int64

// freshJTI keeps assertions apart for the replay cache.
func freshJTI() map[string]any {
	return map[string]any{"jti": fmt.Sprintf("aud-test-%d", jtiSeq.Add(1))}
}

// send is one HTTP request with an explicit Host header ("" keeps the URL's).
func send(t *testing.T, method, rawURL, host string, headers map[string]string, body string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if len(data) > 0 && json.Unmarshal(data, &m) != nil {
		t.Fatalf("%s %s: %d non-JSON answer %q", method, rawURL, resp.StatusCode, data)
	}
	return resp.StatusCode, m
}

// assertionLogin is the SDK's one-request client-assertion login: the tree's
// first request already carries the filled client_assertion callback.
func assertionLogin(t *testing.T, base, host, realm, assertion string, headers map[string]string) (int, map[string]any) {
	t.Helper()
	q := url.Values{"authIndexType": {"service"}, "authIndexValue": {"auth-tree-client-assertion"}}
	if realm != "" {
		q.Set("realm", realm)
	}
	h := authHeaders()
	for k, v := range headers {
		h[k] = v
	}
	body := `{"callbacks":[{"type":"HiddenValueCallback","output":[{"name":"id","value":"client_assertion"}],` +
		`"input":[{"name":"IDToken1","value":"` + assertion + `"}]}]}`
	return send(t, "POST", base+"/json/authenticate?"+q.Encode(), host, h, body)
}

// bearerGrant is the RFC 7523 grant with a thing's assertion.
func bearerGrant(t *testing.T, base, host, assertion string, headers map[string]string) (int, map[string]any) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic(DefaultClientID, DefaultClientSecret)}
	for k, v := range headers {
		h[k] = v
	}
	form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}, "scope": {"publish"}}
	return send(t, "POST", base+"/oauth2/access_token", host, h, form.Encode())
}

// startProxy puts a reverse proxy on loopback in front of amdev, set up as
// proxies usually are: the Host header rewritten to the upstream's, the
// client's host and scheme passed in X-Forwarded-Host and X-Forwarded-Proto.
func startProxy(t *testing.T, e *env) string {
	t.Helper()
	target, err := url.Parse("http://" + e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
	}})
	t.Cleanup(proxy.Close)
	return proxy.URL + "/am"
}

// TestAssertionAudienceBehindReverseProxy: a client that addresses amdev
// through a reverse proxy signs its assertion for the proxy's URL. That
// audience counts only when the proxy is trusted; the configured URL always
// counts; a forwarding header from an untrusted peer never does.
func TestAssertionAudienceBehindReverseProxy(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprintf("trusted=%t", trusted), func(t *testing.T) {
			e := startEnv(t, func(s *Settings) {
				if trusted {
					s.TrustedProxies = []string{"127.0.0.1/8", "::1"}
				}
			})
			th := newThing(t, "proxied-thing", jose.ES256)
			e.registerManually(th, nil)
			viaProxy := startProxy(t, e)
			direct := e.srv.URL()
			forged := map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
			cases := []struct {
				name    string
				base    string // where the request goes
				aud     string
				headers map[string]string
				want    bool
			}{
				{"proxy token endpoint", viaProxy, viaProxy + "/oauth2/access_token", nil, trusted},
				{"proxy oauth base", viaProxy, viaProxy + "/oauth2", nil, trusted},
				{"configured URL through the proxy", viaProxy, direct + "/oauth2/access_token", nil, true},
				{"configured URL direct", direct, direct + "/oauth2", nil, true},
				{"forwarding header sent directly", direct, "https://evil.example/am/oauth2/access_token", forged, trusted},
				{"another server's audience", viaProxy, "https://other.example/am/oauth2", nil, false},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					wantTree, wantGrant := http.StatusUnauthorized, http.StatusBadRequest
					if tc.want {
						wantTree, wantGrant = http.StatusOK, http.StatusOK
					}
					status, body := assertionLogin(t, tc.base, "", "", th.assertionJWT(t, tc.aud, freshJTI()), tc.headers)
					if status != wantTree || (tc.want && body["tokenId"] == nil) {
						t.Fatalf("tree login: %d %v, want %d", status, body, wantTree)
					}
					status, body = bearerGrant(t, tc.base, "", th.assertionJWT(t, tc.aud, freshJTI()), tc.headers)
					if status != wantGrant || (!tc.want && body["error"] != "invalid_grant") {
						t.Fatalf("jwt-bearer grant: %d %v, want %d", status, body, wantGrant)
					}
				})
			}
			// The signed-request rule judges the same origins: a signed things
			// call through the proxy, aimed at the proxy's URL.
			status, login := assertionLogin(t, direct, "", "", th.assertionJWT(t, direct+"/oauth2", freshJTI()), nil)
			if status != 200 {
				t.Fatalf("login: %d %v", status, login)
			}
			sso := login["tokenId"].(string)
			target := viaProxy + accessTokenPath
			api := "protocol=2.0,resource=1.0"
			body := signWith(t, th.key, th.alg, map[string]any{"csrf": sso}, map[string]any{"aud": target, "api": api, "nonce": 1})
			status, reply := send(t, "POST", target, "", map[string]string{"Accept-API-Version": api, "Content-Type": "application/jose",
				"Cookie": "iPlanetDirectoryPro=" + sso}, body)
			if want := map[bool]int{true: 200, false: 403}[trusted]; status != want {
				t.Fatalf("signed request through the proxy: %d %v, want %d", status, reply, want)
			}
		})
	}
	// Trust is per peer: a forwarding header from an address outside the list is ignored.
	e := startEnv(t, func(s *Settings) { s.TrustedProxies = []string{"10.0.0.0/8"} })
	th := newThing(t, "unproxied-thing", jose.ES256)
	e.registerManually(th, nil)
	if status, body := assertionLogin(t, e.srv.URL(), "", "", th.assertionJWT(t, "https://evil.example/am/oauth2", freshJTI()),
		map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}); status != 401 {
		t.Fatalf("forwarding header from an untrusted peer: %d %v", status, body)
	}
	if _, err := ParseSettings("x.yaml", []byte("trustedProxies: [not-an-address]\n")); err == nil || !strings.Contains(err.Error(), "trusted proxy") {
		t.Fatalf("a bad trusted proxy was accepted: %v", err)
	}
}

// TestAssertionAudienceInDNSAliasRealm: on a DNS alias host AM's OAuth base has
// no realm path (http://alias:port/am/oauth2); the full realm path, and the
// alias from a request that names the realm on another host, count too.
func TestAssertionAudienceInDNSAliasRealm(t *testing.T) {
	const aliasName = "sub.am.localtest.me"
	e := startEnv(t, func(s *Settings) {
		s.Realms = []string{"/a/b"}
		s.RealmHosts = map[string]string{aliasName: "/a/b"}
	})
	th := newThing(t, "aliased-thing", jose.ES256)
	reg, _ := json.Marshal(map[string]any{"userPassword": "5tr0ngG3n3r@ted", "thingType": "device", "thingKeys": th.jwks(t)})
	if status, body := e.call("PUT", e.srv.URL()+"/json/realms/root/realms/a/realms/b/users/"+th.id, map[string]string{
		"Content-Type": "application/json", "Accept-Api-Version": "resource=4.0, protocol=2.1",
		"Cookie": "iPlanetDirectoryPro=" + e.adminToken()}, string(reg)); status != 201 && status != 200 {
		t.Fatalf("register in /a/b: %d %v", status, body)
	}
	port := e.srv.Addr()[strings.LastIndex(e.srv.Addr(), ":")+1:]
	alias := aliasName + ":" + port
	aliasBase := "http://" + alias + "/am"
	realmPath := "/realms/root/realms/a/realms/b"
	cases := []struct {
		name  string
		host  string // Host header; "" is amdev's own address
		realm string // realm parameter
		aud   string
		want  bool
	}{
		{"alias oauth base", alias, "", aliasBase + "/oauth2", true},
		{"alias token endpoint", alias, "", aliasBase + "/oauth2/access_token", true},
		{"alias with realm path", alias, "", aliasBase + "/oauth2" + realmPath + "/access_token", true},
		{"configured URL with realm path", alias, "", e.srv.URL() + "/oauth2" + realmPath, true},
		{"alias named from the plain host", "", "/a/b", aliasBase + "/oauth2", true},
		{"root realm's base", "", "/a/b", e.srv.URL() + "/oauth2/access_token", false},
		{"root realm's base on the alias", alias, "", e.srv.URL() + "/oauth2", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := http.StatusUnauthorized
			if tc.want {
				want = http.StatusOK
			}
			status, body := assertionLogin(t, e.srv.URL(), tc.host, tc.realm, th.assertionJWT(t, tc.aud, freshJTI()), nil)
			if status != want {
				t.Fatalf("tree login: %d %v, want %d", status, body, want)
			}
			if tc.want && body["realm"] != "/a/b" {
				t.Fatalf("logged in to realm %v, want /a/b", body["realm"])
			}
		})
	}
	// The jwt-bearer grant on the alias host's root OAuth URL, aimed at that URL.
	if status, body := bearerGrant(t, e.srv.URL(), alias, th.assertionJWT(t, aliasBase+"/oauth2/access_token", freshJTI()), nil); status != 200 {
		t.Fatalf("jwt-bearer grant on the alias host: %d %v", status, body)
	}
}
