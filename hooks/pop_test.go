package hooks_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	jose "github.com/go-jose/go-jose/v4"

	"imb/broker"
	"imb/internal/issuer"
	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

// thingKey is a thing's key and the two ways a token names it in cnf.
type thingKey struct {
	key *sdk.Key
	jwk map[string]any // cnf.jwk as AM issues it: the public JWK with kid, use and alg
	jkt string         // cnf.jkt: its RFC 7638 thumbprint
}

func newThingKey(t *testing.T) thingKey {
	t.Helper()
	k, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(k.PublicJWK())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: k.Public()}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return thingKey{key: k, jwk: m, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

// boundJWT mints a JWT for sub bound to k by cnf.jwk.
func (e *env) boundJWT(sub string, k thingKey) string {
	return e.iss.Mint(issuer.Claims{"sub": sub, "scope": []string{"publish"}, "cnf": map[string]any{"jwk": k.jwk}}, time.Hour)
}

// recordingAuth is a PoP handler that keeps the proofs it sent, or sends a fixed one.
type recordingAuth struct {
	*sdkmqtt.PoPAuth
	mu     sync.Mutex
	proofs []string
	fixed  string // sent instead of a proof of its own
	empty  bool   // answer the nonce with no data
}

func (a *recordingAuth) Authenticate(in *paho.Auth) *paho.Auth {
	out := a.PoPAuth.Authenticate(in)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.empty:
		out.Properties.AuthData = nil
	case a.fixed != "":
		out.Properties.AuthData = []byte(a.fixed)
	}
	a.proofs = append(a.proofs, string(out.Properties.AuthData))
	return out
}

func (a *recordingAuth) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proofs[len(a.proofs)-1]
}

func popAuth(k thingKey, clientID string) *recordingAuth {
	return &recordingAuth{PoPAuth: sdkmqtt.NewPoPAuth(k.key, clientID, "imb")}
}

// TestPoPConnect: a key-bound token is accepted at CONNECT only with IMB-POP and a proof by its key over this
// connection's nonce, client id and the broker's audience; copied, it is refused everywhere else.
func TestPoPConnect(t *testing.T) {
	e := newEnv(t)
	k, other := newThingKey(t), newThingKey(t)

	// A proof from a connection that succeeded, to replay on another one.
	first := popAuth(k, "t-pop")
	r := e.connect5("t-pop", e.boundJWT("t-pop", k), v5opts{method: "IMB-POP", auther: first, clean: true})
	if r.code() != 0 {
		t.Fatalf("first connect: %d %v", r.code(), r.err)
	}
	if r.ack.Properties == nil || r.ack.Properties.AuthMethod != "IMB-POP" {
		t.Fatalf("CONNACK does not name IMB-POP: %+v", r.ack.Properties)
	}
	if code := r.publish(t, "things/t-pop/telemetry/x", 1, false, "hi"); code != 0 {
		t.Fatalf("publish after PoP connect: %#x", code)
	}
	captured := first.last()
	_ = r.c.Disconnect(&paho.Disconnect{})

	cases := []struct {
		name   string
		id     string // the client id, the token's subject
		token  func() string
		opts   func() v5opts
		want   int
		detail string // in the refusal's audit line
	}{
		{"cnf.jwk with its key", "t-1", func() string { return e.boundJWT("t-1", k) },
			func() v5opts { return v5opts{method: "IMB-POP", auther: popAuth(k, "t-1")} }, 0, ""},
		{"cnf.jkt with its key", "t-2", func() string {
			return e.iss.Mint(issuer.Claims{"sub": "t-2", "scope": []string{"publish"}, "cnf": map[string]any{"jkt": k.jkt}}, time.Hour)
		}, func() v5opts { return v5opts{method: "IMB-POP", auther: popAuth(k, "t-2")} }, 0, ""},
		{"introspected token, key in the introspection answer", "t-3", func() string {
			return e.iss.MintOpaque(issuer.Claims{"sub": "t-3", "scope": []string{"publish"}, "cnf": map[string]any{"jwk": k.jwk}}, time.Hour)
		}, func() v5opts { return v5opts{method: "IMB-POP", auther: popAuth(k, "t-3")} }, 0, ""},
		{"copied token as password", "t-4", func() string { return e.boundJWT("t-4", k) },
			func() v5opts { return v5opts{} }, 0x86, ""},
		{"copied token under OAUTH2-JWT", "t-5", func() string { return e.boundJWT("t-5", k) },
			func() v5opts { return v5opts{authMethod: true} }, 0x86, ""},
		{"copied introspected token as password", "t-6", func() string {
			return e.iss.MintOpaque(issuer.Claims{"sub": "t-6", "scope": []string{"publish"}, "cnf": map[string]any{"jkt": k.jkt}}, time.Hour)
		}, func() v5opts { return v5opts{} }, 0x86, ""},
		{"proof by another key", "t-7", func() string { return e.boundJWT("t-7", k) },
			func() v5opts { return v5opts{method: "IMB-POP", auther: popAuth(other, "t-7")} }, 0x86, "not the key the token is bound to"},
		{"cnf.jkt, proof by another key", "t-8", func() string {
			return e.iss.Mint(issuer.Claims{"sub": "t-8", "scope": []string{"publish"}, "cnf": map[string]any{"jkt": k.jkt}}, time.Hour)
		}, func() v5opts { return v5opts{method: "IMB-POP", auther: popAuth(other, "t-8")} }, 0x86, "not the key the token is bound to"},
		{"replayed proof of another connection", "t-pop", func() string { return e.boundJWT("t-pop", k) },
			func() v5opts {
				a := popAuth(k, "t-pop")
				a.fixed = captured
				return v5opts{method: "IMB-POP", auther: a, clean: true}
			}, 0x86, "nonce"},
		{"proof for another client id", "t-9", func() string { return e.boundJWT("t-9", k) },
			func() v5opts { return v5opts{method: "IMB-POP", auther: popAuth(k, "t-other")} }, 0x86, "client id"},
		{"proof for another broker", "t-10", func() string { return e.boundJWT("t-10", k) },
			func() v5opts {
				a := popAuth(k, "t-10")
				a.Audience = "another-broker"
				return v5opts{method: "IMB-POP", auther: a}
			}, 0x86, "aud"},
		{"proof of a made-up nonce", "t-11", func() string { return e.boundJWT("t-11", k) },
			func() v5opts {
				a := popAuth(k, "t-11")
				a.Mutate = func(c *sdk.PoPClaims) { c.Nonce = "AAAA" }
				return v5opts{method: "IMB-POP", auther: a}
			}, 0x86, "nonce"},
		{"no proof", "t-12", func() string { return e.boundJWT("t-12", k) },
			func() v5opts {
				a := popAuth(k, "t-12")
				a.empty = true
				return v5opts{method: "IMB-POP", auther: a}
			}, 0x86, "not a compact JWS"},
		{"bearer token under IMB-POP", "t-13", func() string { return e.jwt("t-13", "publish") },
			func() v5opts { return v5opts{method: "IMB-POP", auther: popAuth(k, "t-13")} }, 0x86, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts()
			tok := c.token()
			clientID := c.id
			r := e.connect5(clientID, tok, o)
			if r.code() != c.want {
				t.Fatalf("CONNACK %#x (%v), want %#x", r.code(), r.err, c.want)
			}
			if c.want == 0 {
				_ = r.c.Disconnect(&paho.Disconnect{})
				return
			}
			if c.detail != "" {
				waitFor(t, "refusal audit line", func() bool {
					for _, l := range e.audit.find("connect_refused") {
						if l["client_id"] == clientID && strings.Contains(l["detail"], c.detail) {
							return true
						}
					}
					return false
				})
			}
		})
	}
}

// TestPoPReauth: re-authentication under IMB-POP takes a fresh nonce and proof each time; a replayed proof,
// another key, a bearer token or another method end the session.
func TestPoPReauth(t *testing.T) {
	e := newEnv(t)
	k, other := newThingKey(t), newThingKey(t)
	reauth := func(r *v5, method, token string) *paho.AuthResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := r.c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
			Properties: &paho.AuthProperties{AuthMethod: method, AuthData: []byte(token)}})
		if err != nil {
			t.Fatalf("re-authenticate: %v", err)
		}
		return resp
	}
	connect := func(id string) (*v5, *recordingAuth) {
		t.Helper()
		a := popAuth(k, id)
		r := e.connect5(id, e.boundJWT(id, k), v5opts{method: "IMB-POP", auther: a})
		if r.code() != 0 {
			t.Fatalf("connect %s: %#x %v", id, r.code(), r.err)
		}
		return r, a
	}

	t.Run("fresh proof", func(t *testing.T) {
		r, a := connect("r-1")
		for i := range 2 {
			if resp := reauth(r, "IMB-POP", e.boundJWT("r-1", k)); !resp.Success {
				t.Fatalf("re-auth %d refused: %#x", i, resp.ReasonCode)
			}
		}
		if n := len(a.proofs); n != 3 {
			t.Fatalf("%d proofs sent, want 3 (CONNECT and two re-authentications)", n)
		}
		if a.proofs[1] == a.proofs[2] {
			t.Fatal("two re-authentications signed the same nonce")
		}
		waitFor(t, "reauth audit", func() bool {
			for _, l := range e.audit.find("reauth") {
				if l["client_id"] == "r-1" && l["bound"] == "key" {
					return true
				}
			}
			return false
		})
		if code := r.publish(t, "things/r-1/telemetry/x", 1, false, "hi"); code != 0 {
			t.Fatalf("publish after re-auth: %#x", code)
		}
	})
	fails := []struct {
		name   string
		method string
		token  func() string
		arm    func(a *recordingAuth)
		want   byte
	}{
		{"another key", "IMB-POP", func() string { return e.boundJWT("r-2", k) },
			func(a *recordingAuth) { a.Key = other.key }, 0x87},
		{"replayed proof", "IMB-POP", func() string { return e.boundJWT("r-3", k) },
			func(a *recordingAuth) { a.fixed = a.last() }, 0x87},
		{"bearer token", "IMB-POP", func() string { return e.jwt("r-4", "publish") }, nil, 0x87},
		{"other method", "OAUTH2-JWT", func() string { return e.boundJWT("r-5", k) }, nil, 0x8c},
	}
	for i, c := range fails {
		t.Run(c.name, func(t *testing.T) {
			id := "r-" + string(rune('2'+i))
			r, a := connect(id)
			if c.arm != nil {
				c.arm(a)
			}
			resp := reauth(r, c.method, c.token())
			if resp.Success || resp.ReasonCode != c.want {
				t.Fatalf("re-auth answered success=%v %#x, want DISCONNECT %#x", resp.Success, resp.ReasonCode, c.want)
			}
		})
	}
}

// TestRequireBoundToken: an identity class the policy marks require_bound_token (a rule's scopes, a limit
// entry's subjects) connects only with a proven bound token; its bearer token gets 0x87 and an audit line
// naming the rule.
func TestRequireBoundToken(t *testing.T) {
	e := newEnv(t)
	writePolicy(t, e, testPolicy+`  - name: fleet-bound
    effect: allow
    actions: [subscribe]
    topics: ["fleet/bound"]
    scopes: ["fleet:read"]
    require_bound_token: true
limits:
  - name: secure-things
    subjects: ["secure-*"]
    require_bound_token: true
`)
	if err := e.b.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
	k := newThingKey(t)
	cases := []struct {
		name, id, token string
		opts            v5opts
		want            int
		rule            string // named in the refusal's audit line
	}{
		{"rule's scope, bearer", "app-1", e.jwt("app-1", "fleet:read"), v5opts{}, 0x87, "fleet-bound"},
		{"limit entry's subject, bearer", "secure-1", e.jwt("secure-1", "publish"), v5opts{}, 0x87, "secure-things"},
		{"limit entry's subject, bearer under OAUTH2-JWT", "secure-2", e.jwt("secure-2", "publish"), v5opts{authMethod: true}, 0x87, "secure-things"},
		{"limit entry's subject, proven key", "secure-3", e.boundJWT("secure-3", k), v5opts{method: "IMB-POP", auther: popAuth(k, "secure-3")}, 0, ""},
		{"rule's scope, proven key", "app-2", e.iss.Mint(issuer.Claims{"sub": "app-2", "scope": []string{"fleet:read"}, "cnf": map[string]any{"jkt": k.jkt}}, time.Hour),
			v5opts{method: "IMB-POP", auther: popAuth(k, "app-2")}, 0, ""},
		{"not selected, bearer", "plain-1", e.jwt("plain-1", "publish"), v5opts{}, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.connect5(c.id, c.token, c.opts)
			if r.code() != c.want {
				t.Fatalf("CONNACK %#x (%v), want %#x", r.code(), r.err, c.want)
			}
			if c.want == 0 {
				_ = r.c.Disconnect(&paho.Disconnect{})
				return
			}
			waitFor(t, "refusal audit line", func() bool {
				for _, l := range e.audit.find("connect_refused") {
					if l["client_id"] == c.id && strings.Contains(l["detail"], c.rule) && strings.Contains(l["detail"], "require_bound_token") {
						return true
					}
				}
				return false
			})
		})
	}
}

// TestPoPAudienceConfigured: with pop_audience set, a proof must name exactly it; the token's own aud no longer
// does.
func TestPoPAudienceConfigured(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.PoPAudience = "mqtts://broker.example" })
	k := newThingKey(t)
	for _, c := range []struct {
		aud  string
		want int
	}{{"mqtts://broker.example", 0}, {"imb", 0x86}, {"", 0x86}} {
		a := popAuth(k, "aud-1")
		a.Audience = c.aud
		r := e.connect5("aud-1", e.boundJWT("aud-1", k), v5opts{method: "IMB-POP", auther: a, clean: true})
		if r.code() != c.want {
			t.Fatalf("proof aud %q: CONNACK %#x (%v), want %#x", c.aud, r.code(), r.err, c.want)
		}
		if c.want == 0 {
			_ = r.c.Disconnect(&paho.Disconnect{})
			waitFor(t, "disconnect", func() bool { return e.b.Server().Clients.Len() == 0 })
		}
	}
}
