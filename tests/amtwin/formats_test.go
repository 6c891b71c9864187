// Package amtwin tests imb against amdev configured the way a platform team
// configures AM: through AM's admin REST, with nothing but HTTP.
package amtwin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// call is one JSON request to amdev; it returns the status and decoded body.
func call(t *testing.T, method, rawURL string, headers map[string]string, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
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
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s %s: %d non-JSON answer %q", method, rawURL, resp.StatusCode, data)
	}
	return resp.StatusCode, m
}

// countingProxy forwards to target and counts the requests: put in front of
// the introspection endpoint, it shows which tokens the broker introspected.
func countingProxy(t *testing.T, target string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		out := *u // the proxy's own URL stands for the endpoint's, path included
		pr.Out.URL, pr.Out.Host = &out, u.Host
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// connect is a thing's MQTT 5 CONNECT with its token as the password; it
// returns the CONNACK reason code.
func connect(t *testing.T, addr, clientID, token string) byte {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ack, err := c.Connect(testContext(t), &paho.Connect{ClientID: clientID, Password: []byte(token), PasswordFlag: true,
		KeepAlive: 30, CleanStart: true})
	if ack == nil {
		t.Fatalf("connect %s: no CONNACK: %v", clientID, err)
	}
	if ack.ReasonCode == 0 {
		_ = c.Disconnect(&paho.Disconnect{})
	}
	return ack.ReasonCode
}

// TestEachTokenFormatThroughTheBroker sets each token format AM offers
// (client-based ES256, RS256, HS256, encrypted; CTS-based opaque) through amdev's
// oauth-oidc admin REST, as automation would on AM, and connects a thing
// with its next token to a broker left in auto mode (issuer and
// introspection both configured, nothing told about the format). The
// broker must accept every one, verifying itself what it can (ES256, RS256:
// the realm's JWKS) and introspecting the rest (HS256, whose secret only AM
// has, encrypted tokens, which only AM can read, and opaque tokens), which
// the introspection requests show.
func TestEachTokenFormatThroughTheBroker(t *testing.T) {
	const thing = "format-thing"
	tw := startTwin(t, thing, nil)
	am, b, admin, introspections := tw.am, tw.broker, tw.admin, tw.introspections
	for _, tc := range []struct {
		name       string
		stateless  bool
		alg        string
		encrypted  bool
		introspect bool // the broker must ask AM
	}{
		{"client-based ES256", true, "ES256", false, false},
		{"client-based RS256", true, "RS256", false, false},
		{"client-based HS256", true, "HS256", false, true},
		{"CTS-based opaque", false, "ES256", false, true},
		{"client-based encrypted", true, "ES256", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := fmt.Sprintf(`{"coreOAuth2Config": {"statelessTokensEnabled": %t}, "advancedOAuth2Config": {"tokenSigningAlgorithm": %q, "tokenEncryptionEnabled": %t}}`,
				tc.stateless, tc.alg, tc.encrypted)
			if status, body := call(t, "PUT", am.URL()+"/json/realms/root/realm-config/services/oauth-oidc", map[string]string{
				"iPlanetDirectoryPro": admin, "Accept-API-Version": "protocol=1.0,resource=1.0", "Content-Type": "application/json"}, doc); status != 200 {
				t.Fatalf("PUT oauth-oidc: %d %v", status, body)
			}
			token, err := am.IssueAccessToken(testContext(t), thing, "", []string{"publish", "subscribe"})
			if err != nil {
				t.Fatal(err)
			}
			// A signed token is a JWS (three parts), an encrypted one a JWE (five).
			wantDots := map[bool]int{true: 2, false: 0}[tc.stateless]
			if tc.encrypted {
				wantDots = 4
			}
			if dots := strings.Count(token, "."); dots != wantDots {
				t.Fatalf("token with %d dots, want %d", dots, wantDots)
			}
			before := introspections.Load()
			if code := connect(t, b.Addr("tcp"), thing, token); code != 0 {
				t.Fatalf("CONNACK 0x%02x for a %s token", code, tc.name)
			}
			if asked := introspections.Load() > before; asked != tc.introspect {
				t.Fatalf("introspected: %t, want %t", asked, tc.introspect)
			}
			// A token of the same format that AM did not issue is refused.
			forged := token[:len(token)-4] + "AAAA"
			if code := connect(t, b.Addr("tcp"), thing, forged); code == 0 {
				t.Fatalf("a forged %s token was accepted", tc.name)
			}
		})
	}
}
