package amdev

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseCompactJWS: any input parses or fails cleanly, never panics.
func FuzzParseCompactJWS(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiIsIm5vbmNlIjowfQ.e30.AAAA")
	f.Add("a.b.c")
	f.Add("..")
	f.Add(`eyJhbGciOiJub25lIn0.eyJjc3JmIjoieCJ9.`)
	f.Fuzz(func(t *testing.T, raw string) {
		jws, err := parseCompactJWS(raw)
		if err != nil {
			return
		}
		_, _ = jws.claims()
		_ = jws.headerString("aud")
		_ = jws.verify(nil)
	})
}

// FuzzAuthenticateBody drives the tree engine with arbitrary bodies.
func FuzzAuthenticateBody(f *testing.F) {
	srv, err := Start(f.Context(), Config{Listen: "127.0.0.1:0", InMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	f.Add("auth-tree", `{}`)
	f.Add("reg-tree-sw-stmt", `{"callbacks":[{"type":"HiddenValueCallback","output":[{"name":"id","value":"software_statement"}],"input":[{"name":"IDToken1","value":"a.b.c"}]}]}`)
	f.Add("auth-tree-client-assertion", `{"callbacks":[{"type":"HiddenValueCallback","output":[{"name":"id","value":"client_assertion"}],"input":[{"name":"IDToken1","value":"eyJhbGciOiJFUzI1NiJ9.e30.AA"}]}]}`)
	f.Add("ldapService", `{"authId":"x","callbacks":[{"type":"NameCallback","input":[{"value":1}]}]}`)
	f.Fuzz(func(t *testing.T, tree, body string) {
		req := httptest.NewRequest("POST", "/json/authenticate?authIndexType=service&authIndexValue="+url.QueryEscape(tree), strings.NewReader(body))
		w := httptest.NewRecorder()
		err := srv.handleAuthenticate(w, req, "/", false)
		if err != nil {
			if _, ok := err.(*httpError); !ok {
				t.Fatalf("non-HTTP error: %v", err)
			}
			return
		}
		if w.Code != http.StatusOK || !json.Valid(w.Body.Bytes()) {
			t.Fatalf("answer %d %q", w.Code, w.Body.String())
		}
	})
}

// FuzzSignedRequest feeds arbitrary application/jose bodies to the signed-request check of a restricted session.
func FuzzSignedRequest(f *testing.F) {
	srv, err := Start(f.Context(), Config{Listen: "127.0.0.1:0", InMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	th := newThing(f, "fuzz-thing", "ES256")
	key := th.publicJWK()
	ss := srv.newSession("/", th.id, kindThing, true, &key)
	target := srv.URL() + "/json/things/*?_action=get_access_token"
	api := "protocol=2.0,resource=1.0"
	f.Add(signWith(f, th.key, th.alg, map[string]any{"csrf": ss.token, "scope": []string{"publish"}},
		map[string]any{"aud": target, "api": api, "nonce": 1}))
	f.Add("eyJhbGciOiJFUzI1NiIsIm5vbmNlIjoxZTk5OX0.e30.AA")
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/jose")
		req.Header.Set("Accept-API-Version", api)
		m, err := srv.readBody(req, ss)
		if err != nil {
			if _, ok := err.(*httpError); !ok {
				t.Fatalf("non-HTTP error: %v", err)
			}
			return
		}
		if m == nil || m["csrf"] != nil {
			t.Fatalf("accepted body %v", m)
		}
	})
}

// FuzzAdminBodies: the admin REST's body readers (OAuth2 Provider, OAuth2
// client, journey node and tree) accept or refuse any JSON with a 400,
// never panic, and what they accept reads back as a document.
func FuzzAdminBodies(f *testing.F) {
	f.Add(`{"coreOAuth2Config": {"statelessTokensEnabled": false, "accessTokenLifetime": 60}}`)
	f.Add(`{"coreOAuth2ClientConfig": {"userpassword": {"value": "x"}, "scopes": ["a"], "defaultScopes": ["a"]}}`)
	f.Add(`{"jwtRegistrationMethod": "POP_WITH_CERTIFICATE", "claimToAttributeMapping": {"a": "b"}}`)
	f.Add(`{"entryNodeId": "n", "nodes": {"n": {"nodeType": "IotAuthenticationNode", "connections": {"success": 1}}}}`)
	f.Add(`{"jwtAuthenticationMethod": ["x"], "additionalAudienceValues": "y"}`)
	f.Fuzz(func(t *testing.T, body string) {
		m, err := decodeObject([]byte(body))
		if err != nil {
			return
		}
		refused := func(err error) {
			if he, ok := err.(*httpError); err != nil && (!ok || he.status != 400) {
				t.Fatalf("%q: %v", body, err)
			}
		}
		p, err := applyProviderDoc(DefaultSettings().OAuth2, m)
		refused(err)
		if err == nil {
			_ = providerDoc(p)
		}
		c, err := applyClientDoc(nil, m)
		refused(err)
		if err == nil {
			_ = clientDoc("c", c)
		}
		for _, typ := range []string{nodeTypeAuthenticate, nodeTypeRegister, nodeTypeDataStore} {
			n, err := nodeSettings(typ, []byte(body))
			refused(err)
			if err == nil {
				_ = nodeDoc("n", n)
			}
		}
		_, err = treeRefs(m)
		refused(err)
		if aliases, err := mappingAliases(m, secretSigningES256); err == nil {
			for _, a := range aliases {
				if !aliasPattern.MatchString(a) {
					t.Fatalf("%q: alias %q accepted", body, a)
				}
			}
		} else {
			refused(err)
		}
	})
}

// FuzzLookupToken feeds amdev's token lookup (introspection's parser of
// untrusted tokens) JWS, JWE and opaque shapes: a token amdev did not
// make is inactive, never a crash or another error.
func FuzzLookupToken(f *testing.F) {
	srv, err := Start(f.Context(), Config{Listen: "127.0.0.1:0", InMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	enc, err := srv.encryptAccessToken([]byte(`{"sub":"x","exp":4102444800,"realm":"/"}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add("eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4Q0JDLUhTMjU2In0..AAAA.AAAA.AAAA")
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.AA")
	f.Add("opaque-token")
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := srv.lookupToken(token); err != nil && !errors.Is(err, errInactive) {
			t.Fatalf("%q: %v", token, err)
		}
	})
}

// FuzzReadAnswer: whatever a receiver answers (status, Retry-After, body), the transmitter's judgment is one of
// its verdicts, a 2xx is delivered and a 400 refused, the delay asked for stays within maxRetryDelay and what is
// kept for the log is bounded.
func FuzzReadAnswer(f *testing.F) {
	f.Add(202, "", []byte(nil))
	f.Add(400, "", []byte(`{"err":"invalid_audience","description":"aud does not name this receiver"}`))
	f.Add(503, "5", []byte(`{"err":"invalid_key"}`))
	f.Add(429, "99999999999999999999", []byte("slow down"))
	f.Add(404, "-3", []byte("<html>"))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		a := readAnswer(status, retryAfter, body)
		switch {
		case status >= 200 && status < 300 && a.verdict != delivered,
			status == 400 && a.verdict != refused,
			(status == 429 || status >= 500) && a.verdict != retry:
			t.Fatalf("status %d judged %d", status, a.verdict)
		}
		if a.retryAfter < 0 || a.retryAfter > maxRetryDelay || len(a.description) > 300 || len(a.err) > 64 {
			t.Fatalf("answer %+v out of bounds", a)
		}
	})
}
