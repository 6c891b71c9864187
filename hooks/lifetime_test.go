package hooks_test

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/broker"
	"imb/internal/issuer"
)

func (r *v5) reauth(t *testing.T, token string) *paho.AuthResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.c.Authenticate(ctx, &paho.Auth{
		ReasonCode: 0x19,
		Properties: &paho.AuthProperties{AuthMethod: "OAUTH2-JWT", AuthData: []byte(token)},
	})
	if err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	return resp
}

func TestExpiryDisconnectsWithin1s(t *testing.T) {
	e := newEnv(t)
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	tok := e.iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish", "exp": exp.Unix()}, 0)
	r := e.connect5("t1", tok, v5opts{clean: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	// A timer of the test's own, due at exp, measures how late this loaded machine
	// runs anything; the broker's lateness is judged beyond that.
	control := make(chan time.Duration, 1)
	time.AfterFunc(time.Until(exp), func() { control <- time.Since(exp) })
	code := r.expectDisconnect(t, time.Until(exp)+5*time.Second)
	late := time.Since(exp)
	if code != 0xA0 {
		t.Fatalf("DISCONNECT %#x, want 0xa0 (maximum connect time)", code)
	}
	machine := <-control
	if late < 0 || late-machine > time.Second {
		t.Fatalf("disconnected %s after exp (the machine's own timer: %s late), want within 1s", late, machine)
	}
	if len(e.audit.find("disconnect")) != 1 {
		t.Fatal("expiry disconnect not audited")
	}
}

func TestExpiryClosesV311(t *testing.T) {
	e := newEnv(t)
	exp := time.Now().Add(2 * time.Second)
	tok := e.iss.Mint(issuer.Claims{"sub": "t1", "exp": exp.Unix()}, 0)
	code, c := connect3(t, e.addr, "t1", tok, true)
	if code != 0 {
		t.Fatalf("connect %#x", code)
	}
	waitFor(t, "v3.1.1 connection closed at expiry", func() bool { return !c.IsConnectionOpen() })
	if time.Since(exp) > 2*time.Second {
		t.Fatalf("closed %s after exp", time.Since(exp))
	}
}

func TestReauthExtendsSession(t *testing.T) {
	e := newEnv(t)
	short := e.iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish", "exp": time.Now().Add(2 * time.Second).Unix()}, 0)
	r := e.connect5("t1", short, v5opts{clean: true, authMethod: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	resp := r.reauth(t, e.jwt("t1", "publish"))
	if !resp.Success || resp.ReasonCode != 0 {
		t.Fatalf("re-auth answer %+v, want AUTH 0x00", resp)
	}
	select {
	case d := <-r.discon:
		t.Fatalf("disconnected (%#x) although re-authenticated", d.ReasonCode)
	case <-time.After(3500 * time.Millisecond):
	}
	if got := r.publish(t, "things/t1/telemetry/x", 1, false, "still here"); got != 0 {
		t.Fatalf("publish after the first token's exp: %#x", got)
	}
	if len(e.audit.find("reauth")) != 1 {
		t.Fatal("re-authentication not audited")
	}
}

func TestReauthAsAnotherIdentityRefused(t *testing.T) {
	e := newEnv(t)
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, authMethod: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	resp := r.reauth(t, e.jwt("t2", "publish", "fleet:read"))
	if resp.Success || resp.ReasonCode != 0x87 {
		t.Fatalf("re-auth as t2: %+v, want DISCONNECT 0x87", resp)
	}
}

func TestReauthWithBadTokenRefused(t *testing.T) {
	e := newEnv(t)
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, authMethod: true})
	resp := r.reauth(t, "forged.token.value")
	if resp.Success || resp.ReasonCode != 0x87 {
		t.Fatalf("re-auth with a bad token: %+v, want DISCONNECT 0x87", resp)
	}
}

func TestReauthOnPasswordConnectionIsAProtocolError(t *testing.T) {
	e := newEnv(t)
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.ack.Properties != nil && r.ack.Properties.AuthMethod != "" {
		t.Fatalf("CONNACK of a password connection names method %q", r.ack.Properties.AuthMethod)
	}
	resp := r.reauth(t, e.jwt("t1", "publish"))
	if resp.Success || resp.ReasonCode != 0x82 {
		t.Fatalf("AUTH after a password CONNECT: %+v, want DISCONNECT 0x82", resp)
	}
}

func TestConnackNamesTheAuthenticationMethod(t *testing.T) {
	e := newEnv(t)
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true, authMethod: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.ack.Properties == nil || r.ack.Properties.AuthMethod != "OAUTH2-JWT" {
		t.Fatalf("CONNACK properties %+v, want Authentication Method OAUTH2-JWT (MQTT-4.12.0-5)", r.ack.Properties)
	}
}

func TestReauthNarrowerScopesDropsSubscriptions(t *testing.T) {
	e := newEnv(t)
	r := e.connect5("cloud-app", e.jwt("cloud-app", "fleet:read", "fleet:command"), v5opts{clean: true, authMethod: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.subscribe(t, "things/+/telemetry/#", 0)
	resp := r.reauth(t, e.jwt("cloud-app", "fleet:command"))
	if !resp.Success {
		t.Fatalf("re-auth: %+v", resp)
	}
	thing := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	thing.publish(t, "things/t1/telemetry/x", 1, false, "after")
	r.expectNoMsg(t, "things/t1/telemetry/x", 300*time.Millisecond)
	if len(e.audit.find("unsubscribed")) == 0 {
		t.Fatal("removed subscription not audited")
	}
}

func TestRevocationDisconnects(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.RevalidateInterval = 300 * time.Millisecond })
	tok := e.iss.MintOpaque(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
	r := e.connect5("t1", tok, v5opts{clean: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	// While the provider is merely down, the session goes on.
	_ = e.iss.SetMode(issuer.Down)
	select {
	case d := <-r.discon:
		t.Fatalf("disconnected (%#x) while the identity provider was only unreachable", d.ReasonCode)
	case <-time.After(time.Second):
	}
	_ = e.iss.SetMode(issuer.Healthy)
	e.iss.Revoke(tok)
	if code := r.expectDisconnect(t, 5*time.Second); code != 0x87 {
		t.Fatalf("DISCONNECT %#x, want 0x87", code)
	}
}

func TestPolicyReloadRevokesSubscription(t *testing.T) {
	e := newEnv(t)
	app := e.fleet(t)
	app.subscribe(t, "things/+/state", 1)
	app.subscribe(t, "things/+/telemetry/#", 1)
	thing := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	thing.publish(t, "things/t1/state", 1, false, "before")
	app.expectMsg(t, "things/t1/state")

	policy := withoutRule(testPolicy, "fleet-read") + `
  - name: fleet-read-telemetry-only
    effect: allow
    actions: [subscribe]
    topics: ["things/+/telemetry/#"]
    scopes: ["fleet:read"]
`
	writePolicy(t, e, policy)
	waitFor(t, "policy reload", func() bool { return len(e.audit.find("policy_reload")) > 0 })
	thing.publish(t, "things/t1/state", 1, false, "after")
	barrier(t, thing, app, "t1")
	app.expectNoMsg(t, "things/t1/state", 200*time.Millisecond)
	if got := app.subscribe(t, "things/+/state", 1); got != 0x87 {
		t.Fatalf("re-subscribe after reload: %#x, want 0x87", got)
	}
}

func TestInvalidPolicyReloadKeepsOldPolicy(t *testing.T) {
	e := newEnv(t)
	writePolicy(t, e, "version: 1\nrules:\n  - effect: allow\n    actions: [teleport]\n")
	if err := e.b.ReloadPolicy(); err == nil {
		t.Fatal("invalid policy accepted")
	}
	r := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	if got := r.publish(t, "things/t1/telemetry/x", 1, false, "x"); got != 0 {
		t.Fatalf("old policy not in force: %#x", got)
	}
}
