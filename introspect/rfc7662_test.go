package introspect

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The broker's credentials contain characters RFC 6749 §2.3.1 form-encodes before Basic authentication.
const (
	brokerClientID     = "imb broker"
	brokerClientSecret = "s3cr:t/+%"
)

// introspectionEndpoint is an RFC 7662 endpoint on 127.0.0.1 that authenticates the broker and answers per token.
type introspectionEndpoint struct {
	*issuerServer
	requests atomic.Int64
	answers  map[string]func(w http.ResponseWriter, r *http.Request)
	lastForm url.Values
	mu       sync.Mutex
}

func newIntrospectionEndpoint(t *testing.T) *introspectionEndpoint {
	e := &introspectionEndpoint{issuerServer: newIssuerServer(t)}
	iss := e.issuer()
	now := time.Now().Unix()
	active := func(extra map[string]any) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			body := map[string]any{"active": true, "scope": "publish subscribe", "client_id": "forgerock-iot-oauth2-client",
				"user_id": "thing-1", "username": "thing-1", "sub": "(usr!thing-1)", "subname": "thing-1",
				"token_type": "Bearer", "exp": now + 3600, "iss": iss, "realm": "/", "expires_in": 3599}
			for k, v := range extra {
				if v == nil {
					delete(body, k)
				} else {
					body[k] = v
				}
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(body)
		}
	}
	text := func(status int, body string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	e.answers = map[string]func(http.ResponseWriter, *http.Request){
		"active":          active(nil),
		"active-aud":      active(map[string]any{"aud": []string{"mqtt-broker", "x"}}),
		"inactive":        text(200, `{"active":false}`),
		"expired-active":  active(map[string]any{"exp": now - 10}),
		"nbf-future":      active(map[string]any{"nbf": now + 3600}),
		"other-issuer":    active(map[string]any{"iss": "https://evil.example/oauth2"}),
		"no-sub":          active(map[string]any{"sub": nil, "subname": nil, "client_id": nil}),
		"client-no-sub":   active(map[string]any{"sub": nil, "subname": nil, "client_id": "cloud-app"}),
		"no-exp":          active(map[string]any{"exp": nil}),
		"refresh":         active(map[string]any{"token_type": "refresh_token"}),
		"type-REFRESH":    active(map[string]any{"token_type": "REFRESH_TOKEN"}),
		"type-id":         active(map[string]any{"token_type": "id_token"}),
		"type-number":     active(map[string]any{"token_type": 1}),
		"type-absent":     active(map[string]any{"token_type": nil}),
		"type-bearer":     active(map[string]any{"token_type": "bearer"}),
		"type-dpop":       active(map[string]any{"token_type": "DPoP"}),
		"type-access":     active(map[string]any{"token_type": "Access_Token"}),
		"type-am-refresh": active(map[string]any{"tokenName": "refresh_token"}),
		"server-error":    text(500, `{"error":"server_error"}`),
		"bad-gateway":     text(502, `<html>bad gateway</html>`),
		"not-json":        text(200, `<html>login</html>`),
		"no-active":       text(200, `{"scope":"publish"}`),
		"active-string":   text(200, `{"active":"true","sub":"a"}`),
		"duplicate":       text(200, `{"active":false,"active":true,"sub":"a"}`),
		"truncated":       text(200, `{"active":true,"sub":"a"`),
		"jwt-unsupported": text(400, `{"error":"unsupported_token_type","error_description":"Structured JWT Tokens cannot be introspected"}`),
		"bad-request":     text(400, `{"error":"invalid_request"}`),
		"slow": func(w http.ResponseWriter, r *http.Request) {
			select { // held until the broker gives up
			case <-r.Context().Done():
			case <-done:
			}
		},
	}
	e.setIntrospect(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		e.lastForm = r.PostForm
		e.mu.Unlock()
		id, secret, ok := r.BasicAuth()
		if ok {
			id, _ = url.QueryUnescape(id)
			secret, _ = url.QueryUnescape(secret)
		} else {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if id != brokerClientID || secret != brokerClientSecret {
			w.Header().Set("WWW-Authenticate", "Basic")
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		e.mu.Lock()
		answer, ok := e.answers[r.PostForm.Get("token")]
		e.mu.Unlock()
		if !ok {
			answer = text(200, `{"active":false}`)
		}
		answer(w, r)
	})
	return e
}

// setAnswer installs the answer for one token; the endpoint may be serving meanwhile.
func (e *introspectionEndpoint) setAnswer(token string, h func(http.ResponseWriter, *http.Request)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.answers[token] = h
}

// answer returns the answer for one token.
func (e *introspectionEndpoint) answer(token string) func(http.ResponseWriter, *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.answers[token]
}

// holdAnswer makes token's answer wait until the returned channel is closed, then answer like "active".
func (e *introspectionEndpoint) holdAnswer(token string) chan struct{} {
	release := make(chan struct{})
	answer := e.answer("active")
	e.setAnswer(token, func(w http.ResponseWriter, r *http.Request) {
		<-release
		answer(w, r)
	})
	return release
}

func newTestIntrospector(t *testing.T, cfg IntrospectionConfig) *Introspector {
	t.Helper()
	in, err := NewIntrospection(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

func TestIntrospectionAnswers(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	in := newTestIntrospector(t, IntrospectionConfig{Issuer: e.issuer(), ClientID: brokerClientID,
		ClientSecret: brokerClientSecret, CheckIssuer: true, Timeout: 10 * time.Second})
	if in.Endpoint() != e.issuer()+"/introspect" {
		t.Fatalf("endpoint %q not taken from discovery", in.Endpoint())
	}
	tests := []struct {
		token  string
		kind   error // nil: valid
		reason string
	}{
		{"active", nil, ""},
		{"no-exp", nil, ""},
		{"type-absent", nil, ""},
		{"type-bearer", nil, ""},
		{"type-dpop", nil, ""},
		{"type-access", nil, ""},
		{"refresh", ErrInvalidToken, ReasonNotAccessType},
		{"type-REFRESH", ErrInvalidToken, ReasonNotAccessType},
		{"type-id", ErrInvalidToken, ReasonNotAccessType},
		{"type-number", ErrInvalidToken, ReasonClaimType},
		{"type-am-refresh", ErrInvalidToken, ReasonNotAccessToken},
		{"inactive", ErrInvalidToken, ReasonInactive},
		{"unknown-token", ErrInvalidToken, ReasonInactive},
		{"expired-active", ErrInvalidToken, ReasonExpired},
		{"nbf-future", ErrInvalidToken, ReasonNotYetValid},
		{"other-issuer", ErrInvalidToken, ReasonIssuerMismatch},
		{"no-sub", ErrInvalidToken, ReasonSubMissing},
		{"jwt-unsupported", ErrInvalidToken, ReasonUnsupportedToken},
		{"server-error", ErrUnavailable, ReasonUpstreamStatus},
		{"bad-gateway", ErrUnavailable, ReasonUpstreamStatus},
		{"bad-request", ErrUnavailable, ReasonUpstreamStatus},
		{"not-json", ErrUnavailable, ReasonUpstreamMalformed},
		{"truncated", ErrUnavailable, ReasonUpstreamMalformed},
		{"duplicate", ErrUnavailable, ReasonUpstreamMalformed},
		{"no-active", ErrUnavailable, ReasonActiveMissing},
		{"active-string", ErrUnavailable, ReasonActiveMissing},
	}
	t.Run("client-no-sub", func(t *testing.T) {
		// A client_credentials token introspected without sub: the client is the principal.
		tok, err := in.Validate(t.Context(), "client-no-sub")
		if err != nil || tok.ThingID != "cloud-app" || tok.ClientID != "cloud-app" {
			t.Fatalf("token %+v, err %v", tok, err)
		}
		if want := (Principal{Issuer: e.issuer(), Kind: "client", Subject: "cloud-app"}); tok.Principal != want {
			t.Fatalf("principal %+v, want %+v", tok.Principal, want)
		}
	})
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			tok, err := in.Validate(t.Context(), tt.token)
			if tt.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tok.ThingID != "thing-1" || tok.ClientID != "forgerock-iot-oauth2-client" ||
					!slices.Equal(tok.Scopes, []string{"publish", "subscribe"}) || tok.Method != MethodIntrospection {
					t.Errorf("token %+v", tok)
				}
				return
			}
			if got := reasonOf(t, err, tt.kind); got != tt.reason {
				t.Errorf("reason %q, want %q (%v)", got, tt.reason, err)
			}
			want := ReasonCodeBadCredentials
			if tt.kind == ErrUnavailable {
				want = ReasonCodeServerUnavailable
			}
			if code := err.(*Error).ReasonCode(); code != want {
				t.Errorf("reason code %#x, want %#x", code, want)
			}
		})
	}
	e.mu.Lock()
	hint := e.lastForm.Get("token_type_hint")
	e.mu.Unlock()
	if hint != "access_token" {
		t.Errorf("token_type_hint %q", hint)
	}
}

// TestIntrospectionTimeout holds the answer until the broker gives up.
func TestIntrospectionTimeout(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	in := newTestIntrospector(t, IntrospectionConfig{Endpoint: e.issuer() + "/introspect", ClientID: brokerClientID,
		ClientSecret: brokerClientSecret, Timeout: 200 * time.Millisecond})
	_, err := in.Validate(t.Context(), "slow")
	if r := reasonOf(t, err, ErrUnavailable); r != ReasonUpstreamNetwork {
		t.Errorf("reason %q", r)
	}
	if code := err.(*Error).ReasonCode(); code != ReasonCodeServerUnavailable {
		t.Errorf("reason code %#x", code)
	}
}

func TestIntrospectionClientAuth(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	endpoint := e.issuer() + "/introspect"
	for _, method := range []string{AuthClientSecretBasic, AuthClientSecretPost} {
		t.Run(method, func(t *testing.T) {
			in := newTestIntrospector(t, IntrospectionConfig{Endpoint: endpoint, ClientID: brokerClientID,
				ClientSecret: brokerClientSecret, AuthMethod: method})
			if _, err := in.Validate(t.Context(), "active"); err != nil {
				t.Fatal(err)
			}
			wrong := newTestIntrospector(t, IntrospectionConfig{Endpoint: endpoint, ClientID: brokerClientID,
				ClientSecret: "wrong", AuthMethod: method})
			_, err := wrong.Validate(t.Context(), "active")
			if r := reasonOf(t, err, ErrUnavailable); r != ReasonUpstreamAuth {
				t.Errorf("reason %q", r)
			}
		})
	}
	if n := e.discHits.Load(); n != 0 {
		t.Errorf("%d discovery requests with a configured endpoint", n)
	}
}

func TestIntrospectionAudience(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	in := newTestIntrospector(t, IntrospectionConfig{Endpoint: e.issuer() + "/introspect", ClientID: brokerClientID,
		ClientSecret: brokerClientSecret, Audience: []string{"mqtt-broker"}})
	if _, err := in.Validate(t.Context(), "active-aud"); err != nil {
		t.Fatal(err)
	}
	_, err := in.Validate(t.Context(), "active")
	if r := reasonOf(t, err, ErrInvalidToken); r != ReasonAudienceMismatch {
		t.Errorf("reason %q", r)
	}
}

func TestIntrospectionUnreachable(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	issuer := e.issuer()
	e.srv.Close()
	in := newTestIntrospector(t, IntrospectionConfig{Issuer: issuer, ClientID: brokerClientID})
	if r := reasonOf(t, in.Ready(t.Context()), ErrUnavailable); r != ReasonNoEndpoint {
		t.Errorf("Ready reason %q", r)
	}
	_, err := in.Validate(t.Context(), "active")
	if r := reasonOf(t, err, ErrUnavailable); r != ReasonNoEndpoint {
		t.Errorf("reason %q", r)
	}
	direct := newTestIntrospector(t, IntrospectionConfig{Endpoint: issuer + "/introspect", ClientID: brokerClientID})
	_, err = direct.Validate(t.Context(), "active")
	if r := reasonOf(t, err, ErrUnavailable); r != ReasonUpstreamNetwork {
		t.Errorf("connection refused: reason %q", r)
	}
}

// TestIntrospectionConnectionPool checks that concurrent introspections queue behind MaxConns connections.
func TestIntrospectionConnectionPool(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	var inFlight, maxInFlight atomic.Int64
	release := make(chan struct{})
	e.setAnswer("held", func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		fmt.Fprint(w, `{"active":false}`)
	})
	in := newTestIntrospector(t, IntrospectionConfig{Endpoint: e.issuer() + "/introspect", ClientID: brokerClientID,
		ClientSecret: brokerClientSecret, MaxConns: 2, Timeout: 10 * time.Second})
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { in.Validate(t.Context(), "held") })
	}
	waitFor(t, "two requests at the endpoint", func() bool { return inFlight.Load() >= 2 })
	close(release)
	wg.Wait()
	if got := e.requests.Load(); got != 6 {
		t.Errorf("%d requests, want 6", got)
	}
	if got := maxInFlight.Load(); got > 2 {
		t.Errorf("%d concurrent requests with MaxConns 2", got)
	}
}

func TestIntrospectionConfigErrors(t *testing.T) {
	for name, cfg := range map[string]IntrospectionConfig{
		"no client":         {Endpoint: "http://127.0.0.1/introspect"},
		"no endpoint":       {ClientID: "c"},
		"check without iss": {ClientID: "c", Endpoint: "http://127.0.0.1/i", CheckIssuer: true},
		"bad auth method":   {ClientID: "c", Endpoint: "http://127.0.0.1/i", AuthMethod: "private_key_jwt"},
		"relative endpoint": {ClientID: "c", Endpoint: "/introspect"},
		"ftp discovery":     {ClientID: "c", Issuer: "x", DiscoveryURL: "ftp://x/"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewIntrospection(t.Context(), cfg); err == nil {
				t.Error("accepted")
			}
		})
	}
}
