package interop

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"imb/broker"
	"imb/internal/freeport"
)

// Resource indicators of oidc_server.mjs: the same audience, as an RFC 9068 JWT or
// as an opaque token.
const (
	resourceJWT    = "urn:example:mqtt-broker"
	resourceOpaque = "urn:example:mqtt-broker:opaque"
	brokerClient   = "mqtt-broker"
	brokerSecret   = "mqtt-broker-secret"
)

// provider is node-oidc-provider running oidc_server.mjs on a loopback port.
type provider struct {
	t      *testing.T
	port   int
	dir    string
	issuer string
	meta   struct {
		TokenEndpoint         string `json:"token_endpoint"`
		IntrospectionEndpoint string `json:"introspection_endpoint"`
		RevocationEndpoint    string `json:"revocation_endpoint"`
		JWKSURI               string `json:"jwks_uri"`
	}
	kids   []string
	cancel context.CancelFunc
	exited chan struct{}

	mu       sync.Mutex
	requests map[string]int // "METHOD /path" -> count
}

// startProvider starts the provider with its state (signing keys) in dir, on port
// (0: a free one). rotate adds a new signing key in front of the stored ones.
func startProvider(t *testing.T, dir string, port int, rotate bool) *provider {
	t.Helper()
	nodeModule(t, "oidc-provider", "jose")
	fixed := port != 0
	for attempt := 0; ; attempt++ {
		if !fixed {
			port = freeport.MustPort(t)
		}
		p, err := launchProvider(t, dir, port, rotate)
		if err == nil {
			return p
		}
		// A free port can be taken between its probe and the child's bind.
		if attempt == 1 {
			t.Fatalf("start node-oidc-provider: %v", err)
		}
		t.Logf("start node-oidc-provider: %v; retrying", err)
	}
}

func launchProvider(t *testing.T, dir string, port int, rotate bool) (*provider, error) {
	ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
	cmd := execNode(ctx, "oidc_server.mjs")
	cmd.Env = append(cmd.Environ(), "PORT="+strconv.Itoa(port), "STATE_DIR="+dir)
	if rotate {
		cmd.Env = append(cmd.Env, "ROTATE=1")
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	p := &provider{t: t, port: port, dir: dir, cancel: cancel, exited: make(chan struct{}), requests: map[string]int{}}
	ready := make(chan event, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		p.read(stdout, ready)
	}()
	go func() {
		<-read // Wait closes stdout: read it to the end first
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("node-oidc-provider stderr:\n%s", stderr.String())
		}
	})
	select {
	case ev := <-ready:
		p.issuer = ev.Text
	case <-p.exited:
		return nil, fmt.Errorf("exited before it was ready: %s", stderr.String())
	case <-time.After(startTimeout):
		p.stop()
		return nil, fmt.Errorf("not ready within %s: %s", startTimeout, stderr.String())
	}
	p.getJSON(p.issuer+"/.well-known/openid-configuration", &p.meta)
	return p, nil
}

// read consumes the provider's stdout: the ready line, its key ids and one line per
// HTTP request it served.
func (p *provider) read(r io.Reader, ready chan<- event) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var ev struct {
			Ev, Issuer, Method, Path string
			Kids                     []string
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		switch ev.Ev {
		case "keys":
			p.mu.Lock()
			p.kids = ev.Kids
			p.mu.Unlock()
		case "ready":
			select {
			case ready <- event{Ev: "ready", Text: ev.Issuer}:
			default: // only the first counts; never block the reader
			}
		case "request":
			p.mu.Lock()
			p.requests[ev.Method+" "+ev.Path]++
			p.mu.Unlock()
		}
	}
}

// requestCount is how many requests the provider served for "METHOD /path".
func (p *provider) requestCount(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[key]
}

// signingKid is the key id the provider signs ES256 tokens with (its first key).
func (p *provider) signingKid() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kids[0]
}

// stop kills the provider process (by its pid) and waits for it.
func (p *provider) stop() {
	p.cancel()
	<-p.exited
}

func (p *provider) getJSON(u string, into any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	p.do(req, http.StatusOK, into)
}

// post sends a form as client id/secret (HTTP Basic) and decodes the JSON answer.
func (p *provider) post(endpoint, id, secret string, form url.Values, into any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	p.do(req, http.StatusOK, into)
}

func (p *provider) do(req *http.Request, want int, into any) {
	p.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		p.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	if resp.StatusCode != want {
		p.t.Fatalf("%s %s: HTTP %d %s", req.Method, req.URL, resp.StatusCode, body)
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			p.t.Fatalf("%s %s: %v: %s", req.Method, req.URL, err, body)
		}
	}
}

// token gets an access token for a client through client_credentials; resource
// picks its format.
func (p *provider) token(client, scope, resource string) string {
	p.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if resource != "" {
		form.Set("resource", resource)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	p.post(p.meta.TokenEndpoint, client, client+"-secret", form, &out)
	if out.AccessToken == "" || out.Scope != scope {
		p.t.Fatalf("token for %s: %+v, want scope %q", client, out, scope)
	}
	return out.AccessToken
}

func (p *provider) thingToken(thing, resource string) string {
	return p.token(thing, "publish subscribe", resource)
}

// revoke revokes a token at the provider, as the broker's client.
func (p *provider) revoke(token string) {
	p.t.Helper()
	p.post(p.meta.RevocationEndpoint, brokerClient, brokerSecret,
		url.Values{"token": {token}, "token_type_hint": {"access_token"}}, nil)
	var out struct {
		Active bool `json:"active"`
	}
	p.post(p.meta.IntrospectionEndpoint, brokerClient, brokerSecret, url.Values{"token": {token}}, &out)
	if out.Active {
		p.t.Fatal("token still active after revocation")
	}
}

// jwtHeader decodes a JWT's header.
func jwtHeader(t *testing.T, token string) (typ, kid string) {
	t.Helper()
	seg, _, ok := strings.Cut(token, ".")
	if !ok {
		t.Fatalf("not a JWT: %d bytes", len(token))
	}
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Typ, Kid string }
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Typ, h.Kid
}

// oidcBroker starts a broker trusting the provider: its JWTs locally through OIDC
// discovery and the JWKS, other tokens through introspection with the broker's own
// client credentials.
func oidcBroker(t *testing.T, p *provider, mod func(*broker.Config)) *env {
	t.Helper()
	cfg := broker.Config{
		Issuer:        p.issuer,
		Audience:      []string{resourceJWT},
		IntrospectURL: p.meta.IntrospectionEndpoint,
		ClientID:      brokerClient,
		ClientSecret:  brokerSecret,
	}
	if mod != nil {
		mod(&cfg)
	}
	return &env{t: t, b: startBroker(t, cfg)}
}

// mqttConnect connects MQTT.js (MQTT 5) with the token as password and returns the
// driver and what the connection attempt reported (connack or error).
func mqttConnect(t *testing.T, e *env, clientID, token string) (*driver, event) {
	t.Helper()
	d := mqttJS(t)
	d.send(connectCmd{url: e.url(), version: 5, clientID: clientID, username: clientID, password: token}.cmd())
	return d, d.expectOneOf(waitTimeout, "connack", "error")
}

func TestOIDCProvider(t *testing.T) {
	// MQTT.js drives the connections, node-oidc-provider (with jose) issues the tokens.
	nodeModule(t, "mqtt", "oidc-provider", "jose")
	p := startProvider(t, t.TempDir(), 0, false)
	const revalidate = 3 * time.Second
	e := oidcBroker(t, p, func(c *broker.Config) { c.RevalidateInterval = revalidate })

	t.Run("RFC 9068 JWT through discovery and JWKS", func(t *testing.T) {
		tok := p.thingToken(thing1, "")
		if typ, _ := jwtHeader(t, tok); typ != "at+jwt" {
			t.Fatalf("provider issued typ %q, want at+jwt", typ)
		}
		before := p.requestCount("POST /token/introspection")
		d, ack := mqttConnect(t, e, thing1, tok)
		if ack.Ev != "connack" || ack.Code != 0 {
			t.Fatalf("connect: %v", ack)
		}
		publishOK(t, d, thing1)
		d.send(publishCmd("things/"+thing2+"/telemetry/t", "x", 1, false))
		if got := d.expect("puback"); got.Code != 0x87 {
			t.Fatalf("publish to another thing: %v, want 0x87", got)
		}
		if p.requestCount("GET /jwks") == 0 {
			t.Fatal("the broker never fetched the provider's JWKS")
		}
		if n := p.requestCount("POST /token/introspection"); n != before {
			t.Fatalf("a JWT of the issuer was introspected (%d calls), not validated locally", n-before)
		}
	})

	t.Run("opaque token through introspection", func(t *testing.T) {
		tok := p.thingToken(thing1, resourceOpaque)
		if strings.Count(tok, ".") == 2 {
			t.Fatal("opaque resource gave a JWT")
		}
		before := p.requestCount("POST /token/introspection")
		d, ack := mqttConnect(t, e, thing1, tok)
		if ack.Ev != "connack" || ack.Code != 0 {
			t.Fatalf("connect: %v", ack)
		}
		publishOK(t, d, thing1)
		if p.requestCount("POST /token/introspection") == before {
			t.Fatal("opaque token accepted without an introspection request")
		}
	})

	refusals := []struct {
		name, clientID string
		token          func() string
		want           int
		wantText       string
	}{
		{"JWT bound to another client id", thing2, func() string { return p.thingToken(thing1, "") }, 0x87, "Connection refused: Not authorized"},
		{"opaque token bound to another client id", thing2, func() string { return p.thingToken(thing1, resourceOpaque) }, 0x87, "Connection refused: Not authorized"},
		{"revoked opaque token", thing1, func() string {
			tok := p.thingToken(thing1, resourceOpaque)
			p.revoke(tok)
			return tok
		}, 0x86, "Connection refused: Bad User Name or Password"},
		{"opaque token the provider never issued", thing1, func() string { return "x" + p.thingToken(thing1, resourceOpaque) }, 0x86, "Connection refused: Bad User Name or Password"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, ack := mqttConnect(t, e, tc.clientID, tc.token())
			if ack.Ev != "error" || ack.Code != tc.want || ack.Text != tc.wantText {
				t.Fatalf("MQTT.js saw %v, want error %#x %q", ack, tc.want, tc.wantText)
			}
		})
	}

	t.Run("opaque token naming no subject: the client is the identity", func(t *testing.T) {
		// RFC 7662 makes sub optional; for a client_credentials token the principal
		// is the client, whose id the answer carries in client_id.
		d, ack := mqttConnect(t, e, "anonymous-thing", p.thingToken("anonymous-thing", resourceOpaque))
		if ack.Ev != "connack" || ack.Code != 0 {
			t.Fatalf("MQTT.js saw %v, want CONNACK 0", ack)
		}
		publishOK(t, d, "anonymous-thing")
		if _, ack := mqttConnect(t, e, thing1, p.thingToken("anonymous-thing", resourceOpaque)); ack.Ev != "error" || ack.Code != 0x87 {
			t.Fatalf("its token under another client id: MQTT.js saw %v, want error 0x87", ack)
		}
	})

	t.Run("revocation at the provider disconnects", func(t *testing.T) {
		tok := p.thingToken(thing1, resourceOpaque)
		d, ack := mqttConnect(t, e, thing1, tok)
		if ack.Ev != "connack" || ack.Code != 0 {
			t.Fatalf("connect: %v", ack)
		}
		publishOK(t, d, thing1)
		revoked := time.Now()
		p.revoke(tok)
		got := d.expect("disconnect")
		elapsed := time.Since(revoked)
		if got.Code != 0x87 {
			t.Fatalf("DISCONNECT %v, want 0x87 Not authorized", got)
		}
		// The next revalidation comes at most interval+10 % jitter after the
		// previous; the rest is slack for a loaded machine.
		if limit := revalidate + revalidate/10 + 5*time.Second; elapsed > limit {
			t.Fatalf("disconnected %s after the revocation, want within %s", elapsed, limit)
		}
		t.Logf("disconnected %s after the revocation (revalidation interval %s)", elapsed.Round(time.Millisecond), revalidate)
	})
}

func TestOIDCIntrospectionDiscovered(t *testing.T) {
	// MQTT.js drives the connections, node-oidc-provider (with jose) issues the tokens.
	nodeModule(t, "mqtt", "oidc-provider", "jose")
	p := startProvider(t, t.TempDir(), 0, false)
	// Issuer and client credentials only: the broker finds the introspection
	// endpoint in the discovery document.
	e := oidcBroker(t, p, func(c *broker.Config) { c.IntrospectURL, c.Audience = "", nil })
	before := p.requestCount("POST /token/introspection")
	d, ack := mqttConnect(t, e, thing1, p.thingToken(thing1, resourceOpaque))
	if ack.Ev != "connack" || ack.Code != 0 {
		t.Fatalf("connect: %v", ack)
	}
	publishOK(t, d, thing1)
	if p.requestCount("POST /token/introspection") == before {
		t.Fatal("no introspection request reached the discovered endpoint")
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	nodeModule(t, "mqtt", "oidc-provider", "jose")
	dir := t.TempDir()
	p := startProvider(t, dir, 0, false)
	e := oidcBroker(t, p, func(c *broker.Config) { c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", "" })
	first := p.thingToken(thing1, "")
	_, oldKid := jwtHeader(t, first)
	d, ack := mqttConnect(t, e, thing1, first)
	if ack.Ev != "connack" || ack.Code != 0 {
		t.Fatalf("connect with the first key's token: %v", ack)
	}
	d.send(map[string]any{"op": "end"})
	d.expect("ended")

	// Rotation: the provider restarts on the same address with a new signing key in
	// front of the old ones. The broker has the old key set; a token with the new
	// kid makes it fetch the key set again.
	p.stop()
	p = startProvider(t, dir, p.port, true)
	second := p.thingToken(thing1, "")
	_, newKid := jwtHeader(t, second)
	if newKid == oldKid || newKid != p.signingKid() {
		t.Fatalf("after rotation the provider signs with kid %q (old %q, published first %q)", newKid, oldKid, p.signingKid())
	}
	if n := p.requestCount("GET /jwks"); n != 0 {
		t.Fatalf("JWKS fetched %d times before the new kid was presented", n)
	}
	d, ack = mqttConnect(t, e, thing1, second)
	if ack.Ev != "connack" || ack.Code != 0 {
		t.Fatalf("connect with the rotated key's token: %v", ack)
	}
	publishOK(t, d, thing1)
	if p.requestCount("GET /jwks") == 0 {
		t.Fatal("the broker accepted a token with an unknown kid without fetching the JWKS")
	}
}
