package attack

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"imb/broker"
	"imb/internal/mqtttest"
)

// TestSubscriptionQuota: a client holds at most max_subscriptions filters, even
// inside its own grant; filters beyond it get SUBACK 0x97 (3.1.1: 0x80) and receive
// nothing, while resubscribing a filter it holds still succeeds.
func TestSubscriptionQuota(t *testing.T) {
	const max = 3
	e := newEnv(t, newIDP(t), func(c *broker.Config) { c.MaxSubscriptions = max })
	topic := func(i int) string { return fmt.Sprintf("things/t1/telemetry/%d", i) }

	obs := e.mustConnect5("observer", e.idp.token("observer", "observe"), opts5{clean: true})
	if got := obs.subscribe(t, 1, topic(1), topic(2), topic(3)); string(got) != "\x01\x01\x01" {
		t.Fatalf("first %d subscriptions: SUBACK %v, want granted", max, got)
	}
	// One filter held already (replaces itself), two new ones: both over the quota.
	got := obs.subscribe(t, 1, topic(1), topic(4), topic(5))
	if len(got) != 3 || got[0] != 1 || got[1] != 0x97 || got[2] != 0x97 {
		t.Fatalf("SUBACK %#v, want [0x01 0x97 0x97]", got)
	}
	t1 := e.thing(t, "t1")
	if code := t1.publish(t, topic(4), 1, false, "over quota"); code != 0 {
		t.Fatalf("publish: %#x", code)
	}
	barrier(t, t1, obs, topic(1))
	obs.inbox.none(t, topic(4))

	code, c3 := connect3(t, e.addr, "observer-3", e.idp.token("observer-3", "observe"), true)
	if code != 0 {
		t.Fatalf("v3.1.1 connect: %#x", code)
	}
	tok := c3.SubscribeMultiple(map[string]byte{topic(1): 1, topic(2): 1, topic(3): 1, topic(6): 1}, nil)
	tok.Wait()
	res := tok.(interface{ Result() map[string]byte }).Result()
	refused := 0
	for _, r := range res {
		if r == 0x80 {
			refused++
		}
	}
	if len(res) != 4 || refused != 1 {
		t.Fatalf("v3.1.1 SUBACK %v, want one 0x80 among 4", res)
	}
}

// TestPendingConnectCap: sockets that have not been answered with a CONNACK are
// bounded per source address and in total; one over either bound is closed at once
// (not at the connect deadline) and counted, and a freed place serves a newcomer.
func TestPendingConnectCap(t *testing.T) {
	const total, perAddr = 6, 4
	e := newEnv(t, newIDP(t), func(c *broker.Config) {
		c.MaxPendingConnects, c.MaxPendingConnectsPerAddr = total, perAddr
		c.ConnectDeadline = 30 * time.Second // nothing here may be a deadline's doing
	})
	dial := func(src string) *mqtttest.Raw {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", e.addr)
		if err != nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return mqtttest.Wrap(t, c)
	}
	idle := func(src string, n int) []*mqtttest.Raw {
		t.Helper()
		var out []*mqtttest.Raw
		for range n {
			out = append(out, dial(src))
		}
		// The broker has accepted them all once a further socket is seen.
		for i, r := range out {
			if r.ClosedWithin(50 * time.Millisecond) {
				t.Fatalf("idle socket %d from %s closed within its share", i, src)
			}
		}
		return out
	}
	a := idle("127.0.0.1", perAddr)
	if !dial("127.0.0.1").ClosedWithin(2 * time.Second) {
		t.Fatalf("socket %d from one address not closed at once", perAddr+1)
	}
	idle("127.0.0.2", total-perAddr)
	if !dial("127.0.0.3").ClosedWithin(2 * time.Second) {
		t.Fatalf("socket %d in total not closed at once", total+1)
	}
	if got := pendingRefused(t, e); got != 2 {
		t.Fatalf("imb_pending_connects_refused_total = %v, want 2", got)
	}
	// A CONNACK frees the place: the same socket goes on as a session, and the next
	// socket from that address is served.
	if err := a[0].Send(mqtttest.ConnectPacket("t1", e.idp.token("t1", "publish"))); err != nil {
		t.Fatal(err)
	}
	if ack, ok := a[0].Read(5 * time.Second); !ok || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK within the bounds: %+v", ack)
	}
	r := dial("127.0.0.1")
	if err := r.Send(mqtttest.ConnectPacket("t2", e.idp.token("t2", "publish"))); err != nil {
		t.Fatal(err)
	}
	if ack, ok := r.Read(5 * time.Second); !ok || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("newcomer after a freed place: %+v", ack)
	}
}

// pendingRefused reads imb_pending_connects_refused_total over its labels.
func pendingRefused(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.b.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == "imb_pending_connects_refused_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// connectFrom sends an MQTT 5 CONNECT with token as password from the source IP src
// and returns the CONNACK reason code, or -1 when none came.
func connectFrom(t *testing.T, e *env, src, clientID, token string) int {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	defer c.Close()
	r := mqtttest.Wrap(t, c)
	if err := r.Send(mqtttest.ConnectPacket(clientID, token)); err != nil {
		t.Fatal(err)
	}
	ack, ok := r.Read(5 * time.Second)
	if !ok || ack.FixedHeader.Type != packets.Connack {
		return -1
	}
	return int(ack.ReasonCode)
}

// TestUpstreamAmplification: a CONNECT with an unknown token costs an introspection
// request made with the broker's credentials, before any authentication. Those
// requests are rated per source address (beyond: CONNACK 0x9F), oversized tokens
// and JWTs of an issuer that is not configured cost none, and another address keeps
// its own share.
func TestUpstreamAmplification(t *testing.T) {
	const rate = 5 // per second, burst 10
	p := newIDP(t)
	e := newEnv(t, p, func(c *broker.Config) { c.UpstreamValidationRate = rate })
	random := func(i int) string { return fmt.Sprintf("random-opaque-token-%d-%d", i, time.Now().UnixNano()) }

	t.Run("random opaque tokens from one address", func(t *testing.T) {
		before := p.introspections.Load()
		start := time.Now()
		counts := map[int]int{}
		const n = 60
		for i := range n {
			counts[connectFrom(t, e, "127.0.0.1", "t1", random(i))]++
		}
		sent := p.introspections.Load() - before
		allowed := int64(2*rate + rate*time.Since(start).Seconds() + 1)
		if sent > allowed {
			t.Errorf("%d introspection requests for %d CONNECTs in %s, want at most %d", sent, n, time.Since(start), allowed)
		}
		if counts[0x9F] == 0 || counts[0x86]+counts[0x9F] != n {
			t.Errorf("CONNACK codes %v, want only 0x86 and 0x9F, some 0x9F", counts)
		}
	})
	t.Run("another address keeps its share", func(t *testing.T) {
		if code := connectFrom(t, e, "127.0.0.2", "t2", p.opaqueToken("t2", time.Hour, "publish")); code != 0 {
			t.Fatalf("CONNACK %#x, want 0x00", code)
		}
	})
	t.Run("no request for what cannot be a token of the issuer", func(t *testing.T) {
		foreign := p.tokenWith("t3", func(c map[string]any) { c["iss"] = "https://other.example" })
		cases := []struct{ name, token string }{
			{"opaque token over 8 KiB", strings.Repeat("x", 8<<10+1)},
			{"JWT of an issuer that is not configured", foreign},
		}
		for _, c := range cases {
			before := p.introspections.Load()
			if code := connectFrom(t, e, "127.0.0.3", "t3", c.token); code != 0x86 {
				t.Errorf("%s: CONNACK %#x, want 0x86", c.name, code)
			}
			if got := p.introspections.Load() - before; got != 0 {
				t.Errorf("%s: %d introspection requests, want 0", c.name, got)
			}
		}
	})
}
