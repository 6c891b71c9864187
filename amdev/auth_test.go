package amdev

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestPoPAuthenticationAndAccessToken(t *testing.T) {
	e := startEnv(t)
	algs := []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.PS256, jose.PS384, jose.PS512, jose.RS256}
	for _, alg := range algs {
		t.Run(string(alg), func(t *testing.T) {
			th := newThing(t, "thing-"+strings.ToLower(string(alg)), alg)
			e.registerManually(th, nil)
			status, body := e.login("auth-tree", "/", popFill(t, th, "/"))
			if status != http.StatusOK || body["tokenId"] == nil {
				t.Fatalf("login: %d %v", status, body)
			}
			p := &popSession{e: e, th: th, token: body["tokenId"].(string)}
			status, tok := p.do("POST", accessTokenPath+"&realm=/", map[string]any{"scope": []string{"publish"}}, true)
			if status != http.StatusOK || tok["scope"] != "publish" || tok["token_type"] != "Bearer" {
				t.Fatalf("get_access_token: %d %v", status, tok)
			}
			claims := decodeJWT(t, tok["access_token"].(string))
			if claims["sub"] != "("+"usr!"+th.id+")" || claims["subname"] != th.id || claims["aud"] != DefaultClientID ||
				claims["iss"] != e.srv.Issuer() || claims["thingType"] != "device" {
				t.Fatalf("claims: %v", claims)
			}
			if sc, _ := claims["scope"].([]any); len(sc) != 1 || sc[0] != "publish" {
				t.Fatalf("scope claim: %v", claims["scope"])
			}
			// No scope → the client's default (subscribe); twice on one session.
			for range 2 {
				status, tok = p.do("POST", accessTokenPath, map[string]any{}, true)
				if status != http.StatusOK || tok["scope"] != "subscribe" {
					t.Fatalf("default scope: %d %v", status, tok)
				}
			}
		})
	}
}

func TestAuthenticationOutcomes(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "manual-thing", jose.ES256)
	e.registerManually(th, nil)
	other := newThing(t, "manual-thing", jose.ES256) // same id, unknown key
	stranger := newThing(t, "nobody", jose.ES256)
	tests := []struct {
		name   string
		tree   string
		fill   func(id, challenge string) (string, bool)
		status int
	}{
		{"pop ok", "auth-tree", popFill(t, th, "/"), 200},
		{"pop wrong audience", "auth-tree", popFill(t, th, "/elsewhere"), 401},
		{"pop extra audience", "JWTAuthWithPoP", popFill(t, th, "custom-pop-audience"), 200},
		{"pop wrong nonce", "auth-tree", func(id, _ string) (string, bool) { return th.popJWT(t, "/", "not-the-challenge", nil), true }, 401},
		{"pop unknown kid → register → failure", "auth-tree", popFill(t, other, "/"), 401},
		{"pop unknown identity → register → failure", "auth-tree", popFill(t, stranger, "/"), 401},
		{"pop signed by other key with known kid", "auth-tree", func(id, c string) (string, bool) {
			forged := *other
			forged.kid = th.kid
			return forged.popJWT(t, "/", c, nil), true
		}, 401},
		{"pop expired", "auth-tree", func(id, c string) (string, bool) {
			return th.popJWT(t, "/", c, map[string]any{"exp": time.Now().Add(-10 * time.Minute).Unix()}), true
		}, 401},
		{"pop garbage", "auth-tree", func(string, string) (string, bool) { return "not.a.jwt", true }, 401},
		{"custom claims ok", "JWTAuthWithPoPAndCustomClaims", func(id, c string) (string, bool) {
			return th.popJWT(t, "/", c, map[string]any{"life_universe_everything": "42"}), true
		}, 200},
		{"custom claims wrong", "JWTAuthWithPoPAndCustomClaims", func(id, c string) (string, bool) {
			return th.popJWT(t, "/", c, map[string]any{"life_universe_everything": "41"}), true
		}, 401},
		{"client assertion ok", "auth-tree-client-assertion", func(id, _ string) (string, bool) {
			return th.assertionJWT(t, e.srv.Issuer()+"/access_token", nil), id == cbClientAssertion
		}, 200},
		{"client assertion oauth base", "auth-tree-client-assertion", func(id, _ string) (string, bool) {
			return th.assertionJWT(t, e.srv.Issuer(), nil), true
		}, 200},
		{"client assertion custom audience", "JWTAuthWithAssertion", func(id, _ string) (string, bool) {
			return th.assertionJWT(t, "custom-client-assertion-audience", nil), true
		}, 200},
		{"client assertion wrong audience", "auth-tree-client-assertion", func(id, _ string) (string, bool) {
			return th.assertionJWT(t, "/", nil), true
		}, 401},
		{"client assertion iss != sub", "auth-tree-client-assertion", func(id, _ string) (string, bool) {
			return th.assertionJWT(t, e.srv.Issuer(), map[string]any{"iss": "someone-else"}), true
		}, 401},
		{"unanswered callback", "auth-tree", func(string, string) (string, bool) { return "", false }, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.login(tc.tree, "/", tc.fill)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			if status == 401 && (body["code"] != float64(401) || body["reason"] != "Unauthorized" || body["message"] == "") {
				t.Fatalf("error envelope: %v", body)
			}
		})
	}
}

func TestClientAssertionShortcutAndReplay(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "assert-thing", jose.ES256)
	e.registerManually(th, nil)
	assertion := th.assertionJWT(t, e.srv.Issuer()+"/access_token", map[string]any{"jti": "once"})
	first := `{"callbacks":[{"type":"HiddenValueCallback","output":[{"name":"id","value":"client_assertion"}],` +
		`"input":[{"name":"IDToken1","value":"` + assertion + `"}]}]}`
	status, body := e.call("POST", e.authURL("auth-tree-client-assertion", "/"), authHeaders(), first)
	if status != 200 || body["tokenId"] == nil {
		t.Fatalf("shortcut: %d %v", status, body)
	}
	status, body = e.call("POST", e.authURL("auth-tree-client-assertion", "/"), authHeaders(), first)
	if status != 401 {
		t.Fatalf("replayed jti: %d %v", status, body)
	}
	// The unrestricted session accepts plain JSON and signed bodies alike.
	p := &popSession{e: e, th: th, token: body0(t, e, th)}
	if status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"subscribe"}}, false); status != 200 {
		t.Fatalf("plain JSON on unrestricted session: %d %v", status, tok)
	}
	if status, tok := p.do("POST", accessTokenPath, map[string]any{"scope": []string{"subscribe"}}, true); status != 200 {
		t.Fatalf("JOSE on unrestricted session: %d %v", status, tok)
	}
}

// body0 logs th in through the client-assertion tree and returns its token.
func body0(t *testing.T, e *env, th *testThing) string {
	status, body := e.login("auth-tree-client-assertion", "/", func(id, _ string) (string, bool) {
		return th.assertionJWT(t, e.srv.Issuer(), nil), true
	})
	if status != 200 {
		t.Fatalf("login: %d %v", status, body)
	}
	return body["tokenId"].(string)
}

func TestAuthIDExpiresAndIsSingleUse(t *testing.T) {
	e := startEnv(t)
	th := newThing(t, "timer-thing", jose.ES256)
	e.registerManually(th, nil)
	_, reply := e.call("POST", e.authURL("auth-tree", "/"), authHeaders(), "{}")
	answered := answer(t, reply, popFill(t, th, "/"))
	e.clock.Advance(6 * time.Minute)
	status, body := e.call("POST", e.authURL("auth-tree", "/"), authHeaders(), answered)
	if status != 401 || !strings.Contains(body["message"].(string), "timed out") {
		t.Fatalf("expired authId: %d %v", status, body)
	}
	// A fresh round succeeds once; replaying the same answer (authId and challenge) fails.
	now := map[string]any{"iat": e.clock.Now().Unix(), "exp": e.clock.Now().Add(5 * time.Minute).Unix()}
	_, reply = e.call("POST", e.authURL("auth-tree", "/"), authHeaders(), "{}")
	answered = answer(t, reply, func(_, c string) (string, bool) { return th.popJWT(t, "/", c, now), true })
	if status, body := e.call("POST", e.authURL("auth-tree", "/"), authHeaders(), answered); status != 200 {
		t.Fatalf("login: %d %v", status, body)
	}
	if status, body := e.call("POST", e.authURL("auth-tree", "/"), authHeaders(), answered); status != 401 {
		t.Fatalf("replayed PoP JWT: %d %v", status, body)
	}
	// A PoP JWT answered with an old challenge in a new round is refused too.
	_, reply2 := e.call("POST", e.authURL("auth-tree", "/"), authHeaders(), "{}")
	stale := answer(t, reply2, func(id, _ string) (string, bool) {
		return th.popJWT(t, "/", challengeOf(reply), now), true
	})
	if status, body := e.call("POST", e.authURL("auth-tree", "/"), authHeaders(), stale); status != 401 {
		t.Fatalf("old challenge: %d %v", status, body)
	}
}

func challengeOf(reply map[string]any) string {
	cb := reply["callbacks"].([]any)[0].(map[string]any)
	for _, o := range cb["output"].([]any) {
		if om := o.(map[string]any); om["name"] == "value" {
			return om["value"].(string)
		}
	}
	return ""
}

func TestUsernamePasswordTreeAndHeaderLogin(t *testing.T) {
	e := startEnv(t)
	cases := []struct {
		tree, user, pw string
		status         int
	}{
		{"ldapService", "bjensen", DefaultUserPassword, 200},
		{"user-tree", "bjensen", "wrong", 401},
		{"AnvilUserPwd", "AMADMIN", "changeit", 200},
		{"user-tree", "nobody", "x", 401},
	}
	for _, c := range cases {
		status, body := e.login(c.tree, "", func(id, _ string) (string, bool) {
			switch id {
			case "User Name":
				return c.user, true
			case "Password":
				return c.pw, true
			}
			return "", false
		})
		if status != c.status {
			t.Errorf("%s %s: %d %v", c.tree, c.user, status, body)
		}
	}
	h := map[string]string{"X-OpenAM-Username": "bjensen", "X-OpenAM-Password": "nope"}
	if status, body := e.call("POST", e.srv.URL()+"/json/authenticate", h, ""); status != 401 || body["message"] != "Login failure" {
		t.Fatalf("bad header login: %d %v", status, body)
	}
}

func TestInProcessTokens(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	if err := e.srv.EnsureThing(ctx, DemoThing{ID: "lamp"}); err != nil {
		t.Fatal(err)
	}
	tok, err := e.srv.IssueAccessToken(ctx, "lamp", "", []string{"publish", "subscribe"})
	if err != nil {
		t.Fatal(err)
	}
	c := decodeJWT(t, tok)
	if c["subname"] != "lamp" || !slices.Equal(toStrings(c["scope"]), []string{"publish", "subscribe"}) {
		t.Fatalf("claims %v", c)
	}
	if _, err := e.srv.IssueAccessToken(ctx, "lamp", "", []string{"fleet:read"}); err == nil {
		t.Fatal("scope outside the client accepted")
	}
	if _, err := e.srv.IssueAccessToken(ctx, "ghost", "", nil); err == nil {
		t.Fatal("unknown thing accepted")
	}
	ctok, err := e.srv.IssueClientToken(ctx, CloudAppClientID, []string{"fleet:command"})
	if err != nil {
		t.Fatal(err)
	}
	if c := decodeJWT(t, ctok); c["sub"] != "(age!cloud-app)" || c["aud"] != CloudAppClientID {
		t.Fatalf("client token claims %v", c)
	}
	if tok, err := e.srv.IssueAccessToken(ctx, DemoThingID, "", []string{"publish"}); err != nil || tok == "" {
		t.Fatalf("demo thing: %v", err)
	}
	broker, ok := e.srv.BrokerClient()
	if !ok || broker.Secret != BrokerClientSecret {
		t.Fatalf("broker client %v", broker)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestClaimsFromAttributes(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.OAuth2.ClaimsFromAttributes["things"] = "gatewayThings" })
	ctx := context.Background()
	err := e.srv.EnsureThing(ctx, DemoThing{ID: "gw-1", ThingType: "gateway",
		Attributes: map[string][]string{"gatewayThings": {"sensor-7", "sensor-8"}}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.srv.IssueAccessToken(ctx, "gw-1", "", []string{"publish"})
	if err != nil {
		t.Fatal(err)
	}
	c := decodeJWT(t, tok)
	if c["thingType"] != "gateway" || !slices.Equal(toStrings(c["things"]), []string{"sensor-7", "sensor-8"}) {
		t.Fatalf("claims %v", c)
	}
	_, in := e.form("/oauth2/introspect", basic(BrokerClientID, BrokerClientSecret), urlValues("token", tok))
	if in["thingType"] != "gateway" || len(in["things"].([]any)) != 2 {
		t.Fatalf("introspection %v", in)
	}
	if err := e.srv.EnsureThing(ctx, DemoThing{ID: "gw-2", Attributes: map[string][]string{"thingKeys": {"x"}}}); err == nil {
		t.Fatal("thingKeys set through Attributes")
	}
}
