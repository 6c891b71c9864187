package sdk_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"regexp"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"imb/amdev"
	"imb/sdk"
)

// consentDone finds the marker AM's consent page carries when the decision was recorded.
var consentDone = regexp.MustCompile(`done:\s*true`)

// Manual registration then PoP authentication in a restricted session, for every realm form.
func TestAuthenticateAcrossRealmForms(t *testing.T) {
	key := mustKey(t, sdk.ES256)
	tests := []struct {
		name, realm, audience string
	}{
		{"root", "/", ""},
		{"no realm parameter", "", ""},
		{"sub-sub-realm", "/a/b", ""},
		{"alias", "sub-alias", "/a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startAM(t, nil, amdevOptions{
				realms: []string{"/a/b", "/x/b"}, aliases: map[string]string{"sub-alias": "/a/b"},
				tweak: func(s *amdev.Settings) {
					jwks, _ := key.PublicJWKS()
					realm := "/"
					if tt.realm != "" && tt.realm != "/" {
						realm = "/a/b"
					}
					s.Things["manual-thing"] = &amdev.Thing{Realm: realm, ThingType: "device", ThingKeys: jwks}
				},
			})
			ctx := testContext(t)
			thing := newClient(t, srv, tt.realm).NewThing("auth-tree",
				&sdk.Authenticator{ThingID: "manual-thing", Key: key, Audience: tt.audience})
			session, err := thing.Login(ctx)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if !session.ProofOfPossession() {
				t.Fatal("auth-tree issues a restricted token: the session must sign its requests")
			}
			// Two requests in a row: the second must carry a higher nonce to be accepted.
			for i := 0; i < 2; i++ {
				tok, err := thing.AccessToken(ctx, "publish")
				if err != nil {
					t.Fatalf("access token %d: %v", i, err)
				}
				if !slices.Equal(tok.Scopes, []string{"publish"}) || tok.ExpiresIn <= 0 || !tok.Valid() {
					t.Fatalf("token %v", tok)
				}
			}
			attrs, err := thing.Attributes(ctx, "thingType")
			if err != nil {
				t.Fatalf("attributes: %v", err)
			}
			if attrs.ID != "manual-thing" || attrs.Get("thingType") != "device" {
				t.Fatalf("attributes %+v", attrs)
			}
			if ok, err := thing.Valid(ctx); err != nil || !ok {
				t.Fatalf("valid = %v, %v", ok, err)
			}
		})
	}
}

func TestAccessTokenScopes(t *testing.T) {
	key := mustKey(t, sdk.EdDSA)
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"scoped-thing": key}})
	ctx := testContext(t)
	thing := newClient(t, srv, "/").NewThing("auth-tree", &sdk.Authenticator{ThingID: "scoped-thing", Key: key})
	tests := []struct {
		name   string
		scopes []string
		want   []string
	}{
		{"exact", []string{"publish", "subscribe"}, []string{"publish", "subscribe"}},
		{"subset", []string{"subscribe"}, []string{"subscribe"}},
		{"client default", nil, []string{"subscribe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := thing.AccessToken(ctx, tt.scopes...)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(slices.Values(tok.Scopes))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("scopes %v, want %v", got, tt.want)
			}
		})
	}
	_, err := thing.AccessToken(ctx, "publish", "delete")
	if !errors.Is(err, sdk.ErrInvalidScope) {
		t.Fatalf("unknown scope: err %v, want ErrInvalidScope", err)
	}
}

// Every registration method of the Register Thing node, through combined and registration-only trees.
func TestRegistrationMethods(t *testing.T) {
	pki := newTestPKI(t)
	srv := startAM(t, pki, amdevOptions{})
	tests := []struct {
		name      string
		tree      string
		thingType sdk.ThingType
		cert      bool
		stmt      bool
		auth      bool // the tree authenticates first (then registers on the "register" outcome)
		wantPoP   bool
	}{
		{"pop and certificate", "auth-reg-tree", sdk.Device, true, false, true, true},
		{"pop and certificate as service", "auth-reg-tree", sdk.Service, true, false, true, true},
		{"pop and software statement", "auth-reg-tree-pop-sw-stmt", sdk.Device, false, true, true, true},
		{"pop and certificate as gateway", "auth-reg-tree", sdk.Gateway, true, false, true, true},
		{"pop only", "auth-reg-tree-pop", sdk.Device, false, false, true, true},
		{"register-only pop and certificate", "reg-tree", sdk.Device, true, false, false, true},
		{"register-only pop", "reg-tree-pop", sdk.Device, false, false, false, true},
		{"register-only pop and software statement", "reg-tree-pop-sw-stmt", sdk.Device, false, true, false, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			id := "dynamic-thing-" + string(rune('a'+i))
			key := mustKey(t, sdk.ES256)
			reg := &sdk.Registrar{ThingID: id, Key: key, ThingType: tt.thingType,
				Claims: map[string]any{"thingProperties": `{"room":"kitchen"}`}}
			if tt.cert {
				reg.Certificates = []*x509.Certificate{pki.certificate(t, id, key)}
			}
			if tt.stmt {
				reg.SoftwareStatement = pki.softwareStatement(t, key)
			}
			handlers := []sdk.CallbackHandler{reg}
			if tt.auth {
				handlers = []sdk.CallbackHandler{&sdk.Authenticator{ThingID: id, Key: key}, reg}
			}
			thing := newClient(t, srv, "/").NewThing(tt.tree, handlers...)
			session, err := thing.Login(ctx)
			if err != nil {
				t.Fatalf("register: %v", err)
			}
			if session.ProofOfPossession() != tt.wantPoP {
				t.Fatalf("PoP session = %v", session.ProofOfPossession())
			}
			tok, err := thing.AccessToken(ctx, "publish")
			if err != nil {
				t.Fatalf("access token: %v", err)
			}
			if !slices.Equal(tok.Scopes, []string{"publish"}) {
				t.Fatalf("scopes %v", tok.Scopes)
			}
			attrs, err := thing.Attributes(ctx)
			if err != nil {
				t.Fatalf("attributes: %v", err)
			}
			if attrs.ID != id || attrs.Get("thingType") != string(tt.thingType) {
				t.Fatalf("attributes %+v", attrs)
			}
			if tt.auth {
				// Registered: the same tree now authenticates it without registering.
				again := newClient(t, srv, "/").NewThing(tt.tree, &sdk.Authenticator{ThingID: id, Key: key})
				if _, err := again.AccessToken(ctx, "subscribe"); err != nil {
					t.Fatalf("authenticate after registration: %v", err)
				}
			}
		})
	}
}

func TestRegistrationWithoutCertificateFails(t *testing.T) {
	pki := newTestPKI(t)
	srv := startAM(t, pki, amdevOptions{})
	key := mustKey(t, sdk.ES256)
	thing := newClient(t, srv, "/").NewThing("reg-tree", &sdk.Registrar{ThingID: "no-cert", Key: key})
	if _, err := thing.Login(testContext(t)); !errors.Is(err, sdk.ErrAuthenticationFailed) {
		t.Fatalf("err %v, want ErrAuthenticationFailed", err)
	}
}

// The software-statement-only flow: register (AM generates the id), read the id from the attributes,
// then authenticate with a client assertion under that id.
func TestSoftwareStatementThenClientAssertion(t *testing.T) {
	pki := newTestPKI(t)
	srv := startAM(t, pki, amdevOptions{})
	ctx := testContext(t)
	client := newClient(t, srv, "/")
	key := mustKey(t, sdk.ES256)
	registered := client.NewThing("reg-tree-sw-stmt", &sdk.SoftwareStatementHandler{Statement: pki.softwareStatement(t, key)})
	session, err := registered.Login(ctx)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if session.ProofOfPossession() {
		t.Fatal("a software statement proves no key: the session must not sign")
	}
	attrs, err := registered.Attributes(ctx)
	if err != nil {
		t.Fatalf("attributes: %v", err)
	}
	if attrs.ID == "" || attrs.Get("thingType") != "device" {
		t.Fatalf("attributes %+v", attrs)
	}
	thing := client.NewThing("auth-tree-client-assertion", &sdk.Authenticator{ThingID: attrs.ID, Key: key,
		AssertionAudience: srv.URL() + "/oauth2/access_token"})
	tok, err := thing.AccessToken(ctx, "publish")
	if err != nil {
		t.Fatalf("access token after client assertion: %v", err)
	}
	if !slices.Equal(tok.Scopes, []string{"publish"}) {
		t.Fatalf("scopes %v", tok.Scopes)
	}
}

func TestCustomClaims(t *testing.T) {
	key := mustKey(t, sdk.PS256)
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"claims-thing": key}})
	ctx := testContext(t)
	client := newClient(t, srv, "/")
	tests := []struct {
		tree   string
		claims map[string]any
		ok     bool
	}{
		{"JWTAuthWithPoPAndCustomClaims", map[string]any{"life_universe_everything": "42"}, true},
		{"JWTAuthWithPoPAndCustomClaims", map[string]any{"life_universe_everything": "41"}, false},
		{"JWTAuthWithAssertionAndCustomClaims", map[string]any{"life_universe_everything": "42"}, true},
		{"JWTAuthWithAssertionAndCustomClaims", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			thing := client.NewThing(tt.tree, &sdk.Authenticator{ThingID: "claims-thing", Key: key, Claims: tt.claims})
			_, err := thing.Login(ctx)
			if tt.ok && err != nil {
				t.Fatalf("login: %v", err)
			}
			if !tt.ok && !errors.Is(err, sdk.ErrAuthenticationFailed) {
				t.Fatalf("err %v, want ErrAuthenticationFailed", err)
			}
		})
	}
}

// A session logged out behind the thing's back is replaced transparently on the next call.
func TestReauthenticationAfterLogout(t *testing.T) {
	for _, tree := range []string{"auth-tree", "JWTAuthWithPoPWithUnrestrictedToken", "JWTAuthWithAssertion"} {
		t.Run(tree, func(t *testing.T) {
			key := mustKey(t, sdk.ES256)
			srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"relogin-thing": key}})
			ctx := testContext(t)
			thing := newClient(t, srv, "/").NewThing(tree, &sdk.Authenticator{ThingID: "relogin-thing", Key: key,
				AssertionAudience: "custom-client-assertion-audience"})
			first, err := thing.Login(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := first.Logout(ctx); err != nil {
				t.Fatalf("logout: %v", err)
			}
			if ok, err := first.Valid(ctx); err != nil || ok {
				t.Fatalf("after logout valid = %v, %v", ok, err)
			}
			if _, err := thing.AccessToken(ctx, "publish"); err != nil {
				t.Fatalf("access token after logout: %v", err)
			}
			second, _ := thing.Session(ctx)
			if second == first || second.Fingerprint() == first.Fingerprint() {
				t.Fatal("no new session after logout")
			}
			// The thing's own logout ends the session; the next call logs in again.
			if err := thing.Logout(ctx); err != nil {
				t.Fatal(err)
			}
			if ok, _ := second.Valid(ctx); ok {
				t.Fatal("session still valid after Thing.Logout")
			}
			if _, err := thing.Attributes(ctx); err != nil {
				t.Fatalf("attributes after Thing.Logout: %v", err)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	keyA, keyB := mustKey(t, sdk.ES256), mustKey(t, sdk.ES384)
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"thing-a": keyA, "thing-b": keyB}})
	ctx := testContext(t)
	client := newClient(t, srv, "/")
	a := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "thing-a", Key: keyA})
	b := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "thing-b", Key: keyB})
	tok, err := a.AccessToken(ctx, "publish", "subscribe")
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	narrow, err := a.RefreshToken(ctx, tok.RefreshToken, "publish")
	if err != nil {
		t.Fatalf("refresh with reduced scope: %v", err)
	}
	if !slices.Equal(narrow.Scopes, []string{"publish"}) || narrow.AccessToken == tok.AccessToken {
		t.Fatalf("refreshed %v", narrow)
	}
	refresh := narrow.RefreshToken
	if refresh == "" {
		refresh = tok.RefreshToken
	}
	if _, err := b.RefreshToken(ctx, refresh); !errors.Is(err, sdk.ErrInvalidGrant) {
		t.Fatalf("another thing's refresh token: err %v, want ErrInvalidGrant", err)
	}
	if _, err := a.RefreshToken(ctx, refresh, "publish", "subscribe"); !errors.Is(err, sdk.ErrInvalidScope) {
		t.Fatalf("refresh with more scope: err %v, want ErrInvalidScope", err)
	}
}

func TestDeviceAuthorizationGrant(t *testing.T) {
	key := mustKey(t, sdk.ES256)
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"user-authorized-thing": key},
		tweak: func(s *amdev.Settings) { s.OAuth2.DevicePollInterval = amdev.Duration(time.Second) }})
	client := newClient(t, srv, "/")
	thing := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "user-authorized-thing", Key: key})

	t.Run("approved", func(t *testing.T) {
		ctx := testContext(t)
		da, err := thing.UserCode(ctx, "publish")
		if err != nil {
			t.Fatal(err)
		}
		if da.VerificationURI == "" || da.ExpiresIn <= 0 {
			t.Fatalf("device authorization %+v", da)
		}
		if _, err := thing.PollUserToken(ctx, da); !errors.Is(err, sdk.ErrAuthorizationPending) {
			t.Fatalf("before the user answered: err %v, want ErrAuthorizationPending", err)
		}
		if _, err := thing.PollUserToken(ctx, da); !errors.Is(err, sdk.ErrSlowDown) {
			t.Fatalf("polling at once again: err %v, want ErrSlowDown", err)
		}
		page, err := decideDevice(ctx, client, da, "allow")
		if err != nil || !consentDone.MatchString(page) {
			t.Fatalf("consent page: %v\n%s", err, page)
		}
		tok, err := thing.UserToken(ctx, da)
		if err != nil {
			t.Fatalf("user token: %v", err)
		}
		in, err := thing.IntrospectToken(ctx, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if !in.Active || in.SubjectName() != amdev.DemoUserID || !slices.Equal(in.Scopes, []string{"publish"}) {
			t.Fatalf("introspection %+v", in)
		}
		if _, err := thing.RefreshToken(ctx, tok.RefreshToken); err != nil {
			t.Fatalf("refresh user token: %v", err)
		}
	})
	t.Run("denied", func(t *testing.T) {
		ctx := testContext(t)
		da, err := thing.UserCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		page, err := decideDevice(ctx, client, da, "deny")
		if err != nil || !consentDone.MatchString(page) {
			t.Fatalf("consent page: %v\n%s", err, page)
		}
		_, err = thing.UserToken(ctx, da)
		if !errors.Is(err, sdk.ErrAuthorizationDeclined) {
			t.Fatalf("err %v, want ErrAuthorizationDeclined", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"user-authorized-thing": key},
			tweak: func(s *amdev.Settings) {
				s.OAuth2.DevicePollInterval = amdev.Duration(time.Second)
				s.OAuth2.DeviceCodeLifetime = amdev.Duration(2 * time.Second)
			}})
		thing := newClient(t, srv, "/").NewThing("auth-tree", &sdk.Authenticator{ThingID: "user-authorized-thing", Key: key})
		ctx := testContext(t)
		da, err := thing.UserCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := thing.UserToken(ctx, da); !errors.Is(err, sdk.ErrExpiredToken) {
			t.Fatalf("err %v, want ErrExpiredToken", err)
		}
	})
	t.Run("unknown scope", func(t *testing.T) {
		if _, err := thing.UserCode(testContext(t), "launch"); !errors.Is(err, sdk.ErrInvalidScope) {
			t.Fatalf("err %v, want ErrInvalidScope", err)
		}
	})
}

func TestIntrospection(t *testing.T) {
	key := mustKey(t, sdk.ES256)
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"introspecting-thing": key}})
	ctx := testContext(t)
	client := newClient(t, srv, "/")
	thing := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "introspecting-thing", Key: key})
	tok, err := thing.AccessToken(ctx, "publish", "subscribe")
	if err != nil {
		t.Fatal(err)
	}
	forged := forgeToken(t, tok.AccessToken)

	remote, err := thing.IntrospectToken(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if !remote.Active || remote.Local || remote.SubjectName() != "introspecting-thing" || len(remote.Scopes) != 2 {
		t.Fatalf("introspection %+v", remote)
	}
	if in, err := thing.IntrospectToken(ctx, forged); err != nil || in.Active {
		t.Fatalf("forged token: %+v, %v", in, err)
	}
	local, err := client.IntrospectLocally(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("local: %v", err)
	}
	if !local.Active || !local.Local || local.SubjectName() != "introspecting-thing" || len(local.Scopes) != 2 {
		t.Fatalf("local introspection %+v", local)
	}
	if in, err := client.IntrospectLocally(ctx, forged); err != nil || in.Active {
		t.Fatalf("forged token locally: %+v, %v", in, err)
	}
	if _, err := client.IntrospectLocally(ctx, "opaque-token"); err == nil {
		t.Fatal("an opaque token cannot be judged locally")
	}

	// AM goes away: introspection falls back to the JWKS fetched at start-up.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	offline, err := thing.IntrospectToken(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("introspection with AM down: %v", err)
	}
	if !offline.Active || !offline.Local {
		t.Fatalf("offline introspection %+v", offline)
	}
	if _, err := thing.IntrospectToken(ctx, "opaque-token"); err == nil {
		t.Fatal("with AM down an opaque token cannot be introspected")
	}
}

// forgeToken re-signs the claims of a real token with a key AM does not know, under AM's kid.
func forgeToken(t *testing.T, real string) string {
	t.Helper()
	jws, err := jose.ParseSigned(real, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("amdev token is not an ES256 JWS: %v", err)
	}
	payload := jws.UnsafePayloadWithoutVerification()
	k := mustKey(t, sdk.ES256)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256,
		Key: jose.JSONWebKey{Key: k.Signer(), KeyID: jws.Signatures[0].Header.KeyID}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := forged.CompactSerialize()
	return out
}

func TestTokenSourceRenews(t *testing.T) {
	key := mustKey(t, sdk.ES256)
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"renewing-thing": key},
		tweak: func(s *amdev.Settings) { s.OAuth2.AccessTokenLifetime = amdev.Duration(3 * time.Second) }})
	ctx := testContext(t)
	ts := newClient(t, srv, "/").NewThing("auth-tree", &sdk.Authenticator{ThingID: "renewing-thing", Key: key}).TokenSource("publish")
	first, err := ts.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := ts.Token(ctx); again != first {
		t.Fatal("a fresh token must be reused")
	}
	if o, err := sdk.OAuth2(ctx, ts).Token(); err != nil || o.AccessToken != first.AccessToken || !o.Expiry.Equal(first.Expiry) {
		t.Fatalf("oauth2 adapter: %v, %v", o, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tok, err := ts.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != first.AccessToken {
			if !tok.Valid() || !slices.Equal(tok.Scopes, []string{"publish"}) {
				t.Fatalf("renewed %v", tok)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("token never renewed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PoP authentication and a token request with every key algorithm AM accepts.
func TestAlgorithmsAgainstAM(t *testing.T) {
	algs := []sdk.Algorithm{sdk.ES256, sdk.ES384, sdk.ES512, sdk.EdDSA, sdk.PS256, sdk.PS384, sdk.PS512}
	if testing.Short() {
		algs = algs[:5] // 3072- and 4096-bit RSA key generation is slow
	}
	keys := map[string]*sdk.Key{}
	for _, alg := range algs {
		keys["thing-"+string(alg)] = mustKey(t, alg)
	}
	srv := startAM(t, nil, amdevOptions{things: keys})
	client := newClient(t, srv, "/")
	for _, alg := range algs {
		t.Run(string(alg), func(t *testing.T) {
			id := "thing-" + string(alg)
			thing := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: id, Key: keys[id]})
			if _, err := thing.AccessToken(testContext(t)); err != nil {
				t.Fatalf("%s: %v", alg, err)
			}
		})
	}
}

// A key id other than the thumbprint works when the identity stores it; a key id the identity does
// not hold fails the authentication.
func TestKeyIDs(t *testing.T) {
	raw := mustKey(t, sdk.ES256)
	custom, err := sdk.NewKey(raw.Signer(), "pop.cnf")
	if err != nil {
		t.Fatal(err)
	}
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"kid-thing": custom}})
	client := newClient(t, srv, "/")
	ctx := testContext(t)
	if _, err := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "kid-thing", Key: custom}).Login(ctx); err != nil {
		t.Fatalf("kid pop.cnf: %v", err)
	}
	if _, err := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "kid-thing", Key: raw}).Login(ctx); !errors.Is(err, sdk.ErrAuthenticationFailed) {
		t.Fatalf("unknown kid: err %v, want ErrAuthenticationFailed", err)
	}
}

func TestUsernamePasswordTree(t *testing.T) {
	srv := startAM(t, nil, amdevOptions{})
	client := newClient(t, srv, "/")
	ctx := testContext(t)
	s, err := client.NewThing("user-tree", &sdk.NameHandler{Name: amdev.DemoUserID}, &sdk.PasswordHandler{Password: amdev.DefaultUserPassword}).Login(ctx)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if s.ProofOfPossession() {
		t.Fatal("a password proves no key")
	}
	if ok, err := s.Valid(ctx); err != nil || !ok {
		t.Fatalf("valid = %v, %v", ok, err)
	}
	_, err = client.NewThing("user-tree", &sdk.NameHandler{Name: amdev.DemoUserID}, &sdk.PasswordHandler{Password: "wrong"}).Login(ctx)
	if !errors.Is(err, sdk.ErrAuthenticationFailed) {
		t.Fatalf("wrong password: err %v", err)
	}
}

// Concurrent calls on one restricted session: the nonces must still reach AM in increasing order.
func TestConcurrentSignedRequests(t *testing.T) {
	key := mustKey(t, sdk.ES256)
	srv := startAM(t, nil, amdevOptions{things: map[string]*sdk.Key{"busy-thing": key}})
	ctx := testContext(t)
	thing := newClient(t, srv, "/").NewThing("auth-tree", &sdk.Authenticator{ThingID: "busy-thing", Key: key})
	errs := make(chan error, 16)
	for i := 0; i < cap(errs); i++ {
		go func() {
			if i%2 == 0 {
				_, err := thing.AccessToken(ctx, "publish")
				errs <- err
				return
			}
			_, err := thing.Attributes(ctx, "thingType")
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// Manual registration as in the walk-through: an administrator creates the identity with the thing's
// public key, then the thing authenticates through auth-tree.
func TestManualRegistration(t *testing.T) {
	pki := newTestPKI(t)
	srv := startAM(t, pki, amdevOptions{realms: []string{"/a"}})
	for _, realm := range []string{"/", "/a"} {
		t.Run(realm, func(t *testing.T) {
			ctx := testContext(t)
			client := newClient(t, srv, realm)
			admin, err := newClient(t, srv, "/").Login(ctx, "amAdmin", amdev.DefaultAdminPassword)
			if err != nil {
				t.Fatalf("admin login: %v", err)
			}
			key := mustKey(t, sdk.ES256)
			jwks, _ := key.PublicJWKS()
			if err := client.CreateIdentity(ctx, admin, "manual-thing", sdk.Identity{ThingType: sdk.Gateway, ThingKeys: jwks, Config: "host=localhost;port=80"}); err != nil {
				t.Fatal(err)
			}
			thing := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "manual-thing", Key: key})
			attrs, err := thing.Attributes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if attrs.Get("thingType") != "gateway" || attrs.Get("thingConfig") != "host=localhost;port=80" {
				t.Fatalf("attributes %+v", attrs)
			}
			own, err := thing.Session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := client.CreateIdentity(ctx, own, "intruder", sdk.Identity{ThingKeys: jwks}); err == nil {
				t.Fatal("a thing's session must not create identities")
			}
		})
	}
	certs, err := sdk.ParseCertificatesPEM(append(pemCert(pki.certificate(t, "leaf", mustKey(t, sdk.ES256))), pemCert(pki.caCert)...))
	if err != nil || len(certs) != 2 || certs[0].Subject.CommonName != "leaf" {
		t.Fatalf("certificates %v, %v", certs, err)
	}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
