package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// inbox collects payloads delivered to a subscriber.
type inbox struct {
	mu   sync.Mutex
	seen map[string]bool
	ch   chan string
}

func newInbox() *inbox { return &inbox{seen: map[string]bool{}, ch: make(chan string, 1024)} }

func (b *inbox) add(payload string) {
	b.mu.Lock()
	first := !b.seen[payload]
	b.seen[payload] = true
	b.mu.Unlock()
	if first {
		b.ch <- payload
	}
}

// waitFor waits until every payload in want has arrived.
func (b *inbox) waitFor(t *testing.T, want []string) {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		b.mu.Lock()
		missing := 0
		for _, w := range want {
			if !b.seen[w] {
				missing++
			}
		}
		b.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-b.ch:
		case <-deadline:
			t.Fatalf("%d of %d messages never arrived", missing, len(want))
		}
	}
}

func (b *inbox) v5Config() paho.ClientConfig {
	return paho.ClientConfig{OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { b.add(string(pr.Packet.Payload)); return true, nil },
	}}
}

func dialV5(t *testing.T, d *sdkmqtt.Dialer, url string, cfg paho.ClientConfig) *sdkmqtt.Conn5 {
	t.Helper()
	c, err := d.DialV5(testContext(t), url, cfg)
	if err != nil {
		t.Fatalf("DialV5 %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func subscribeV5(t *testing.T, c *sdkmqtt.Conn5, topic string) {
	t.Helper()
	if _, err := c.Client.Subscribe(testContext(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
}

func TestTransportsAndVersions(t *testing.T) {
	b := startBroker(t)
	for _, tr := range []struct{ name, url string }{{"tcp", b.tcp}, {"tls", b.tls}, {"websocket", b.ws}} {
		for _, authMethod := range []string{"", sdkmqtt.AuthMethodJWT} {
			t.Run(fmt.Sprintf("v5 %s method=%q", tr.name, authMethod), func(t *testing.T) {
				box := newInbox()
				d := &sdkmqtt.Dialer{Tokens: &mintingSource{hook: b.hook, life: time.Hour}, Username: "thing-1",
					ClientID: "v5-" + tr.name + authMethod, AuthMethod: authMethod, TLSConfig: b.clientTLS}
				c := dialV5(t, d, tr.url, box.v5Config())
				subscribeV5(t, c, "things/thing-1/state")
				if _, err := c.Client.Publish(testContext(t), &paho.Publish{Topic: "things/thing-1/state", QoS: 1, Payload: []byte("on")}); err != nil {
					t.Fatal(err)
				}
				box.waitFor(t, []string{"on"})
			})
		}
		t.Run("v3.1.1 "+tr.name, func(t *testing.T) {
			box := newInbox()
			d := &sdkmqtt.Dialer{Tokens: &mintingSource{hook: b.hook, life: time.Hour}, Username: "thing-3", TLSConfig: b.clientTLS}
			opts := pahov3.NewClientOptions().SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { box.add(string(m.Payload())) })
			c, err := d.DialV311(testContext(t), tr.url, opts)
			if err != nil {
				t.Fatalf("DialV311: %v", err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			if tok := c.Client.Subscribe("things/thing-3/state", 1, nil); !tok.WaitTimeout(waitLong) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			if err := c.Publish(testContext(t), "things/thing-3/state", 1, false, []byte("off")); err != nil {
				t.Fatal(err)
			}
			box.waitFor(t, []string{"off"})
		})
	}
}

func TestRefusalsAreTyped(t *testing.T) {
	b := startBroker(t)
	tests := []struct {
		name       string
		tokens     sdk.TokenSource
		authMethod string
		want       error
	}{
		{"bad token", forgingSource{}, "", sdkmqtt.ErrBadToken},
		{"bad token in auth data", forgingSource{}, sdkmqtt.AuthMethodJWT, sdkmqtt.ErrBadToken},
		{"not authorized", &mintingSource{hook: b.hook, life: time.Hour, prefix: tokenNotAuthorized}, "", sdkmqtt.ErrNotAuthorized},
		{"server unavailable", &mintingSource{hook: b.hook, life: time.Hour, prefix: tokenUnavailable}, "", sdkmqtt.ErrServerUnavailable},
		{"bad auth method", &mintingSource{hook: b.hook, life: time.Hour}, "SCRAM-SHA-1", sdkmqtt.ErrBadAuthMethod},
	}
	for _, tt := range tests {
		t.Run("v5 "+tt.name, func(t *testing.T) {
			d := &sdkmqtt.Dialer{Tokens: tt.tokens, Username: "thing-r", ClientID: "refused", AuthMethod: tt.authMethod}
			_, err := d.DialV5(testContext(t), b.tcp, paho.ClientConfig{})
			var re *sdkmqtt.ReasonError
			if !errors.Is(err, tt.want) || !errors.As(err, &re) || re.Packet != "CONNACK" {
				t.Fatalf("err %v, want %v in a CONNACK", err, tt.want)
			}
		})
		if tt.authMethod != "" {
			continue
		}
		t.Run("v3.1.1 "+tt.name, func(t *testing.T) {
			d := &sdkmqtt.Dialer{Tokens: tt.tokens, Username: "thing-r"}
			_, err := d.DialV311(testContext(t), b.tcp, pahov3.NewClientOptions().SetAutoReconnect(false))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

// An MQTT 5 session outlives two token lifetimes by re-authenticating in the session, with every
// QoS 1 message of a publisher that runs across the renewals delivered.
func TestV5SessionOutlivesTokensByReauthentication(t *testing.T) {
	b := startBroker(t)
	box := newInbox()
	sub := dialV5(t, &sdkmqtt.Dialer{Tokens: &mintingSource{hook: b.hook, life: time.Hour}, Username: "app", ClientID: "app"},
		b.tcp, box.v5Config())
	subscribeV5(t, sub, "things/+/telemetry")

	const life = 4 * time.Second
	pub := dialV5(t, &sdkmqtt.Dialer{Tokens: &mintingSource{hook: b.hook, life: life}, Username: "thermostat",
		ClientID: "thermostat", AuthMethod: sdkmqtt.AuthMethodJWT}, b.tcp, paho.ClientConfig{})
	first := pub.Token()

	var sent []string
	reauths := 0
	deadline := time.After(4 * waitLong)
	for i := 0; reauths < 2; i++ {
		select {
		case id := <-b.hook.reauths:
			if id == "thermostat" {
				reauths++
			}
		case id := <-b.hook.expired:
			t.Fatalf("session of %s expired: the token was not renewed in time", id)
		case <-deadline:
			t.Fatalf("only %d re-authentications", reauths)
		case <-time.After(50 * time.Millisecond):
		}
		payload := strconv.Itoa(i)
		if _, err := pub.Client.Publish(testContext(t), &paho.Publish{Topic: "things/thermostat/telemetry", QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		sent = append(sent, payload)
	}
	box.waitFor(t, sent)
	if n := b.hook.connectCount("thermostat"); n != 1 {
		t.Fatalf("%d connections: re-authentication must keep the one session", n)
	}
	if pub.Token().AccessToken == first.AccessToken || pub.Err() != nil {
		t.Fatalf("token not renewed or error %v", pub.Err())
	}
}

func TestV5ReauthenticationRefused(t *testing.T) {
	b := startBroker(t)
	src := &mintingSource{hook: b.hook, life: time.Hour}
	c := dialV5(t, &sdkmqtt.Dialer{Tokens: src, ClientID: "revoked", AuthMethod: sdkmqtt.AuthMethodJWT}, b.tcp, paho.ClientConfig{})
	if err := c.Reauthenticate(testContext(t)); err != nil {
		t.Fatalf("re-authentication with a good token: %v", err)
	}
	src.setPrefix(tokenNotAuthorized)
	err := c.Reauthenticate(testContext(t))
	if !errors.Is(err, sdkmqtt.ErrNotAuthorized) {
		t.Fatalf("err %v, want ErrNotAuthorized", err)
	}
	select {
	case <-c.Done():
	case <-time.After(waitLong):
		t.Fatal("connection still up after DISCONNECT")
	}
	if !errors.Is(c.Err(), sdkmqtt.ErrNotAuthorized) {
		t.Fatalf("Err() = %v", c.Err())
	}
}

// With a password (no authentication method) MQTT 5 cannot re-authenticate: the broker ends the
// session when the token expires, and Err says so.
func TestV5PasswordSessionEndsAtExpiry(t *testing.T) {
	b := startBroker(t)
	c := dialV5(t, &sdkmqtt.Dialer{Tokens: &mintingSource{hook: b.hook, life: time.Second}, ClientID: "short"}, b.tcp, paho.ClientConfig{})
	select {
	case <-c.Done():
	case <-time.After(waitLong):
		t.Fatal("session not ended at expiry")
	}
	if !errors.Is(c.Err(), sdkmqtt.ErrMaxConnectTime) {
		t.Fatalf("Err() = %v, want ErrMaxConnectTime", c.Err())
	}
}

// An MQTT 3.1.1 session outlives two token lifetimes by reconnecting with renewed tokens; its
// persistent session receives every QoS 1 message published meanwhile.
func TestV311SessionOutlivesTokensByReconnecting(t *testing.T) {
	b := startBroker(t)
	box := newInbox()
	const life = 6 * time.Second
	d := &sdkmqtt.Dialer{Tokens: &mintingSource{hook: b.hook, life: life}, Username: "thermostat-3", Persistent: true}
	opts := pahov3.NewClientOptions().SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { box.add(string(m.Payload())) })
	sub, err := d.DialV311(testContext(t), b.tcp, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close(context.Background()) })
	if tok := sub.Client.Subscribe("things/thermostat-3/commands/#", 1, nil); !tok.WaitTimeout(waitLong) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := dialV5(t, &sdkmqtt.Dialer{Tokens: &mintingSource{hook: b.hook, life: time.Hour}, ClientID: "cloud-app"}, b.tcp, paho.ClientConfig{})

	var sent []string
	deadline := time.After(4 * waitLong)
	for i := 0; b.hook.connectCount("thermostat-3") < 3; i++ {
		select {
		case id := <-b.hook.expired:
			t.Fatalf("session of %s expired: the token was not renewed in time", id)
		case <-deadline:
			t.Fatalf("only %d connections (Err: %v)", b.hook.connectCount("thermostat-3"), sub.Err())
		case <-time.After(50 * time.Millisecond):
		}
		payload := "set-" + strconv.Itoa(i)
		if _, err := pub.Client.Publish(testContext(t), &paho.Publish{Topic: "things/thermostat-3/commands/set", QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		sent = append(sent, payload)
	}
	box.waitFor(t, sent)
	if sub.Err() != nil {
		t.Fatalf("Err() = %v", sub.Err())
	}
}

// Many concurrent QoS 1 publishers over one WebSocket connection: every packet must arrive whole.
func TestWebSocketConcurrentWriters(t *testing.T) {
	b := startBroker(t)
	box := newInbox()
	c := dialV5(t, &sdkmqtt.Dialer{Tokens: &mintingSource{hook: b.hook, life: time.Hour}, ClientID: "ws-busy",
		AuthMethod: sdkmqtt.AuthMethodJWT}, b.ws, box.v5Config())
	subscribeV5(t, c, "things/ws-busy/telemetry")
	var wg sync.WaitGroup
	var want []string
	errs := make(chan error, 400)
	for i := 0; i < cap(errs); i++ {
		payload := "m" + strconv.Itoa(i)
		want = append(want, payload)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Client.Publish(testContext(t), &paho.Publish{Topic: "things/ws-busy/telemetry", QoS: 1, Payload: []byte(payload)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	box.waitFor(t, want)
}

// When the renewed token is refused, the 3.1.1 connection ends and says why.
func TestV311RenewalRefused(t *testing.T) {
	b := startBroker(t)
	src := &mintingSource{hook: b.hook, life: 2 * time.Second}
	c, err := (&sdkmqtt.Dialer{Tokens: src, Username: "doomed"}).DialV311(testContext(t), b.tcp, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	src.setPrefix(tokenNotAuthorized)
	select {
	case <-c.Done():
	case <-time.After(waitLong):
		t.Fatal("connection not ended after the renewed token was refused")
	}
	if !errors.Is(c.Err(), sdkmqtt.ErrNotAuthorized) {
		t.Fatalf("Err() = %v, want ErrNotAuthorized", c.Err())
	}
}
