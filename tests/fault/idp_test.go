package fault

import (
	"fmt"
	"testing"
	"time"

	"imb/broker"
	"imb/internal/issuer"
)

// faultModes are the ways the identity provider fails.
func faultModes() []struct {
	name string
	mode issuer.Mode
} {
	return []struct {
		name string
		mode issuer.Mode
	}{
		{"down", issuer.Down},
		{"slow past the timeout", issuer.Slow},
		{"answering 500", issuer.Error500},
		{"answering garbage", issuer.Garbage},
	}
}

// TestIdentityProviderFaults: while the provider fails, new connects whose token
// needs it get 0x88 (v3.1.1 0x03), connected sessions go on until their own tokens
// expire (revalidation failures are not verdicts), and when it recovers new connects
// succeed without a restart.
func TestIdentityProviderFaults(t *testing.T) {
	for _, fm := range faultModes() {
		t.Run(fm.name, func(t *testing.T) {
			t.Parallel()
			iss := startIssuer(t)
			b := startBroker(t, iss)
			addr := b.Addr("tcp")

			app := dial(t, addr, "cloud-app", iss.Mint(issuer.Claims{"sub": "cloud-app", "scope": []string{"fleet:read"}}, time.Hour), true, 0)
			if app.err != nil {
				t.Fatal(app.err)
			}
			app.subscribe(t, "things/+/telemetry/#")
			// An introspected session whose token ends soon: it is revalidated every
			// 300 ms, and each revalidation fails while the provider does.
			// exp is a NumericDate in whole seconds: truncate so that the test's
			// clock and the token's agree.
			exp := time.Now().Add(7 * time.Second).Truncate(time.Second)
			thing := dial(t, addr, "t1", iss.MintOpaque(issuer.Claims{"sub": "t1", "scope": "publish", "exp": exp.Unix()}, 0), true, 0)
			if thing.err != nil {
				t.Fatal(thing.err)
			}

			if err := iss.SetMode(fm.mode); err != nil {
				t.Fatal(err)
			}
			refused := iss.MintOpaque(issuer.Claims{"sub": "t2", "scope": "publish"}, time.Hour)
			if c := dial(t, addr, "t2", refused, true, 0); c.code() != 0x88 {
				t.Errorf("new v5 connect while the provider is %s: CONNACK %#x, want 0x88", fm.name, c.code())
			}
			if rc := connect3(t, addr, "t3", iss.MintOpaque(issuer.Claims{"sub": "t3"}, time.Hour)); rc != 0x03 {
				t.Errorf("new v3.1.1 connect while the provider is %s: CONNACK %#x, want 0x03", fm.name, rc)
			}
			// A JWT of the provider is judged with the keys already loaded.
			if c := dial(t, addr, "t4", iss.Mint(issuer.Claims{"sub": "t4", "scope": []string{"publish"}}, time.Hour), true, 0); c.code() != 0 {
				t.Errorf("JWT with a known key while the provider is %s: CONNACK %#x, want 0x00 (local validation)", fm.name, c.code())
			}

			// The established session keeps publishing until its token expires.
			sent := 0
			for time.Until(exp) > 700*time.Millisecond {
				select {
				case d := <-thing.discon:
					t.Fatalf("session ended %s before its token expired, DISCONNECT %#x", time.Until(exp), d.ReasonCode)
				default:
				}
				payload := fmt.Sprintf("m%d", sent)
				if !thing.publish("things/t1/telemetry/seq", payload) {
					t.Fatalf("publish %s refused while the token was valid", payload)
				}
				sent++
				time.Sleep(100 * time.Millisecond)
			}
			waitFor(t, "every message at the fleet app", 10*time.Second, func() bool {
				for i := 0; i < sent; i++ {
					if app.received(fmt.Sprintf("m%d", i)) == 0 {
						return false
					}
				}
				return true
			})
			select {
			case d := <-thing.discon:
				if d.ReasonCode != 0xA0 {
					t.Errorf("DISCONNECT %#x at expiry, want 0xa0", d.ReasonCode)
				}
				if early := time.Until(exp); early > time.Second {
					t.Errorf("disconnected %s before exp", early)
				}
			case <-time.After(time.Until(exp) + 5*time.Second):
				t.Fatal("no DISCONNECT at token expiry")
			}

			// Recovery without a restart: the refused token (an unavailable answer is
			// never cached) and a new one are both accepted.
			if err := iss.SetMode(issuer.Healthy); err != nil {
				t.Fatal(err)
			}
			for _, tok := range []string{refused, iss.MintOpaque(issuer.Claims{"sub": "t2", "scope": "publish"}, time.Hour)} {
				c := dial(t, addr, "t2", tok, true, 0)
				if c.code() != 0 {
					t.Fatalf("after recovery: CONNACK %#x, want 0x00", c.code())
				}
				c.close()
			}
			t.Logf("provider %s: 0x88 for new connects, %d messages from the established session, 0xA0 at expiry, recovered", fm.name, sent)
		})
	}
}

// TestBrokerStartsWhileProviderFails: a broker that could not load any key at
// start answers 0x88 (never 0x86: nothing is known to be wrong with the token) and
// picks the keys up in the background once the provider answers.
func TestBrokerStartsWhileProviderFails(t *testing.T) {
	for _, fm := range faultModes() {
		if fm.mode == issuer.Slow {
			continue // the same failure as down, only later: covered above
		}
		t.Run(fm.name, func(t *testing.T) {
			t.Parallel()
			iss := startIssuer(t)
			if err := iss.SetMode(fm.mode); err != nil {
				t.Fatal(err)
			}
			b := startBroker(t, iss, func(c *broker.Config) { c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", "" })
			tok := iss.Mint(issuer.Claims{"sub": "t1", "scope": []string{"publish"}}, time.Hour)
			if c := dial(t, b.Addr("tcp"), "t1", tok, true, 0); c.code() != 0x88 {
				t.Fatalf("no keys loaded: CONNACK %#x, want 0x88", c.code())
			}
			if err := iss.SetMode(issuer.Healthy); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a connect accepted after the provider recovered", 30*time.Second, func() bool {
				c := dial(t, b.Addr("tcp"), "t1", tok, true, 0)
				defer c.close()
				return c.code() == 0
			})
		})
	}
}

// TestRotatedKeyWhileProviderDown: the provider has rotated its signing key and is
// then unreachable. A token signed with the new key cannot be checked; that is the
// provider's unavailability (0x88, retry later), not a bad token (0x86, give up).
func TestRotatedKeyWhileProviderDown(t *testing.T) {
	iss := startIssuer(t)
	b := startBroker(t, iss)
	if err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	tok := iss.Mint(issuer.Claims{"sub": "t1", "scope": []string{"publish"}}, time.Hour)
	if err := iss.SetMode(issuer.Down); err != nil {
		t.Fatal(err)
	}
	if c := dial(t, b.Addr("tcp"), "t1", tok, true, 0); c.code() != 0x88 {
		t.Errorf("token under a key the broker has not seen, provider down: CONNACK %#x, want 0x88", c.code())
	}
}
