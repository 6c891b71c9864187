package gateway_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"imb/amdev"
	"imb/gateway"
	"imb/sdk"
)

const testTimeout = 30 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func mustKey(t testing.TB) *sdk.Key {
	t.Helper()
	k, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// env is a real amdev with a gateway thing and device things registered, and a real gateway on
// loopback UDP in front of it.
type env struct {
	am      *amdev.Server
	gw      *gateway.Gateway
	url     string // coaps://127.0.0.1:port
	things  map[string]*sdk.Key
	amProxy *toggleProxy // nil unless the gateway reaches AM through the proxy
}

func jwks(t testing.TB, k *sdk.Key) string {
	t.Helper()
	s, err := k.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startEnv(t testing.TB, tree string, viaProxy bool, things ...string) *env {
	t.Helper()
	return startEnvWith(t, tree, viaProxy, nil, things...)
}

// startEnvWith is startEnv with amdev's settings adjusted by tweak.
func startEnvWith(t testing.TB, tree string, viaProxy bool, tweak func(*amdev.Settings), things ...string) *env {
	t.Helper()
	ctx := testContext(t)
	s := amdev.DefaultSettings()
	s.OAuth2.DevicePollInterval = amdev.Duration(time.Second)
	gwKey := mustKey(t)
	s.Things["test-gateway"] = &amdev.Thing{Realm: "/", ThingType: "gateway", ThingKeys: jwks(t, gwKey)}
	e := &env{things: map[string]*sdk.Key{}}
	for _, id := range things {
		k := mustKey(t)
		e.things[id] = k
		s.Things[id] = &amdev.Thing{Realm: "/", ThingType: "device", ThingKeys: jwks(t, k)}
	}
	if tweak != nil {
		tweak(&s)
	}
	am, err := amdev.Start(ctx, amdev.Config{Listen: "127.0.0.1:0", InMemory: true, Settings: &s,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("amdev.Start: %v", err)
	}
	t.Cleanup(func() { _ = am.Close() })
	e.am = am
	amURL := am.URL()
	if viaProxy {
		e.amProxy = startProxy(t, hostOf(t, amURL))
		u, _ := url.Parse(amURL)
		u.Host = e.amProxy.addr()
		amURL = u.String()
	}
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: amURL, Realm: "/", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	gw, err := gateway.Start(ctx, gateway.Config{
		Client: client, Tree: tree, Address: "127.0.0.1:0",
		Handlers: []sdk.CallbackHandler{&sdk.Authenticator{ThingID: "test-gateway", Key: gwKey}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("gateway.Start: %v", err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	e.gw = gw
	e.url = "coaps://" + gw.Addr().String()
	return e
}

// thingClient is an SDK client for the thing id over coaps through the gateway.
func (e *env) thingClient(t *testing.T, id string) *sdk.Client {
	t.Helper()
	c, err := sdk.NewClient(testContext(t), sdk.Config{BaseURL: e.url, Key: e.things[id], Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("NewClient over coaps: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawConn is a plain go-coap DTLS client with a self-signed certificate, for the wire-level tests.
func rawConn(t *testing.T, addr string) *udpclient.Conn {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := sdk.SelfSignedCertificate(k, "raw test client")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dtls.Dial(addr, &piondtls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
	}, options.WithBlockwise(true, blockwise.SZX1024, 10*time.Second))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func post(t *testing.T, conn *udpclient.Conn, path string, format message.MediaType, body []byte, queries ...string) (codes.Code, []byte) {
	t.Helper()
	var opts message.Options
	for _, q := range queries {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	resp, err := conn.Post(testContext(t), path, format, bytes.NewReader(body), opts...)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	var data []byte
	if b := resp.Body(); b != nil {
		data, _ = io.ReadAll(b)
	}
	return resp.Code(), data
}

func TestRoutesThroughGatewayWithSDK(t *testing.T) {
	for _, tree := range []string{"auth-tree", "JWTAuthWithAssertion"} {
		t.Run(tree, func(t *testing.T) {
			e := startEnv(t, tree, false, "gw-thing")
			ctx := testContext(t)
			c := e.thingClient(t, "gw-thing")
			thing := c.NewThing(tree, &sdk.Authenticator{ThingID: "gw-thing", Key: e.things["gw-thing"]})
			s, err := thing.Login(ctx)
			if err != nil {
				t.Fatalf("login through the gateway: %v", err)
			}
			if !s.ProofOfPossession() {
				t.Fatal("the SDK signs every request of an Authenticator session: the JOSE path must be in use")
			}
			tok, err := thing.AccessToken(ctx, "publish")
			if err != nil {
				t.Fatalf("access token: %v", err)
			}
			in, err := thing.IntrospectToken(ctx, tok.AccessToken)
			if err != nil || !in.Active || in.Local {
				t.Fatalf("introspect: %+v %v", in, err)
			}
			attrs, err := thing.Attributes(ctx, "thingType")
			if err != nil || attrs.Get("thingType") != "device" {
				t.Fatalf("attributes: %+v %v", attrs, err)
			}
			da, err := thing.UserCode(ctx, "publish")
			if err != nil {
				t.Fatalf("user code: %v", err)
			}
			if _, err := thing.PollUserToken(ctx, da); !errors.Is(err, sdk.ErrAuthorizationPending) {
				t.Fatalf("user token before consent: %v, want ErrAuthorizationPending", err)
			}
			direct, err := sdk.NewClient(ctx, sdk.Config{BaseURL: e.am.URL(), Realm: "/"})
			if err != nil {
				t.Fatal(err)
			}
			if err := consent(ctx, direct, da); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond) // the poll interval, so the next poll is not slow_down
			utok, err := thing.PollUserToken(ctx, da)
			if err != nil || utok.AccessToken == "" {
				t.Fatalf("user token: %v", err)
			}
			if ok, err := thing.Valid(ctx); err != nil || !ok {
				t.Fatalf("valid: %v %v", ok, err)
			}
			if err := thing.Logout(ctx); err != nil {
				t.Fatalf("logout: %v", err)
			}
			if ok, err := s.Valid(ctx); err != nil || ok {
				t.Fatalf("after logout: valid %v err %v, want false", ok, err)
			}
		})
	}
}

// consent approves a device code as the demo user over HTTP, as the human does.
func consent(ctx context.Context, c *sdk.Client, da *sdk.DeviceAuthorization) error {
	user, err := c.Login(ctx, amdev.DemoUserID, amdev.DefaultUserPassword)
	if err != nil {
		return err
	}
	form := url.Values{"user_code": {da.UserCode}, "decision": {"allow"}, "csrf": {user.SSOToken()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, da.VerificationURI, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: c.CookieName(), Value: user.SSOToken()})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	return nil
}

func TestAMInfoFieldNames(t *testing.T) {
	e := startEnv(t, "JWTAuthWithPoPWithUnrestrictedToken", false)
	conn := rawConn(t, e.gw.Addr().String())
	resp, err := conn.Get(testContext(t), "/aminfo")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code() != codes.Content {
		t.Fatalf("code %v", resp.Code())
	}
	data, _ := io.ReadAll(resp.Body())
	var info map[string]string
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	base := e.am.URL()
	want := map[string]string{
		"Realm":              "/",
		"AccessTokenURL":     base + "/json/things/*?_action=get_access_token&realm=/",
		"IntrospectURL":      base + "/json/things/*?_action=introspect_token&realm=/",
		"AttributesURL":      base + "/json/things/*?realm=/",
		"ThingsVersion":      "protocol=2.0,resource=1.0",
		"UserCodeURL":        base + "/json/things/*?_action=get_user_code&realm=/",
		"UserTokenURL":       base + "/json/things/*?_action=get_user_token&realm=/",
		"SessionsVersion":    "resource=4.0",
		"SessionValidateURL": base + "/json/sessions?_action=validate",
		"SessionLogoutURL":   base + "/json/sessions?_action=logout",
	}
	for k, v := range want {
		if info[k] != v {
			t.Errorf("%s = %q, want %q", k, info[k], v)
		}
	}
	if len(info) != len(want) {
		t.Errorf("aminfo has %d fields, want %d: %s", len(info), len(want), data)
	}
}

func TestAuthIDDigestRoundTrip(t *testing.T) {
	e := startEnv(t, "JWTAuthWithPoPWithUnrestrictedToken", false)
	conn := rawConn(t, e.gw.Addr().String())
	code, body := post(t, conn, "/authenticate", gateway.FormatJSON, []byte(`{}`))
	if code != codes.Valid {
		t.Fatalf("first round: %v %s", code, body)
	}
	var round map[string]json.RawMessage
	if err := json.Unmarshal(body, &round); err != nil {
		t.Fatal(err)
	}
	if _, leaked := round["authId"]; leaked {
		t.Fatal("authId reached the thing")
	}
	var digest string
	_ = json.Unmarshal(round["auth_id_digest"], &digest)
	raw, err := base64.StdEncoding.DecodeString(digest)
	if err != nil || len(raw) != sha256.Size {
		t.Fatalf("auth_id_digest %q is not std-base64 of a SHA-256", digest)
	}
	if len(body) > 1024 {
		t.Errorf("first round reply is %d bytes; the digest exists to keep it in one datagram", len(body))
	}
	// Echoed unanswered, the digest is restored: AM sees its own authId and answers the round again
	// (a failure of the unanswered callbacks) rather than "unknown authId".
	code, body = post(t, conn, "/authenticate", gateway.FormatJSON, body)
	if code != codes.Valid && code != codes.Unauthorized {
		t.Fatalf("echoed round: %v %s", code, body)
	}
	tests := []struct {
		name string
		body string
		want codes.Code
	}{
		{"unknown digest", `{"auth_id_digest":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}`, codes.Unauthorized},
		{"short digest", `{"auth_id_digest":"AAAA"}`, codes.BadRequest},
		{"digest not base64", `{"auth_id_digest":"%%%"}`, codes.BadRequest},
		{"not JSON", `{`, codes.BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := post(t, conn, "/authenticate", gateway.FormatJSON, []byte(tt.body)); code != tt.want {
				t.Fatalf("code %v (%s), want %v", code, body, tt.want)
			}
		})
	}
}

func TestErrorMappings(t *testing.T) {
	e := startEnv(t, "JWTAuthWithPoPWithUnrestrictedToken", false, "err-thing")
	ctx := testContext(t)
	c := e.thingClient(t, "err-thing")
	thing := c.NewThing("JWTAuthWithPoPWithUnrestrictedToken", &sdk.Authenticator{ThingID: "err-thing", Key: e.things["err-thing"]})
	s, err := thing.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good := s.SSOToken()
	wrap := func(token, payload string) []byte {
		b, _ := json.Marshal(map[string]string{"token": token, "payload": payload})
		return b
	}
	conn := rawConn(t, e.gw.Addr().String())
	tests := []struct {
		name    string
		path    string
		format  message.MediaType
		body    []byte
		queries []string
		want    codes.Code
	}{
		{"access token", "/accesstoken", gateway.FormatJSON, wrap(good, `{"scope":["publish"]}`), nil, codes.Changed},
		{"AM 401: unknown session", "/accesstoken", gateway.FormatJSON, wrap("not-a-session", `{}`), nil, codes.Unauthorized},
		{"AM 400: unknown scope", "/accesstoken", gateway.FormatJSON, wrap(good, `{"scope":["no-such-scope"]}`), nil, codes.BadRequest},
		{"wrapper without token", "/accesstoken", gateway.FormatJSON, []byte(`{"payload":"{}"}`), nil, codes.BadRequest},
		{"wrapper payload not JSON", "/accesstoken", gateway.FormatJSON, wrap(good, `{`), nil, codes.BadRequest},
		{"unknown content format", "/accesstoken", message.TextPlain, []byte(`x`), nil, codes.BadRequest},
		{"JOSE without csrf", "/accesstoken", gateway.FormatJOSE, []byte("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"), nil, codes.BadRequest},
		{"attributes", "/attributes", gateway.FormatJSON, wrap(good, ""), []string{"thingType"}, codes.Changed},
		{"session valid", "/session", gateway.FormatJSON, []byte(`{"tokenId":"` + good + `"}`), []string{"_action=validate"}, codes.Changed},
		{"session invalid", "/session", gateway.FormatJSON, []byte(`{"tokenId":"nope"}`), []string{"_action=validate"}, codes.Unauthorized},
		{"session no action", "/session", gateway.FormatJSON, []byte(`{"tokenId":"nope"}`), nil, codes.BadRequest},
		{"unknown route", "/nowhere", gateway.FormatJSON, []byte(`{}`), nil, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, conn, tt.path, tt.format, tt.body, tt.queries...)
			if code != tt.want {
				t.Fatalf("code %v (%s), want %v", code, body, tt.want)
			}
		})
	}
}

func TestBlockwiseLargePayload(t *testing.T) {
	e := startEnv(t, "JWTAuthWithPoPWithUnrestrictedToken", false, "big-thing")
	ctx := testContext(t)
	c := e.thingClient(t, "big-thing")
	thing := c.NewThing("JWTAuthWithPoPWithUnrestrictedToken", &sdk.Authenticator{ThingID: "big-thing", Key: e.things["big-thing"]})
	s, err := thing.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 8 KiB of padding in the AM body: eight 1 KiB blocks, far over one datagram.
	inner, _ := json.Marshal(map[string]any{"scope": []string{"publish"}, "padding": strings.Repeat("p", 8<<10)})
	body, _ := json.Marshal(map[string]string{"token": s.SSOToken(), "payload": string(inner)})
	conn := rawConn(t, e.gw.Addr().String())
	code, reply := post(t, conn, "/accesstoken", gateway.FormatJSON, body)
	if code != codes.Changed || !bytes.Contains(reply, []byte("access_token")) {
		t.Fatalf("large request: %v %s", code, reply)
	}
}

func TestDTLSClientWithoutCertificateRefused(t *testing.T) {
	e := startEnv(t, "JWTAuthWithPoPWithUnrestrictedToken", false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := dtls.Dial(e.gw.Addr().String(), &piondtls.Config{
		InsecureSkipVerify: true, ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
	}, options.WithContext(ctx))
	if err == nil {
		// Some DTLS stacks report the alert on first use rather than at dial.
		_, err = conn.Get(ctx, "/aminfo")
		_ = conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate got an answer")
	}
}

func TestAMDownIs503AndRecovers(t *testing.T) {
	e := startEnv(t, "auth-tree", true, "down-thing")
	ctx := testContext(t)
	c := e.thingClient(t, "down-thing")
	thing := c.NewThing("auth-tree", &sdk.Authenticator{ThingID: "down-thing", Key: e.things["down-thing"]})
	if _, err := thing.AccessToken(ctx, "publish"); err != nil {
		t.Fatalf("before the outage: %v", err)
	}
	e.amProxy.setDown(true)
	conn := rawConn(t, e.gw.Addr().String())
	if code, body := post(t, conn, "/authenticate", gateway.FormatJSON, []byte(`{}`)); code != codes.ServiceUnavailable {
		t.Fatalf("AM down: %v %s, want 5.03", code, body)
	}
	var apiErr *sdk.APIError
	if _, err := thing.AccessToken(ctx, "publish"); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("SDK through a gateway whose AM is down: %v, want a 503", err)
	}
	e.amProxy.setDown(false)
	if _, err := thing.AccessToken(ctx, "publish"); err != nil {
		t.Fatalf("after AM came back (same gateway): %v", err)
	}
}

// toggleProxy forwards TCP to AM and, when down, refuses new connections and cuts the open ones: a
// real network outage between the gateway and AM.
type toggleProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func startProxy(t testing.TB, target string) *toggleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &toggleProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { _ = ln.Close(); p.setDown(true) })
	go p.serve()
	return p
}

func (p *toggleProxy) addr() string { return p.ln.Addr().String() }

func (p *toggleProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}

func (p *toggleProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
		go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
	}
}

func hostOf(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestDynamicRegistrationThroughGateway(t *testing.T) {
	e := startEnv(t, "auth-reg-tree-pop", false)
	ctx := testContext(t)
	key := mustKey(t)
	c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: e.url, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	thing := c.NewThing("ignored-through-a-gateway",
		&sdk.Authenticator{ThingID: "new-thing", Key: key}, &sdk.Registrar{ThingID: "new-thing", Key: key})
	if _, err := thing.AccessToken(ctx, "publish"); err != nil {
		t.Fatalf("register and get a token through the gateway: %v", err)
	}
	// The identity now exists in AM: a direct HTTP client authenticates it without registering.
	direct, err := sdk.NewClient(ctx, sdk.Config{BaseURL: e.am.URL(), Realm: "/"})
	if err != nil {
		t.Fatal(err)
	}
	again := direct.NewThing("auth-tree", &sdk.Authenticator{ThingID: "new-thing", Key: key})
	attrs, err := again.Attributes(ctx, "thingType")
	if err != nil || attrs.Get("thingType") != "device" {
		t.Fatalf("registered identity over HTTP: %+v %v", attrs, err)
	}
}

// A gateway that never answers (a bound UDP port, no DTLS) fails the SDK within its timeout.
func TestSDKGatewaySilentTimesOut(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	start := time.Now()
	_, err = sdk.NewClient(testContext(t), sdk.Config{BaseURL: "coaps://" + pc.LocalAddr().String(), Timeout: time.Second})
	if err == nil {
		t.Fatal("NewClient succeeded against a silent port")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("gave up after %v, want about the 1 s timeout", took)
	}
}
