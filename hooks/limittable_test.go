package hooks

import (
	"fmt"
	"testing"
	"time"

	"imb/authz"
)

// TestLimitTableBounded: an identity's state is live while it holds a session and
// idle (in the bounded LRU) after, so the table never holds more than the live
// identities plus the idle bound, however many identities pass through.
func TestLimitTableBounded(t *testing.T) {
	const idle = 8
	tab := newLimitTable(idle)
	l := &authz.Limits{Publishes: 5, PublishBurst: 5}
	var releases []func()
	for i := range 100 {
		id := fmt.Sprint("thing-", i)
		tab.buckets(id, l)
		release, ok := tab.AcquireSession(id, id, 1)
		if !ok {
			t.Fatalf("%s: first session refused", id)
		}
		if i < 3 {
			releases = append(releases, release) // three stay connected
		} else {
			release()
		}
	}
	if len(tab.live) != 3 || tab.idle.Len() != idle {
		t.Fatalf("live %d, idle %d; want 3 and %d", len(tab.live), tab.idle.Len(), idle)
	}
	for _, r := range releases {
		r()
	}
	if len(tab.live) != 0 || tab.idle.Len() != idle {
		t.Fatalf("after the last sessions: live %d, idle %d", len(tab.live), tab.idle.Len())
	}
}

// TestLimitTableSessions: the quota counts client ids; a second hold on a held
// client id (a takeover) is not counted again, and the old session's late release
// does not free the new one's slot.
func TestLimitTableSessions(t *testing.T) {
	tab := newLimitTable(0)
	relA, ok1 := tab.AcquireSession("p", "p:a", 2)
	_, ok2 := tab.AcquireSession("p", "p:b", 2)
	if !ok1 || !ok2 {
		t.Fatal("two sessions of two refused")
	}
	if _, ok := tab.AcquireSession("p", "p:c", 2); ok {
		t.Fatal("a third session admitted")
	}
	relA2, ok := tab.AcquireSession("p", "p:a", 2) // p:a reconnects
	if !ok {
		t.Fatal("a reconnect under a held client id refused")
	}
	relA() // the old connection ends after the new one took over
	if _, ok := tab.AcquireSession("p", "p:c", 2); ok {
		t.Fatal("the old connection's release freed the new one's slot")
	}
	relA2()
	if _, ok := tab.AcquireSession("p", "p:c", 2); !ok {
		t.Fatal("a released slot was not given to the next session")
	}
}

// TestLimitTableConnects: the connect bucket of an identity survives its
// disconnect (it is kept idle), and follows a changed limit without refilling.
func TestLimitTableConnects(t *testing.T) {
	tab := newLimitTable(0)
	for i := range 2 {
		if !tab.AllowConnect("p", 2, time.Hour) {
			t.Fatalf("connect %d of 2 refused", i)
		}
		release, _ := tab.AcquireSession("p", "p", 0)
		release()
	}
	if tab.AllowConnect("p", 2, time.Hour) {
		t.Fatal("third connect in the hour admitted after the identity went idle")
	}
	if tab.AllowConnect("p", 3, time.Hour) {
		t.Fatal("a raised limit refilled the bucket")
	}
	if !tab.AllowConnect("q", 2, time.Hour) {
		t.Fatal("another identity refused")
	}
}
