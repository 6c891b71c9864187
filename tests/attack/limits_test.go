package attack

import (
	"fmt"
	"testing"

	"imb/broker"
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
