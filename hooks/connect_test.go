package hooks_test

import (
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"imb/broker"
	"imb/internal/issuer"
)

func TestConnectReasonCodesV5(t *testing.T) {
	e := newEnv(t)
	good := e.jwt("t1", "publish", "subscribe")
	expired := e.iss.Mint(issuer.Claims{"sub": "t1", "exp": time.Now().Add(-time.Minute).Unix()}, time.Hour)
	wrongIss := e.iss.Mint(issuer.Claims{"sub": "t1", "iss": "https://elsewhere.example"}, time.Hour)
	wrongAud := e.iss.Mint(issuer.Claims{"sub": "t1", "aud": "someone-else"}, time.Hour)
	tampered := good[:len(good)-4] + "AAAA"
	opaque := e.iss.MintOpaque(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
	inactive := e.iss.MintOpaque(issuer.Claims{"sub": "t1"}, time.Hour)
	e.iss.Revoke(inactive)
	refresh := e.iss.MintRefresh(issuer.Claims{"sub": "t1", "scope": "publish"}, 7*24*time.Hour)

	cases := []struct {
		name     string
		clientID string
		token    string
		opts     v5opts
		want     int
	}{
		{"valid JWT as password", "t1", good, v5opts{clean: true}, 0x00},
		{"valid JWT as OAUTH2-JWT auth data", "t1", good, v5opts{clean: true, authMethod: true}, 0x00},
		{"valid opaque token (introspected)", "t1", opaque, v5opts{clean: true}, 0x00},
		{"no token", "t1", "", v5opts{clean: true}, 0x86},
		{"garbage token", "t1", "not-a-token", v5opts{clean: true}, 0x86},
		{"expired", "t1", expired, v5opts{clean: true}, 0x86},
		{"wrong issuer", "t1", wrongIss, v5opts{clean: true}, 0x86},
		{"wrong audience", "t1", wrongAud, v5opts{clean: true}, 0x86},
		{"tampered signature", "t1", tampered, v5opts{clean: true}, 0x86},
		{"inactive at introspection", "t1", inactive, v5opts{clean: true}, 0x86},
		{"refresh token as password", "t1", refresh, v5opts{clean: true}, 0x86},
		{"refresh token as OAUTH2-JWT auth data", "t1", refresh, v5opts{clean: true, authMethod: true}, 0x86},
		{"client id of another thing", "t2", good, v5opts{clean: true}, 0x87},
		{"username of another thing is fine without require_username", "t1", good, v5opts{clean: true, user: "t9"}, 0x00},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.connect5(c.clientID, c.token, c.opts)
			if got := r.code(); got != c.want {
				t.Fatalf("CONNACK = %#x, want %#x (err %v)", got, c.want, r.err)
			}
			if r.err == nil {
				_ = r.c.Disconnect(&paho.Disconnect{})
			}
		})
	}
}

func TestConnectUnknownAuthMethod(t *testing.T) {
	e := newEnv(t)
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, method: "SCRAM-SHA-1"})
	if r.code() != 0x8C {
		t.Fatalf("CONNACK = %#x, want 0x8c (err %v)", r.code(), r.err)
	}
}

func TestConnectIdentityProviderDownAndBack(t *testing.T) {
	e := newEnv(t)
	for _, mode := range []issuer.Mode{issuer.Down, issuer.Error500, issuer.Garbage, issuer.Slow} {
		// A fresh token per mode: an accepted one is cached, and rightly so.
		opaque := e.iss.MintOpaque(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
		if err := e.iss.SetMode(mode); err != nil {
			t.Fatal(err)
		}
		r := e.connect5("t1", opaque, v5opts{clean: true})
		if r.code() != 0x88 {
			t.Fatalf("mode %d: CONNACK = %#x, want 0x88 (fail closed)", mode, r.code())
		}
		if err := e.iss.SetMode(issuer.Healthy); err != nil {
			t.Fatal(err)
		}
		// Recovery without a restart: an unavailable answer is never cached. A
		// validation still in flight when the provider recovers may answer one more
		// 0x88 (concurrent validations of a token share one upstream call), so the
		// client retries as a real one would.
		deadline := time.Now().Add(10 * time.Second)
		for {
			r = e.connect5("t1", opaque, v5opts{clean: true})
			if r.code() == 0 {
				_ = r.c.Disconnect(&paho.Disconnect{})
				break
			}
			if r.code() != 0x88 || time.Now().After(deadline) {
				t.Fatalf("after mode %d recovered: CONNACK = %#x, want success", mode, r.code())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func TestConnectAssignsThingIDToEmptyClientID(t *testing.T) {
	e := newEnv(t)
	r := e.connect5("", e.jwt("t1", "publish"), v5opts{clean: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.ack.Properties == nil || r.ack.Properties.AssignedClientID != "t1" {
		t.Fatalf("assigned client id = %+v, want t1", r.ack.Properties)
	}
}

func TestConnectClientIDBindingPattern(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.ClientIDBinding = []string{"{sub}", "{sub}:*"} })
	tok := e.jwt("t1", "publish")
	for id, want := range map[string]int{"t1": 0, "t1:worker-2": 0, "t1:": 0x87, "t10": 0x87, "x-t1": 0x87} {
		r := e.connect5(id, tok, v5opts{clean: true})
		if r.code() != want {
			t.Errorf("client id %q: CONNACK %#x, want %#x", id, r.code(), want)
		}
		if r.err == nil {
			_ = r.c.Disconnect(&paho.Disconnect{})
		}
	}
}

func TestConnectRequireUsername(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.RequireUsername = true })
	tok := e.jwt("t1", "publish")
	if r := e.connect5("t1", tok, v5opts{clean: true, user: "t2"}); r.code() != 0x87 {
		t.Fatalf("foreign username: CONNACK %#x, want 0x87", r.code())
	}
	if r := e.connect5("t1", tok, v5opts{clean: true, user: "t1"}); r.code() != 0 {
		t.Fatalf("own username: CONNACK %#x, want success", r.code())
	}
}

func TestConnectReasonCodesV311(t *testing.T) {
	e := newEnv(t)
	good := e.jwt("t1", "publish")
	opaque := e.iss.MintOpaque(issuer.Claims{"sub": "t1"}, time.Hour)
	cases := []struct {
		name, clientID, token string
		down                  bool
		want                  byte
	}{
		{"accepted", "t1", good, false, 0x00},
		{"bad token", "t1", "garbage", false, 0x04},
		{"not authorized", "t2", good, false, 0x05},
		{"identity provider down", "t1", opaque, true, 0x03},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.down {
				_ = e.iss.SetMode(issuer.Down)
				defer func() { _ = e.iss.SetMode(issuer.Healthy) }()
			}
			code, cl := connect3(t, e.addr, c.clientID, c.token, true)
			if code != c.want {
				t.Fatalf("CONNACK = %#x, want %#x", code, c.want)
			}
			if cl != nil {
				cl.Disconnect(100)
			}
		})
	}
}

// connect3 connects with MQTT 3.1.1 (paho.mqtt.golang) and returns the CONNACK
// return code.
func connect3(t *testing.T, addr, clientID, token string, clean bool) (byte, mqtt3.Client) {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetUsername(clientID).SetPassword(token).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4).
		SetConnectTimeout(10 * time.Second)
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		t.Fatal("v3 connect timed out")
	}
	ct := tok.(*mqtt3.ConnectToken)
	if tok.Error() != nil {
		return ct.ReturnCode(), nil
	}
	return ct.ReturnCode(), c
}

func TestAuditLogNeverHoldsTokens(t *testing.T) {
	e := newEnv(t)
	good := e.jwt("t1", "publish")
	r := e.connect5("t1", good, v5opts{clean: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	_ = e.connect5("t2", good, v5opts{clean: true}) // refused: binding
	_ = e.connect5("t1", good+"x", v5opts{clean: true})
	lines := e.audit.all()
	if len(e.audit.find("connect")) == 0 || len(e.audit.find("connect_refused")) < 2 {
		t.Fatalf("audit lines missing: %v", lines)
	}
	sig := good[strings.LastIndexByte(good, '.')+1:]
	for _, l := range lines {
		for k, v := range l {
			if strings.Contains(v, sig) || strings.Contains(v, good[:40]) {
				t.Fatalf("audit line holds the token in %s: %v", k, l)
			}
		}
	}
}

func TestAnonymousSection(t *testing.T) {
	withAnon := testPolicy + `anonymous:
  - name: public-read
    effect: allow
    actions: [subscribe]
    topics: ["public/#"]
`
	e := newEnv(t)
	if r := e.connect5("visitor", "", v5opts{clean: true}); r.code() != 0x86 {
		t.Fatalf("without an anonymous section: CONNACK %#x, want 0x86", r.code())
	}
	writePolicy(t, e, withAnon)
	if err := e.b.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
	r := e.connect5("visitor", "", v5opts{clean: true})
	if r.code() != 0 {
		t.Fatalf("anonymous: CONNACK %#x (%v)", r.code(), r.err)
	}
	if got := r.subscribe(t, "public/news", 0); got != 0 {
		t.Fatalf("anonymous subscribe public/news: %#x", got)
	}
	if got := r.subscribe(t, "things/+/telemetry/#", 0); got != 0x87 {
		t.Fatalf("anonymous subscribe telemetry: %#x", got)
	}
	if got := r.publish(t, "public/news", 1, false, "x"); got != 0x87 {
		t.Fatalf("anonymous publish: %#x", got)
	}
}

func TestAnonymousCannotWipeAThingsSession(t *testing.T) {
	e := newEnv(t)
	writePolicy(t, e, testPolicy+"anonymous:\n  - effect: allow\n    actions: [subscribe]\n    topics: [\"public/#\"]\n")
	if err := e.b.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
	r := e.connect5("t1", e.jwt("t1", "subscribe"), v5opts{expiry: 3600})
	r.subscribe(t, "things/t1/commands/#", 1)
	_ = r.c.Disconnect(&paho.Disconnect{})
	waitFor(t, "t1 offline", func() bool {
		cl, ok := e.b.Server().Clients.Get("t1")
		return ok && cl.Closed()
	})
	if a := e.connect5("t1", "", v5opts{clean: true}); a.code() != 0x87 {
		t.Fatalf("anonymous client on a thing's client id: CONNACK %#x, want 0x87", a.code())
	}
	back := e.connect5("t1", e.jwt("t1", "subscribe"), v5opts{expiry: 3600})
	if back.err != nil || !back.ack.SessionPresent {
		t.Fatalf("the thing's session did not survive: %v", back.err)
	}
}
