package amdev

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// walkthroughKeys are the SDK examples' published private keys (testdata/example.secrets).
func walkthroughKeys(t *testing.T) (thing, publisher crypto.Signer) {
	t.Helper()
	data, err := os.ReadFile("testdata/example.secrets")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	return set.Key("manual-thing")[0].Key.(crypto.Signer), set.Key("software-publisher")[0].Key.(crypto.Signer)
}

// TestWalkthroughWithDefaults runs the "Evaluate IoT" walk-through against
// the default settings, with its exact key material: one instance, every example.
func TestWalkthroughWithDefaults(t *testing.T) {
	e := startEnv(t, func(s *Settings) { *s = DefaultSettings() })
	thingKey, publisherKey := walkthroughKeys(t)
	admin := e.adminToken()
	put := func(id, body string) {
		status, reply := e.call("PUT", e.srv.URL()+"/json/realms/root/users/"+id, map[string]string{"Content-Type": "application/json",
			"Accept-Api-Version": "resource=4.0, protocol=2.1", "Cookie": "iPlanetDirectoryPro=" + admin}, body)
		if status != http.StatusCreated {
			t.Fatalf("register %s: %d %v", id, status, reply)
		}
	}
	del := func(id string) {
		if status, _ := e.call("DELETE", e.srv.URL()+"/json/realms/root/users/"+id, map[string]string{"Cookie": "iPlanetDirectoryPro=" + admin}, ""); status != 200 {
			t.Fatalf("delete %s: %d", id, status)
		}
	}
	token := func(p *popSession, want string) {
		t.Helper()
		status, tok := p.do("POST", accessTokenPath+"&realm=/", map[string]any{"scope": []string{"publish"}}, true)
		if status != 200 || tok["scope"] != want {
			t.Fatalf("%s: access token: %d %v", p.th.id, status, tok)
		}
	}
	keys := `"{\"keys\":[{\"use\":\"sig\",\"kty\":\"EC\",\"kid\":\"cbnztC8J_l2feNf0aTFBDDQJuvrd2JbLPoOAxHR2N8o=\",\"crv\":\"P-256\",\"alg\":\"ES256\",\"x\":\"wjC9kMzwIeXNn6lsjdqplcq9aCWpAOZ0af1_yruCcJ4\",\"y\":\"ihIziCymBnU8W8m5zx69DsQr0sWDiXsDMq04lBmfEHw\"}]}"`

	// Register identities; SDK example thing/manual-registration and the manual gateway, -tree auth-tree.
	manual := &testThing{id: "manual-thing", key: thingKey, alg: jose.ES256, kid: "cbnztC8J_l2feNf0aTFBDDQJuvrd2JbLPoOAxHR2N8o="}
	if kid := newThingFromKey(t, "x", thingKey).kid; kid != manual.kid {
		t.Fatalf("kid convention: %s", kid)
	}
	for _, c := range []struct{ id, typ string }{{"manual-thing", "device"}, {"manual-gateway", "gateway"}} {
		put(c.id, `{"userPassword":"5tr0ngG3n3r@ted","thingType":"`+c.typ+`","thingKeys":`+keys+`}`)
		th := *manual
		th.id = c.id
		status, body := e.login("auth-tree", "/", popFill(t, &th, "/"))
		if status != 200 {
			t.Fatalf("%s: %d %v", c.id, status, body)
		}
		token(&popSession{e: e, th: &th, token: body["tokenId"].(string)}, "publish")
	}

	// Proof of possession and certificate: dynamic-thing, certificate signed by es256test (expired CA).
	block, _ := pem.Decode(mustRead(t, "testdata/dynamic-thing.cert.pem"))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	dynamic := newThingFromKey(t, "dynamic-thing", thingKey)
	dynamic.cert = cert
	status, body := e.login("auth-reg-tree", "/", regFill(t, dynamic, "", nil))
	if status != 200 {
		t.Fatalf("pop-cert: %d %v", status, body)
	}
	token(&popSession{e: e, th: dynamic, token: body["tokenId"].(string)}, "publish")

	// Proof of possession and software statement (after deleting dynamic-thing, as the walk-through says).
	del("dynamic-thing")
	swThing := newThing(t, "dynamic-thing", jose.ES256)
	k := swThing.publicJWK()
	stmt := signWith(t, publisherKey, jose.ES256, map[string]any{"iss": "https://soft-pub.example.com",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}}, "scope": "publish subscribe"},
		map[string]any{"kid": "gLcQhotEZygUuVUrt3Z6azql3dVfqQS7lo3vereyU7Y="})
	status, body = e.login("auth-reg-tree-pop-sw-stmt", "/", regFill(t, swThing, stmt, nil))
	if status != 200 {
		t.Fatalf("pop-sw-stmt: %d %v", status, body)
	}
	token(&popSession{e: e, th: swThing, token: body["tokenId"].(string)}, "publish")

	// Software statement: register with a generated id, read it, authenticate with a client assertion.
	anon := newThing(t, "", jose.ES256)
	k = anon.publicJWK()
	stmt = signWith(t, publisherKey, jose.ES256, map[string]any{"iss": "https://soft-pub.example.com",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}}}, map[string]any{"kid": "gLcQhotEZygUuVUrt3Z6azql3dVfqQS7lo3vereyU7Y="})
	status, body = e.login("reg-tree-sw-stmt", "/", regFill(t, anon, stmt, nil))
	if status != 200 {
		t.Fatalf("sw-stmt register: %d %v", status, body)
	}
	_, attrs := (&popSession{e: e, th: anon, token: body["tokenId"].(string)}).do("GET", "/json/things/*?realm=/", nil, true)
	anon.id, _ = attrs["_id"].(string)
	status, body = e.login("auth-tree-client-assertion", "/", func(id, _ string) (string, bool) {
		return anon.assertionJWT(t, e.srv.URL()+"/oauth2/access_token", nil), true
	})
	if status != 200 {
		t.Fatalf("sw-stmt client assertion: %d %v", status, body)
	}
	token(&popSession{e: e, th: anon, token: body["tokenId"].(string)}, "publish")

	// Proof of possession without trust.
	del("dynamic-thing")
	popThing := newThing(t, "dynamic-thing", jose.ES256)
	status, body = e.login("auth-reg-tree-pop", "/", regFill(t, popThing, "", nil))
	if status != 200 {
		t.Fatalf("pop: %d %v", status, body)
	}
	token(&popSession{e: e, th: popThing, token: body["tokenId"].(string)}, "publish")
}

func newThingFromKey(t *testing.T, id string, key crypto.Signer) *testThing {
	t.Helper()
	th := newThing(t, id, jose.ES256)
	th.key = key
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	th.kid = encodePadded(tp)
	return th
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWalkthroughUserToken is the "Request a user token" example: the SDK
// examples sign a fresh thing certificate with the published es256test key
// (whose certificate expired in 2020), register through auth-reg-tree, then
// bjensen approves the device request on the HTML page.
func TestWalkthroughUserToken(t *testing.T) {
	e := startEnv(t, func(s *Settings) { *s = DefaultSettings(); s.OAuth2.DevicePollInterval = 0 })
	var ca jose.JSONWebKey
	if err := json.Unmarshal(mustRead(t, "testdata/es256test.jwk"), &ca); err != nil {
		t.Fatal(err)
	}
	th := newThing(t, "user-authorized-thing", jose.ES256)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7),
		Subject: pkix.Name{CommonName: th.id}, NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(24 * time.Hour)},
		ca.Certificates[0], th.key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if th.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	status, body := e.login("auth-reg-tree", "/", regFill(t, th, "", nil))
	if status != 200 {
		t.Fatalf("register: %d %v", status, body)
	}
	p := &popSession{e: e, th: th, token: body["tokenId"].(string)}
	_, dc := p.do("POST", userCodePath+"&realm=/", map[string]any{}, true)
	approve(t, dc["verification_uri_complete"].(string), DemoUserID, DefaultUserPassword, "allow")
	status, tok := p.do("POST", userTokenPath+"&realm=/", map[string]any{"device_code": dc["device_code"]}, true)
	if status != 200 || tok["scope"] != "subscribe" {
		t.Fatalf("user token: %d %v", status, tok)
	}
	_, in := p.do("POST", introspectPath+"&realm=/", map[string]any{"token": tok["access_token"]}, true)
	if in["active"] != true || in["sub"] != "(usr!bjensen)" || in["client_id"] != DefaultClientID || in["realm"] != "/" {
		t.Fatalf("introspection: %v", in)
	}
}
