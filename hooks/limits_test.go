package hooks_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mpackets "github.com/mochi-mqtt/server/v2/packets"

	"imb/authz"
	"imb/broker"
	"imb/internal/issuer"
)

// limitsPolicy is testPolicy with a limits section. Rates are low (a token every
// few seconds) so that "over the limit" never depends on how fast the test runs.
const limitsPolicy = testPolicy + `
limits:
  - name: slow-publisher
    subjects: [t1]
    publishes: 0.2
    publish_burst: 3
    flood_grace: 0s
  - name: small-payloads
    subjects: [t2]
    publish_bytes: 100
    publish_bytes_burst: 100
    flood_grace: 0s
  - name: flooder
    subjects: [t3]
    publishes: 0.2
    publish_burst: 1
    flood_grace: 1s
  - name: reconnecter
    subjects: [t4]
    connects: 2/1m
  - name: multi-session
    subjects: ["t5"]
    sessions: 2
  - name: few-subscriptions
    subjects: [t6]
    subscriptions: 2
  - name: narrow-window
    subjects: [t7]
    inflight: 2
`

// limitsEnv starts a broker under limitsPolicy; thing t5 may use t5:* client ids.
func limitsEnv(t *testing.T) *env {
	t.Helper()
	pol, err := authz.Parse("topics.yaml", []byte(limitsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, func(c *broker.Config) {
		c.Policy = pol
		c.ClientIDBinding = []string{"{sub}", "{sub}:*"}
	})
}

// metric reads one sample of the broker's /metrics, 0 when absent.
func (e *env) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.b.Addr("admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func refusals(reason string) string { return `imb_limit_refusals_total{reason="` + reason + `"}` }

// limitLine returns the audit lines of refusals by limit.
func (e *env) limitLines(limit string) []map[string]string {
	var out []map[string]string
	for _, l := range e.audit.find("limit") {
		if l["limit"] == limit {
			out = append(out, l)
		}
	}
	return out
}

func TestPublishRateV5(t *testing.T) {
	e := limitsEnv(t)
	app := e.fleet(t)
	app.subscribe(t, "things/+/telemetry/#", 1)
	thing := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	if thing.err != nil {
		t.Fatal(thing.err)
	}
	for i := 0; i < 3; i++ {
		if got := thing.publish(t, "things/t1/telemetry/a", 1, false, "burst"); got != 0 {
			t.Fatalf("publish %d within the burst: PUBACK %#x", i, got)
		}
	}
	if got := thing.publish(t, "things/t1/telemetry/over", 1, false, "over"); got != 0x96 {
		t.Fatalf("QoS 1 over the rate: PUBACK %#x, want 0x96", got)
	}
	ctx := t.Context()
	resp, err := thing.c.Publish(ctx, &paho.Publish{Topic: "things/t1/state", QoS: 2, Payload: []byte("x")})
	if resp == nil || resp.ReasonCode != 0x96 {
		t.Fatalf("QoS 2 over the rate: %v %v, want PUBREC 0x96", resp, err)
	}
	thing.publish(t, "things/t1/telemetry/dropped", 0, false, "qos0 over the rate")
	// flood_grace 0s: refused, never disconnected.
	if got := thing.publish(t, "things/t1/telemetry/over3", 1, false, "over"); got != 0x96 {
		t.Fatalf("still over the rate: PUBACK %#x, want 0x96", got)
	}
	// One token comes back after 5 s; the message it admits is the barrier.
	time.Sleep(5 * time.Second)
	barrier(t, thing, app, "t1")
	app.expectNoMsg(t, "things/t1/telemetry/dropped", 100*time.Millisecond)
	app.expectNoMsg(t, "things/t1/telemetry/over", 0)
	if got := e.metric(t, refusals("publish_rate")); got != 4 {
		t.Fatalf("%s = %v, want 4", refusals("publish_rate"), got)
	}
	lines := e.limitLines("publish_rate")
	entry := fmt.Sprintf("topics.yaml:%d (slow-publisher)", strings.Count(limitsPolicy[:strings.Index(limitsPolicy, "  - name: slow-publisher")], "\n")+1)
	if len(lines) != 4 || lines[0]["entry"] != entry || lines[0]["thing_id"] != "t1" || lines[0]["value"] != "0.2/s burst 3" {
		t.Fatalf("audit lines %v", lines)
	}
}

func TestPublishBytesV5(t *testing.T) {
	e := limitsEnv(t)
	thing := e.connect5("t2", e.jwt("t2", "publish"), v5opts{clean: true})
	if thing.err != nil {
		t.Fatal(thing.err)
	}
	if got := thing.publish(t, "things/t2/telemetry/a", 1, false, strings.Repeat("x", 80)); got != 0 {
		t.Fatalf("80 bytes of 100: PUBACK %#x", got)
	}
	if got := thing.publish(t, "things/t2/telemetry/a", 1, false, strings.Repeat("x", 80)); got != 0x96 {
		t.Fatalf("160 bytes of 100/s: PUBACK %#x, want 0x96", got)
	}
	if got := thing.publish(t, "things/t2/telemetry/a", 1, false, strings.Repeat("x", 101)); got != 0x96 {
		t.Fatalf("a message above the burst: PUBACK %#x, want 0x96", got)
	}
	if got := e.metric(t, refusals("publish_bytes")); got != 2 {
		t.Fatalf("%s = %v, want 2", refusals("publish_bytes"), got)
	}
}

func TestFloodDisconnectV5(t *testing.T) {
	e := limitsEnv(t)
	thing := e.connect5("t3", e.jwt("t3", "publish"), v5opts{clean: true})
	if thing.err != nil {
		t.Fatal(thing.err)
	}
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				_, _ = thing.c.Publish(t.Context(), &paho.Publish{Topic: "things/t3/telemetry/a", Payload: []byte("x")})
			}
		}
	}()
	defer close(stop)
	code := thing.expectDisconnect(t, 10*time.Second)
	if code != 0x96 {
		t.Fatalf("DISCONNECT %#x, want 0x96", code)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("disconnected after %s, before the 1 s grace", took)
	}
	waitFor(t, "flood metric", func() bool { return e.metric(t, refusals("flood_disconnect")) == 1 })
}

func TestPublishRateV311(t *testing.T) {
	e := limitsEnv(t)
	code, c := connect3(t, e.addr, "t1", e.jwt("t1", "publish"), true)
	if code != 0 {
		t.Fatalf("connect: %#x", code)
	}
	for i := 0; i < 3; i++ {
		if tok := c.Publish("things/t1/telemetry/a", 1, false, "ok"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	// QoS 0 over the rate: dropped, the connection stays.
	c.Publish("things/t1/telemetry/a", 0, false, "dropped").WaitTimeout(time.Second)
	waitFor(t, "QoS 0 refusal counted", func() bool { return e.metric(t, refusals("publish_rate")) == 1 })
	if !c.IsConnectionOpen() {
		t.Fatal("a QoS 0 message over the rate closed a v3.1.1 connection")
	}
	// QoS 1 over the rate: 3.1.1 has no negative PUBACK, so the connection closes.
	c.Publish("things/t1/telemetry/a", 1, false, "over")
	waitFor(t, "connection closed", func() bool { return !c.IsConnectionOpen() })
}

func TestConnectRatePerIdentity(t *testing.T) {
	e := limitsEnv(t)
	tok := e.jwt("t4", "publish")
	for i := 0; i < 2; i++ {
		c := e.connect5("t4", tok, v5opts{clean: true})
		if c.err != nil {
			t.Fatalf("connect %d: %v", i, c.err)
		}
		_ = c.c.Disconnect(&paho.Disconnect{})
	}
	if c := e.connect5("t4", tok, v5opts{clean: true}); c.code() != 0x9F {
		t.Fatalf("third connect in a minute: CONNACK %d, want 0x9F", c.code())
	}
	if code, _ := connect3(t, e.addr, "t4", tok, true); code != 0x03 {
		t.Fatalf("v3.1.1 over the connect rate: CONNACK %#x, want 0x03", code)
	}
	// Another identity is not affected.
	if c := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true}); c.err != nil {
		t.Fatalf("another identity: %v", c.err)
	}
	if got := e.metric(t, refusals("connect_rate")); got != 2 {
		t.Fatalf("%s = %v, want 2", refusals("connect_rate"), got)
	}
	refused := e.audit.find("connect_refused")
	if len(refused) != 2 || refused[0]["limit"] != "connect_rate" || !strings.Contains(refused[0]["detail"], "reconnecter") {
		t.Fatalf("audit %v", refused)
	}
}

func TestSessionQuotaPerIdentity(t *testing.T) {
	e := limitsEnv(t)
	tok := e.jwt("t5", "publish")
	a := e.connect5("t5:a", tok, v5opts{clean: true})
	b := e.connect5("t5:b", tok, v5opts{clean: true})
	if a.err != nil || b.err != nil {
		t.Fatalf("two sessions: %v %v", a.err, b.err)
	}
	if c := e.connect5("t5:c", tok, v5opts{clean: true}); c.code() != 0x97 {
		t.Fatalf("third session: CONNACK %d, want 0x97", c.code())
	}
	if code, _ := connect3(t, e.addr, "t5:c", tok, true); code != 0x03 {
		t.Fatalf("v3.1.1 third session: CONNACK %#x, want 0x03", code)
	}
	// Reconnecting under a client id it holds takes its own session over: not a new one.
	b2 := e.connect5("t5:b", tok, v5opts{clean: true})
	if b2.err != nil {
		t.Fatalf("reconnect of a held client id: %v", b2.err)
	}
	_ = a.c.Disconnect(&paho.Disconnect{})
	waitFor(t, "a's session released", func() bool {
		c := e.connect5("t5:c", tok, v5opts{clean: true})
		if c.err == nil {
			_ = c.c.Disconnect(&paho.Disconnect{})
		}
		return c.err == nil
	})
	if got := e.metric(t, refusals("sessions")); got < 2 {
		t.Fatalf("%s = %v, want at least 2", refusals("sessions"), got)
	}
}

func TestSubscriptionQuotaFromPolicy(t *testing.T) {
	e := limitsEnv(t)
	thing := e.connect5("t6", e.jwt("t6", "subscribe"), v5opts{clean: true})
	if thing.err != nil {
		t.Fatal(thing.err)
	}
	for i, want := range []byte{0, 0, 0x97} {
		if got := thing.subscribe(t, fmt.Sprintf("things/t6/commands/%d", i), 0); got != want {
			t.Fatalf("subscription %d: SUBACK %#x, want %#x", i, got, want)
		}
	}
	// The broker-wide default (1000) still applies to others.
	other := e.connect5("t8", e.jwt("t8", "subscribe"), v5opts{clean: true})
	for i := 0; i < 3; i++ {
		if got := other.subscribe(t, fmt.Sprintf("things/t8/commands/%d", i), 0); got != 0 {
			t.Fatalf("t8 subscription %d: SUBACK %#x", i, got)
		}
	}
	code, c3 := connect3(t, e.addr, "t6", e.jwt("t6", "subscribe"), true)
	if code != 0 {
		t.Fatalf("v3.1.1 connect: %#x", code)
	}
	tok := c3.SubscribeMultiple(map[string]byte{"things/t6/commands/a": 0, "things/t6/commands/b": 0, "things/t6/commands/c": 0}, nil)
	tok.Wait()
	res := tok.(interface{ Result() map[string]byte }).Result()
	refused := 0
	for _, r := range res {
		if r == 0x80 {
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("v3.1.1 SUBACK %v, want one 0x80", res)
	}
	if got := e.metric(t, refusals("subscriptions")); got != 2 {
		t.Fatalf("%s = %v, want 2", refusals("subscriptions"), got)
	}
	if len(e.limitLines("subscriptions")) != 2 {
		t.Fatalf("audit %v", e.audit.find("limit"))
	}
}

// TestInflightLimit: the CONNACK announces the identity's inflight limit as Receive
// Maximum, and a client that leaves more QoS 2 messages unreleased is disconnected
// with 0x93.
func TestInflightLimit(t *testing.T) {
	e := limitsEnv(t)
	c := e.connect5("t7", e.jwt("t7", "publish"), v5opts{clean: true})
	if c.err != nil {
		t.Fatal(c.err)
	}
	if c.ack.Properties == nil || c.ack.Properties.ReceiveMaximum == nil || *c.ack.Properties.ReceiveMaximum != 2 {
		t.Fatalf("CONNACK Receive Maximum %v, want 2", c.ack.Properties)
	}
	other := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	if rm := other.ack.Properties.ReceiveMaximum; rm != nil && *rm == 2 {
		t.Fatal("the limit of t7 reached t1")
	}

	// A raw client: PUBREC comes back, PUBREL is never sent.
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	connect := mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Connect}, ProtocolVersion: 5,
		Connect: mpackets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
			ClientIdentifier: "t7:raw", PasswordFlag: true, Password: []byte(e.jwt("t7", "publish"))}}
	if err := connect.ConnectEncode(&out); err != nil {
		t.Fatal(err)
	}
	for id := uint16(1); id <= 3; id++ {
		pub := mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Publish, Qos: 2}, ProtocolVersion: 5,
			TopicName: "things/t7/state", PacketID: id, Payload: []byte("x")}
		if err := pub.PublishEncode(&out); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(conn) // until the broker closes
	// The last packet before the close is DISCONNECT 0x93 (type 0xE0).
	i := bytes.LastIndexByte(got, 0xE0)
	if i < 0 || i+2 >= len(got) || got[i+2] != 0x93 {
		t.Fatalf("no DISCONNECT 0x93 in % x", got)
	}
	waitFor(t, "inflight refusal counted", func() bool { return e.metric(t, refusals("inflight")) == 1 })
}

// TestPreAuthenticationBoundsAreLimits: before there is an identity, the source
// address's share of upstream validations and the bound on validations in flight
// refuse with 0x9F, and count in the same imb_limit_refusals_total by reason.
func TestPreAuthenticationBoundsAreLimits(t *testing.T) {
	t.Run("per source address", func(t *testing.T) {
		e := newEnv(t, func(c *broker.Config) { c.UpstreamValidationRate = 1 }) // burst 2
		codes := map[int]int{}
		for i := 0; i < 4; i++ {
			tok := e.iss.MintOpaque(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour) // unknown each time
			c := e.connect5("t1", tok, v5opts{clean: true})
			codes[c.code()]++
			if c.err == nil {
				_ = c.c.Disconnect(&paho.Disconnect{})
			}
		}
		if codes[0x9F] < 1 {
			t.Fatalf("CONNACK codes %v: no 0x9F for new tokens beyond the address's rate", codes)
		}
		if got := e.metric(t, refusals("source_validation_rate")); got != float64(codes[0x9F]) {
			t.Fatalf("%s = %v, want %d", refusals("source_validation_rate"), got, codes[0x9F])
		}
	})
	t.Run("in flight", func(t *testing.T) {
		e := newEnv(t, func(c *broker.Config) { c.MaxUpstreamValidations = 1; c.ValidateTimeout = 5 * time.Second })
		_ = e.iss.SetMode(issuer.Slow) // the first validation holds the only slot for 3 s
		defer func() { _ = e.iss.SetMode(issuer.Healthy) }()
		first := make(chan int, 1)
		go func() {
			c := e.connect5("t1", e.iss.MintOpaque(issuer.Claims{"sub": "t1"}, time.Hour), v5opts{clean: true})
			first <- c.code()
		}()
		waitFor(t, "the first validation in flight", func() bool { return e.iss.IntrospectCalls() >= 1 })
		c := e.connect5("t2", e.iss.MintOpaque(issuer.Claims{"sub": "t2"}, time.Hour), v5opts{clean: true})
		if c.code() != 0x9F {
			t.Fatalf("second CONNECT while the bound is taken: CONNACK %d, want 0x9F", c.code())
		}
		if got := e.metric(t, refusals("upstream_validations")); got != 1 {
			t.Fatalf("%s = %v, want 1", refusals("upstream_validations"), got)
		}
		<-first
	})
}

// TestConnectRatePerAddress: connect_rate_per_addr refuses CONNECTs from one
// address beyond its rate with 0x9F (3.1.1: 0x03) before the token is judged,
// valid tokens included.
func TestConnectRatePerAddress(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.ConnectRatePerAddr = 1 }) // burst 2
	tok := e.jwt("t1", "publish")
	for i := 0; i < 2; i++ {
		c := e.connect5("t1", tok, v5opts{clean: true})
		if c.err != nil {
			t.Fatalf("connect %d within the burst: %v", i, c.err)
		}
		_ = c.c.Disconnect(&paho.Disconnect{})
	}
	if c := e.connect5("t1", tok, v5opts{clean: true}); c.code() != 0x9F {
		t.Fatalf("third connect: CONNACK %d, want 0x9F", c.code())
	}
	if code, _ := connect3(t, e.addr, "t2", e.jwt("t2", "publish"), true); code != 0x03 {
		t.Fatalf("v3.1.1 over the address's rate: CONNACK %#x, want 0x03", code)
	}
	if got := e.metric(t, refusals("source_connect_rate")); got != 2 {
		t.Fatalf("%s = %v, want 2", refusals("source_connect_rate"), got)
	}
	time.Sleep(1100 * time.Millisecond) // one token back
	if c := e.connect5("t1", tok, v5opts{clean: true}); c.err != nil {
		t.Fatalf("after a second: %v", c.err)
	}
}

// TestInflightLimitHoldsDeliveries: a subscriber whose identity has inflight 2
// has at most 2 QoS 1 deliveries unacknowledged; the rest wait in its session and
// follow as it acknowledges.
func TestInflightLimitHoldsDeliveries(t *testing.T) {
	e := limitsEnv(t)
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	connect := mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Connect}, ProtocolVersion: 5,
		Connect: mpackets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
			ClientIdentifier: "t7", PasswordFlag: true, Password: []byte(e.jwt("t7", "subscribe"))}}
	sub := mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Subscribe, Qos: 1}, ProtocolVersion: 5,
		PacketID: 1, Filters: mpackets.Subscriptions{{Filter: "things/t7/commands/#", Qos: 1}}}
	if err := connect.ConnectEncode(&out); err != nil {
		t.Fatal(err)
	}
	if err := sub.SubscribeEncode(&out); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	// Read packets as they come: the type of each and, for PUBLISH, its packet id.
	type pkt struct {
		typ byte
		id  uint16
	}
	pkts := make(chan pkt, 100)
	go func() {
		r := bufio.NewReader(conn)
		for {
			var fh mpackets.FixedHeader
			b, err := r.ReadByte()
			if err != nil || fh.Decode(b) != nil {
				close(pkts)
				return
			}
			n, _, err := mpackets.DecodeLength(r)
			if err != nil {
				close(pkts)
				return
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				close(pkts)
				return
			}
			p := pkt{typ: fh.Type}
			if fh.Type == mpackets.Publish && len(body) >= 2 {
				tl := int(body[0])<<8 | int(body[1])
				p.id = uint16(body[2+tl])<<8 | uint16(body[3+tl])
			}
			pkts <- p
		}
	}()
	next := func(within time.Duration) (pkt, bool) {
		select {
		case p, ok := <-pkts:
			return p, ok
		case <-time.After(within):
			return pkt{}, false
		}
	}
	for _, want := range []byte{mpackets.Connack, mpackets.Suback} {
		if p, ok := next(10 * time.Second); !ok || p.typ != want {
			t.Fatalf("got %+v, want packet type %d", p, want)
		}
	}
	app := e.connect5("cloud-app", e.jwt("cloud-app", "fleet:command"), v5opts{clean: true})
	if app.err != nil {
		t.Fatal(app.err)
	}
	for i := 0; i < 5; i++ {
		if got := app.publish(t, "things/t7/commands/set", 1, false, fmt.Sprint(i)); got != 0 {
			t.Fatalf("command %d: PUBACK %#x", i, got)
		}
	}
	var held []uint16
	for len(held) < 2 {
		p, ok := next(10 * time.Second)
		if !ok || p.typ != mpackets.Publish {
			t.Fatalf("delivery %d: %+v", len(held), p)
		}
		held = append(held, p.id)
	}
	if p, ok := next(300 * time.Millisecond); ok {
		t.Fatalf("a third delivery (%+v) while two are unacknowledged", p)
	}
	// Acknowledge them: two more follow, and the fifth waits for theirs.
	out.Reset()
	for _, id := range held {
		ack := mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Puback}, ProtocolVersion: 5, PacketID: id}
		if err := ack.PubackEncode(&out); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < 2 {
		p, ok := next(10 * time.Second)
		if !ok || p.typ != mpackets.Publish {
			t.Fatalf("after the acknowledgements: %+v after %d", p, got)
		}
		got++
	}
	if p, ok := next(300 * time.Millisecond); ok {
		t.Fatalf("the fifth delivery (%+v) while two are unacknowledged", p)
	}
}

// TestFloodClosesV311: a 3.1.1 client flooding at QoS 0 is dropped message by
// message, then closed once it has flooded for its grace period (3.1.1 has no
// server DISCONNECT).
func TestFloodClosesV311(t *testing.T) {
	e := limitsEnv(t)
	code, c := connect3(t, e.addr, "t3", e.jwt("t3", "publish"), true)
	if code != 0 {
		t.Fatalf("connect: %#x", code)
	}
	start := time.Now()
	for c.IsConnectionOpen() && time.Since(start) < 10*time.Second {
		c.Publish("things/t3/telemetry/a", 0, false, "x")
		time.Sleep(50 * time.Millisecond)
	}
	if c.IsConnectionOpen() {
		t.Fatal("a v3.1.1 flooder is still connected after 10 s")
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("closed after %s, before the 1 s grace", took)
	}
	waitFor(t, "flood counted", func() bool { return e.metric(t, refusals("flood_disconnect")) == 1 })
}

// TestPolicyReloadAppliesLimits: a limits section added by a policy reload is in
// force for a session that connected before it.
func TestPolicyReloadAppliesLimits(t *testing.T) {
	e := newEnv(t)
	thing := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	if thing.err != nil {
		t.Fatal(thing.err)
	}
	for i := 0; i < 5; i++ {
		if got := thing.publish(t, "things/t1/telemetry/a", 1, false, "unlimited"); got != 0 {
			t.Fatalf("publish %d before the limits: PUBACK %#x", i, got)
		}
	}
	writePolicy(t, e, limitsPolicy) // t1: 0.2/s, burst 3
	waitFor(t, "policy reload", func() bool { return len(e.audit.find("policy_reload")) > 0 })
	codes := make([]byte, 4)
	for i := range codes {
		codes[i] = thing.publish(t, "things/t1/telemetry/a", 1, false, "limited")
	}
	if string(codes) != "\x00\x00\x00\x96" {
		t.Fatalf("PUBACKs after the reload % x, want 00 00 00 96", codes)
	}
}
