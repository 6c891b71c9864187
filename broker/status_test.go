package broker

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"imb/internal/issuer"
	"imb/internal/mqtttest"
)

const statusPolicy = `version: 1
rules:
  - name: no-secrets
    effect: deny
    actions: [publish]
    topics: ["things/{sub}/telemetry/secret/#"]
  - name: telemetry
    effect: allow
    actions: [publish, subscribe]
    topics: ["things/{sub}/telemetry/#"]
    scopes: [publish]
`

// Hostile values: a thing id and a topic that are markup if not escaped.
const (
	xssThing = `<img src=x onerror=alert(1)>`
	xssTopic = `things/t2/telemetry/secret/<script>alert(2)</script>`
)

// startStatusBroker starts a broker with one thing connected whose publish is
// allowed (under a hostile thing id) and one whose publish a deny rule refuses (on
// a hostile topic). It returns the page's URL and the tokens used.
func startStatusBroker(t *testing.T, mod func(*Config)) (*Broker, []string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(p, []byte(statusPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	b, iss := startBroker(t, func(c *Config) {
		c.PolicyFile = p
		if mod != nil {
			mod(c)
		}
	})
	var tokens []string
	for _, tc := range []struct {
		thing, topic string
		want         byte
	}{
		{xssThing, "things/" + xssThing + "/telemetry/temp", 0},
		{"t2", xssTopic, packets.ErrNotAuthorized.Code},
	} {
		tok := iss.Mint(issuer.Claims{"sub": tc.thing, "scope": "publish"}, time.Hour)
		tokens = append(tokens, tok)
		r := mqtttest.Connect(t, b.Addr("tcp"), tc.thing, tok)
		if err := r.Send(publishPacket(tc.topic, 1, []byte("x"))); err != nil {
			t.Fatal(err)
		}
		ack, ok := r.Read(5 * time.Second)
		if !ok || ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != tc.want {
			t.Fatalf("%s: PUBACK %+v code %#x, want %#x", tc.thing, ack.FixedHeader, ack.ReasonCode, tc.want)
		}
	}
	return b, tokens
}

// The status page, rendered by a real browser: the connected things with their
// grants and expiry, the denial with its deciding rule, the policy summary; hostile
// ids and topics shown as text, never as markup; no token anywhere.
func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (Debian: apt-get install chromium); the status page is not checked in a browser")
	}
	b, tokens := startStatusBroker(t, nil)
	url := "http://" + b.Addr("admin") + "/status"

	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + t.TempDir()}, args...)
		out, err := exec.CommandContext(ctx, chromium, append(args, url)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	dom := run("--dump-dom")
	for _, want := range []string{
		"Connected things (2)",
		"&lt;img src=x onerror=alert(1)&gt;", // the hostile thing id, as text
		"t2",
		"things/{sub}/telemetry/#", "topics.yaml:7 (telemetry)", // a grant
		"(in 59m", // the token's expiry
		"Recent denials (1, newest first)",
		"things/t2/telemetry/secret/&lt;script&gt;alert(2)&lt;/script&gt;", // the hostile topic, as text
		"topics.yaml:3 (no-secrets)",                                       // the deciding rule
		"valid: 2 rules (1 allow, 1 deny)",                                 // the policy summary
		"this broker runs alone",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"<img src=\"x\"", "<script>alert", "onerror=\"", tokens[0], tokens[1]} {
		if strings.Contains(dom, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	shot := os.Getenv("IMB_STATUS_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "status.png")
	}
	run("--screenshot="+shot, "--window-size=1280,800", "--hide-scrollbars")
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot: %v", err)
	}
}

// Who may read the page: the admin token when one is set; otherwise loopback only,
// and only under a loopback host name (DNS rebinding).
func TestStatusPageAccess(t *testing.T) {
	const token = "s3cret-admin"
	open, _ := startStatusBroker(t, nil)
	guarded, _ := startStatusBroker(t, func(c *Config) { c.AdminToken = token })
	for _, tc := range []struct {
		name string
		b    *Broker
		host string
		auth func(*http.Request)
		want int
	}{
		{"loopback, no token configured", open, "", nil, 200},
		{"loopback, foreign Host", open, "rebind.example:9100", nil, 403},
		{"token configured, none sent", guarded, "", nil, 401},
		{"wrong bearer", guarded, "", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, 401},
		{"bearer", guarded, "", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, 200},
		{"basic", guarded, "", func(r *http.Request) { r.SetBasicAuth("admin", token) }, 200},
		{"token with foreign Host", guarded, "status.example", func(r *http.Request) { r.SetBasicAuth("", token) }, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+tc.b.Addr("admin")+"/status", nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.auth != nil {
				tc.auth(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want != 200 && len(strings.TrimSpace(string(body))) == 0 {
				t.Error("refusal without a body")
			}
			if tc.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
	if c, _ := newStatusAccess(Config{AdminAddr: "0.0.0.0:9100"}).check(httpRequest("127.0.0.1")); c != http.StatusForbidden {
		t.Errorf("non-loopback admin_addr without a token: %d, want 403", c)
	}
}

func httpRequest(host string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://"+host+"/status", nil)
	return r
}
