package amdev

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// regFill answers the registration callbacks (and PoP authentication, for combined trees).
func regFill(t *testing.T, th *testThing, stmt string, extra map[string]any) func(string, string) (string, bool) {
	return func(id, challenge string) (string, bool) {
		switch id {
		case cbPoPAuthentication:
			return th.popJWT(t, "/", challenge, nil), true
		case cbPoPRegistration:
			return th.regJWT(t, "/", challenge, extra), true
		case cbSoftwareStatement:
			return stmt, stmt != ""
		}
		return "", false
	}
}

func TestRegistrationMethods(t *testing.T) {
	e := startEnv(t)
	certified := func(id string, alg jose.SignatureAlgorithm) *testThing {
		th := newThing(t, id, alg)
		th.cert = e.ca.issue(t, id, th.key.Public(), time.Now().Add(24*time.Hour))
		return th
	}
	plain := func(id string) *testThing { return newThing(t, id, jose.ES256) }
	type tc struct {
		name, tree string
		th         *testThing
		stmt       bool
		extra      map[string]any
		status     int
		restricted bool
	}
	tests := []tc{
		{name: "auth-reg pop+cert ES256", tree: "auth-reg-tree", th: certified("dyn-es256", jose.ES256), status: 200, restricted: true},
		{name: "reg-tree pop+cert ES384", tree: "reg-tree", th: certified("dyn-es384", jose.ES384), status: 200},
		{name: "reg pop+cert ES512", tree: "reg-tree-pop-cert", th: certified("dyn-es512", jose.ES512), status: 200},
		{name: "reg pop+cert PS256", tree: "reg-tree", th: certified("dyn-ps256", jose.PS256), status: 200},
		{name: "reg pop+cert PS384", tree: "reg-tree", th: certified("dyn-ps384", jose.PS384), status: 200},
		{name: "reg pop+cert PS512", tree: "reg-tree", th: certified("dyn-ps512", jose.PS512), status: 200},
		{name: "reg pop+cert EdDSA", tree: "reg-tree", th: certified("dyn-eddsa", jose.EdDSA), status: 200},
		{name: "pop+cert without certificate", tree: "auth-reg-tree", th: plain("no-cert"), status: 401},
		{name: "pop+cert from an untrusted CA", tree: "reg-tree", th: func() *testThing {
			th := plain("rogue")
			rogue := newTestCA(t)
			th.cert = rogue.issue(t, "rogue", th.key.Public(), time.Now().Add(time.Hour))
			return th
		}(), status: 401},
		{name: "pop+cert expired thing certificate", tree: "reg-tree", th: func() *testThing {
			th := plain("stale-cert")
			th.cert = e.ca.issue(t, "stale-cert", th.key.Public(), time.Now().Add(-30*time.Minute))
			return th
		}(), status: 401},
		{name: "pop+cert as service", tree: "reg-tree", th: certified("svc", jose.ES256), extra: map[string]any{"thingType": "service"}, status: 200},
		{name: "pop+cert without key id", tree: "reg-tree", th: func() *testThing { th := certified("no-kid", jose.ES256); th.kid = ""; return th }(), status: 401},
		{name: "pop+cert without key", tree: "reg-tree", th: certified("no-key", jose.ES256), extra: map[string]any{"cnf": map[string]any{"kid": "x"}}, status: 401},
		{name: "pop+cert wrong audience", tree: "reg-tree", th: certified("wrong-aud", jose.ES256), extra: map[string]any{"aud": "/nope"}, status: 401},
		{name: "pop+cert wrong nonce", tree: "reg-tree", th: certified("wrong-nonce", jose.ES256), extra: map[string]any{"nonce": "x"}, status: 401},
		{name: "mapped attributes", tree: "JWTRegWithPoPWithCert", th: certified("mapped", jose.ES256),
			extra: map[string]any{"thingProperties": `{"colour":"red"}`}, status: 200},
		{name: "pop+sw stmt", tree: "auth-reg-tree-pop-sw-stmt", th: plain("sw-pop"), stmt: true, status: 200, restricted: true},
		{name: "pop+sw stmt missing statement", tree: "reg-tree-pop-sw-stmt", th: plain("sw-missing"), status: 401},
		{name: "pop without trust", tree: "auth-reg-tree-pop", th: plain("trusted"), status: 200, restricted: true},
		{name: "reg-only pop without trust", tree: "reg-tree-pop", th: plain("trusted-2"), status: 200},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			stmt := ""
			if c.stmt {
				stmt = e.pub.statement(t, c.th)
			}
			status, body := e.login(c.tree, "/", regFill(t, c.th, stmt, c.extra))
			if status != c.status {
				t.Fatalf("status %d, want %d: %v", status, c.status, body)
			}
			if status != 200 {
				return
			}
			token := body["tokenId"].(string)
			ident, err := e.srv.getIdentity("/", c.th.id)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := ident.keys()
			if err != nil || len(keys.Key(c.th.kid)) != 1 {
				t.Fatalf("thingKeys %q: %v", ident.attr("thingKeys"), err)
			}
			var stored struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal([]byte(ident.attr("thingKeys")), &stored); err != nil {
				t.Fatal(err)
			}
			for _, k := range stored.Keys {
				// The member, not the text: base64 key material can spell "x5c".
				if _, ok := k["x5c"]; ok {
					t.Fatal("certificate stored in thingKeys")
				}
			}
			wantType := "device"
			if tt, ok := c.extra["thingType"].(string); ok {
				wantType = tt
			}
			if ident.attr("thingType") != wantType {
				t.Fatalf("thingType %q", ident.attr("thingType"))
			}
			if c.tree == "JWTRegWithPoPWithCert" && ident.attr("thingProperties") != `{"colour":"red"}` {
				t.Fatalf("mapped attribute: %v", ident.Attributes)
			}
			p := &popSession{e: e, th: c.th, token: token}
			status, _ = p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, false)
			if c.restricted != (status == http.StatusForbidden) {
				t.Fatalf("plain body on a restricted=%v session: %d", c.restricted, status)
			}
			if status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true); status != 200 {
				t.Fatalf("signed get_access_token: %d %v", status, tok)
			}
			// A registered thing then authenticates through auth-tree.
			if status, body := e.login("auth-tree", "/", popFill(t, c.th, "/")); status != 200 {
				t.Fatalf("auth after registration: %d %v", status, body)
			}
		})
	}
}

func TestSoftwareStatementOnlyFlow(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "", jose.ES256)
	stmt := e.pub.statement(t, th)
	status, body := e.login("reg-tree-sw-stmt", "/", regFill(t, th, stmt, nil))
	if status != 200 {
		t.Fatalf("register: %d %v", status, body)
	}
	// The SDK reads its generated id from the attributes, then logs in with a client assertion.
	p := &popSession{e: e, th: th, token: body["tokenId"].(string)}
	status, attrs := p.do("GET", "/json/things/*?realm=/", nil, true)
	id, _ := attrs["_id"].(string)
	if status != 200 || len(id) != 36 || toStrings(attrs["thingType"])[0] != "device" {
		t.Fatalf("attributes: %d %v", status, attrs)
	}
	th.id = id
	status, body = e.login("auth-tree-client-assertion", "/", func(cb, _ string) (string, bool) {
		return th.assertionJWT(t, e.srv.Issuer()+"/access_token", nil), cb == cbClientAssertion
	})
	if status != 200 {
		t.Fatalf("client assertion: %d %v", status, body)
	}
	p = &popSession{e: e, th: th, token: body["tokenId"].(string)}
	if status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true); status != 200 || tok["scope"] != "publish" {
		t.Fatalf("token: %d %v", status, tok)
	}
	// A statement from an unknown publisher, or with a broken signature, is refused.
	forged := newPublisher(t)
	if status, _ := e.login("reg-tree-sw-stmt", "/", regFill(t, th, forged.statement(t, th), nil)); status != 401 {
		t.Fatalf("forged statement: %d", status)
	}
	// The shortcut: the statement on the first request, without an authId.
	first := `{"callbacks":[{"type":"HiddenValueCallback","output":[{"name":"id","value":"software_statement"}],` +
		`"input":[{"name":"IDToken1","value":"` + stmt + `"}]}]}`
	if status, body := e.call("POST", e.authURL("reg-tree-sw-stmt", "/"), authHeaders(), first); status != 200 {
		t.Fatalf("shortcut: %d %v", status, body)
	}
}

func TestRegistrationOfExistingIdentity(t *testing.T) {
	e := startEnv(t, func(s *Settings) {
		s.Trees["rotate"] = &Tree{Register: &RegisterNode{Method: MethodPoPWithoutTrust, CreateIdentity: true, AllowKeyRotation: true}}
		s.Trees["no-create"] = &Tree{Register: &RegisterNode{Method: MethodPoPWithoutTrust}}
		s.Trees["name-check"] = &Tree{Register: &RegisterNode{Method: MethodPoPWithoutTrust, CreateIdentity: true,
			NameValidationRegex: `.*[\*\(\)&!].*`}}
	})
	first := newThing(t, "rotating", jose.ES256)
	if status, body := e.login("reg-tree-pop", "/", regFill(t, first, "", nil)); status != 200 {
		t.Fatalf("first: %d %v", status, body)
	}
	again := newThing(t, "rotating", jose.ES256)
	if status, _ := e.login("reg-tree-pop", "/", regFill(t, first, "", nil)); status != 200 {
		t.Fatalf("same key again refused: %d", status)
	}
	if status, _ := e.login("reg-tree-pop", "/", regFill(t, again, "", nil)); status != 401 {
		t.Fatalf("new key without allowKeyRotation: %d", status)
	}
	if status, _ := e.login("rotate", "/", regFill(t, again, "", nil)); status != 200 {
		t.Fatalf("new key with allowKeyRotation: %d", status)
	}
	if status, _ := e.login("auth-tree", "/", popFill(t, again, "/")); status != 200 {
		t.Fatalf("rotated key does not authenticate: %d", status)
	}
	if status, _ := e.login("no-create", "/", regFill(t, newThing(t, "not-created", jose.ES256), "", nil)); status != 401 {
		t.Fatalf("createIdentity off: %d", status)
	}
	if status, _ := e.login("name-check", "/", regFill(t, newThing(t, "bad(name)", jose.ES256), "", nil)); status != 401 {
		t.Fatalf("nameValidationRegex: %d", status)
	}
}

func TestWalkthroughCACertificateStillVerifies(t *testing.T) {
	// The es256test certificate expired in 2020; AM uses it as a key, so a
	// thing certificate it signed still verifies. Its private key is not
	// published here, so check the mechanism: the CA's own dates are ignored.
	keys, err := loadCAKeys([]string{builtinES256Test})
	if err != nil || len(keys) != 1 {
		t.Fatalf("builtin CA: %v", err)
	}
	if _, ok := keys[0].(*ecdsa.PublicKey); !ok {
		t.Fatalf("es256test key type %T", keys[0])
	}
	ca := newTestCA(t)
	expired := *ca.cert
	expired.NotAfter = time.Date(2020, 10, 30, 0, 0, 0, 0, time.UTC)
	leaf := ca.issue(t, "x", &ca.key.PublicKey, time.Now().Add(time.Hour))
	e := &Server{caKeys: []crypto.PublicKey{expired.PublicKey}, now: time.Now, settings: DefaultSettings()}
	if err := e.verifyCertificateChain([]*x509.Certificate{leaf}, "x", true); err != nil {
		t.Fatalf("expired CA certificate refused: %v", err)
	}
	if err := e.verifyCertificateChain([]*x509.Certificate{leaf}, "y", true); err == nil {
		t.Fatal("verifySubject accepted another CN")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(softwarePublisherJWKS), &set); err != nil || set.Keys[0].KeyID != "gLcQhotEZygUuVUrt3Z6azql3dVfqQS7lo3vereyU7Y=" {
		t.Fatalf("walk-through publisher key: %v", err)
	}
}

func TestClientAssertionThenCertificateRegistration(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "assert-reg", jose.ES256)
	th.cert = e.ca.issue(t, th.id, th.key.Public(), time.Now().Add(time.Hour))
	fill := func(id, challenge string) (string, bool) {
		switch id {
		case cbClientAssertion:
			return th.assertionJWT(t, "custom-client-assertion-audience", nil), true
		case cbPoPRegistration:
			return th.regJWT(t, "custom-client-assertion-audience", challenge, nil), true
		}
		return "", false
	}
	status, body := e.login("JWTRegWithPoPWithCertAndJWTAuthWithAssertion", "/", fill)
	if status != 200 {
		t.Fatalf("register after client assertion: %d %v", status, body)
	}
	// Unrestricted (client-assertion node), yet signed bodies with the registered key work.
	p := &popSession{e: e, th: th, token: body["tokenId"].(string)}
	if status, tok := p.do("POST", accessTokenPath, map[string]any{}, false); status != 200 {
		t.Fatalf("plain body: %d %v", status, tok)
	}
	if status, tok := p.do("POST", accessTokenPath, map[string]any{}, true); status != 200 {
		t.Fatalf("signed body: %d %v", status, tok)
	}
	// Now known: the same tree authenticates it without registering.
	if status, body := e.login("JWTRegWithPoPWithCertAndJWTAuthWithAssertion", "/", fill); status != 200 || body["tokenId"] == nil {
		t.Fatalf("second login: %d %v", status, body)
	}
}
