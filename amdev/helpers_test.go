package amdev

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// testClock is the real clock plus an offset that tests move forward to
// expire authIds, tokens and codes (it never stands still, so JWTs signed
// with the real time stay valid however slow the machine is).
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func newTestClock() *testClock { return &testClock{} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// testCA is a CA generated per test, configured as amdev's registration CA.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	path string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "amdev test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{key: key, cert: cert, path: path}
}

// issue signs a certificate for the thing (CN = id).
func (ca *testCA) issue(t *testing.T, id string, pub crypto.PublicKey, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// testThing is a thing's key pair.
type testThing struct {
	id   string
	key  crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string
	cert *x509.Certificate
}

func newThing(t testing.TB, id string, alg jose.SignatureAlgorithm) *testThing {
	t.Helper()
	var key crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.EdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	th := &testThing{id: id, key: key, alg: alg}
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	th.kid = encodePadded(tp)
	return th
}

// encodePadded is the SDK's key id encoding: base64url with padding.
func encodePadded(b []byte) string { return base64.URLEncoding.EncodeToString(b) }

// publicJWK is the thing's public JWK (with x5c when it has a certificate).
func (th *testThing) publicJWK() jose.JSONWebKey {
	k := jose.JSONWebKey{Key: th.key.Public(), KeyID: th.kid, Algorithm: string(th.alg), Use: "sig"}
	if th.cert != nil {
		k.Certificates = []*x509.Certificate{th.cert}
	}
	return k
}

func (th *testThing) jwks(t *testing.T) string {
	k := th.publicJWK()
	k.Certificates = nil
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sign makes a compact JWS of claims with the given extra protected headers.
func signWith(t testing.TB, key crypto.Signer, alg jose.SignatureAlgorithm, claims any, headers map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	for k, v := range headers {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// popJWT is the PoP authentication JWT of §5.2.
func (th *testThing) popJWT(t *testing.T, aud, nonce string, extra map[string]any) string {
	now := time.Now()
	c := map[string]any{"sub": th.id, "aud": aud, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"nonce": nonce, "cnf": map[string]any{"kid": th.kid}}
	for k, v := range extra {
		c[k] = v
	}
	return signWith(t, th.key, th.alg, c, map[string]any{"typ": "JWT"})
}

// assertionJWT is the client-assertion JWT of §5.3.
func (th *testThing) assertionJWT(t *testing.T, aud string, extra map[string]any) string {
	now := time.Now()
	c := map[string]any{"iss": th.id, "sub": th.id, "aud": aud, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"cnf": map[string]any{}}
	for k, v := range extra {
		c[k] = v
	}
	return signWith(t, th.key, th.alg, c, map[string]any{"typ": "JWT", "kid": th.kid})
}

// regJWT is the registration JWT of §5.4.
func (th *testThing) regJWT(t *testing.T, aud, nonce string, extra map[string]any) string {
	now := time.Now()
	jwk := th.publicJWK()
	raw, err := json.Marshal(jwk)
	if err != nil {
		t.Fatal(err)
	}
	var jwkMap map[string]any
	_ = json.Unmarshal(raw, &jwkMap)
	c := map[string]any{"sub": th.id, "aud": aud, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"nonce": nonce, "thingType": "device", "cnf": map[string]any{"kid": th.kid, "jwk": jwkMap}}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return signWith(t, th.key, th.alg, c, map[string]any{"typ": "JWT"})
}

// testPublisher is a software publisher key configured in the test settings.
type testPublisher struct {
	key    *ecdsa.PrivateKey
	kid    string
	issuer string
}

func newPublisher(t *testing.T) *testPublisher {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testPublisher{key: key, kid: "test-publisher-key", issuer: "https://soft-pub.test"}
}

func (p *testPublisher) jwks(t *testing.T) string {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// statement is a software statement carrying the thing's public key.
func (p *testPublisher) statement(t *testing.T, th *testThing) string {
	k := th.publicJWK()
	k.Certificates = nil
	return signWith(t, p.key, jose.ES256, map[string]any{"iss": p.issuer, "scope": "publish subscribe",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}}}, map[string]any{"kid": p.kid})
}

// env is a running amdev with its test trust anchors and an HTTP client.
type env struct {
	t     *testing.T
	srv   *Server
	clock *testClock
	ca    *testCA
	pub   *testPublisher
	dir   string
}

type envOption func(*Settings)

func startEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, clock: newTestClock(), ca: newTestCA(t), pub: newPublisher(t), dir: t.TempDir()}
	st := DefaultSettings()
	st.CertificateAuthorities = []string{e.ca.path, builtinES256Test}
	st.SoftwarePublishers["test-publisher"] = &SoftwarePublisher{Issuer: e.pub.issuer, JWKS: e.pub.jwks(t)}
	st.OAuth2.DevicePollInterval = 0
	for _, o := range opts {
		o(&st)
	}
	e.restart(&st)
	return e
}

func (e *env) restart(st *Settings) {
	e.t.Helper()
	if e.srv != nil {
		if err := e.srv.Close(); err != nil {
			e.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := Start(ctx, Config{Listen: "127.0.0.1:0", DataDir: e.dir, Settings: st, Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = srv
	e.t.Cleanup(func() { _ = srv.Close() })
}

// call sends one HTTP request and decodes a JSON answer.
func (e *env) call(method, rawURL string, headers map[string]string, body string) (int, map[string]any) {
	e.t.Helper()
	status, data := e.callRaw(method, rawURL, headers, body)
	var m map[string]any
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &m); err != nil {
			e.t.Fatalf("%s %s: %d non-JSON answer %q", method, rawURL, status, data)
		}
	}
	return status, m
}

func (e *env) callRaw(method, rawURL string, headers map[string]string, body string) (int, []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, rawURL, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, data
}

// authURL is the tree URL as the SDK builds it (sorted, realm percent-encoded).
func (e *env) authURL(tree, realm string) string {
	q := url.Values{"authIndexType": {"service"}, "authIndexValue": {tree}}
	if realm != "" {
		q.Set("realm", realm)
	}
	return e.srv.URL() + "/json/authenticate?" + q.Encode()
}

// authHeaders are the headers the SDK sends to /json/authenticate.
func authHeaders() map[string]string {
	return map[string]string{"Content-Type": "application/json", "Accept-API-Version": "protocol=1.0,resource=2.1"}
}

// answer fills the callbacks of an AM reply with fill(callback id, challenge) and echoes them.
func answer(t *testing.T, reply map[string]any, fill func(id, challenge string) (string, bool)) string {
	t.Helper()
	cbs, _ := reply["callbacks"].([]any)
	for _, c := range cbs {
		cb := c.(map[string]any)
		var id, challenge string
		for _, o := range cb["output"].([]any) {
			om := o.(map[string]any)
			switch om["name"] {
			case "id":
				id, _ = om["value"].(string)
			case "value":
				challenge, _ = om["value"].(string)
			case "prompt":
				id, _ = om["value"].(string)
			}
		}
		if v, ok := fill(id, challenge); ok {
			cb["input"].([]any)[0].(map[string]any)["value"] = v
		}
	}
	b, err := json.Marshal(map[string]any{"authId": reply["authId"], "callbacks": cbs})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// login walks a tree: it posts {} and then answers up to rounds rounds with fill.
// It returns the final status and body.
func (e *env) login(tree, realm string, fill func(id, challenge string) (string, bool)) (int, map[string]any) {
	e.t.Helper()
	status, reply := e.call("POST", e.authURL(tree, realm), authHeaders(), "{}")
	for i := 0; i < 5 && status == http.StatusOK && reply["tokenId"] == nil; i++ {
		status, reply = e.call("POST", e.authURL(tree, realm), authHeaders(), answer(e.t, reply, fill))
	}
	return status, reply
}

// adminToken logs in amAdmin with headers.
func (e *env) adminToken() string {
	e.t.Helper()
	status, body := e.call("POST", e.srv.URL()+"/json/authenticate", map[string]string{
		"X-OpenAM-Username": "amAdmin", "X-OpenAM-Password": "changeit",
		"Accept-API-Version": "resource=2.0, protocol=1.0", "Content-Type": "application/json"}, "")
	if status != http.StatusOK {
		e.t.Fatalf("admin login: %d %v", status, body)
	}
	return body["tokenId"].(string)
}

// registerManually PUTs an identity with the thing's key as the walk-through does.
func (e *env) registerManually(th *testThing, extra map[string]any) {
	e.t.Helper()
	body := map[string]any{"userPassword": "5tr0ngG3n3r@ted", "thingType": "device", "thingKeys": th.jwks(e.t)}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	status, reply := e.call("PUT", e.srv.URL()+"/json/realms/root/users/"+th.id, map[string]string{
		"Content-Type": "application/json", "Accept-Api-Version": "resource=4.0, protocol=2.1",
		"Cookie": "iPlanetDirectoryPro=" + e.adminToken()}, string(b))
	if status != http.StatusCreated && status != http.StatusOK {
		e.t.Fatalf("register %s: %d %v", th.id, status, reply)
	}
}

// popSession is a thing's session as the SDK keeps it: token, key and nonce counter.
type popSession struct {
	e     *env
	th    *testThing
	token string
	nonce int
}

// thingsCall sends a things/sessions request, signed (JOSE) when sign is set.
func (p *popSession) do(method, path string, payload map[string]any, sign bool) (int, map[string]any) {
	p.e.t.Helper()
	api := "protocol=2.0,resource=1.0"
	if strings.HasPrefix(path, "/json/sessions") {
		api = "resource=4.0"
	}
	target := p.e.srv.URL() + path
	headers := map[string]string{"Accept-API-Version": api, "Cookie": "iPlanetDirectoryPro=" + p.token,
		"Content-Type": "application/json"}
	body := ""
	if sign {
		if payload == nil {
			payload = map[string]any{}
		}
		payload["csrf"] = p.token
		body = signWith(p.e.t, p.th.key, p.th.alg, payload, map[string]any{"aud": target, "api": api, "nonce": p.nonce})
		p.nonce++
		headers["Content-Type"] = "application/jose"
	} else if payload != nil {
		b, _ := json.Marshal(payload)
		body = string(b)
	}
	return p.e.call(method, target, headers, body)
}

const (
	accessTokenPath = "/json/things/*?_action=get_access_token"
	introspectPath  = "/json/things/*?_action=introspect_token"
	userCodePath    = "/json/things/*?_action=get_user_code"
	userTokenPath   = "/json/things/*?_action=get_user_token"
)

// popFill answers PoP authentication with th's key and audience aud.
func popFill(t *testing.T, th *testThing, aud string) func(string, string) (string, bool) {
	return func(id, challenge string) (string, bool) {
		if id == cbPoPAuthentication {
			return th.popJWT(t, aud, challenge, nil), true
		}
		return "", false
	}
}

// newJar is a cookie jar client for the device page.
func newJarClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

// decodeJWT returns the claims of a JWT without verifying it.
func decodeJWT(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
