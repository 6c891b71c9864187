package attack

import (
	"fmt"
	"net"
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
