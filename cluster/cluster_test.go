package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"imb/broker"
	"imb/cluster"
	"imb/internal/freeport"
	"imb/internal/issuer"
)

// The policy of the cluster tests: things publish and subscribe under their own
// topic; the cloud application subscribes to everything but may not receive
// secrets, which the receiving node must enforce for messages of other nodes.
const policy = `version: 1
rules:
  - name: own
    effect: allow
    actions: [publish, subscribe]
    topics: ["things/{sub}/#"]
    scopes: [publish]
    retain: true
  - name: cloud-reads
    effect: allow
    actions: [subscribe]
    topics: ["things/#"]
    scopes: [cloud]
  - name: cloud-commands
    effect: allow
    actions: [publish]
    topics: ["things/+/commands/#"]
    scopes: [cloud]
  - name: no-secrets
    effect: deny
    actions: [receive]
    topics: ["things/+/secret"]
    scopes: [cloud]
limits:
  - name: few-connects
    subjects: ["lim-c*"]
    connects: 2/1m
  - name: one-session
    subjects: ["lim-s*"]
    sessions: 1
`

// testCluster is N imb nodes on loopback, each with an embedded NATS node routed to
// the others, trusting one token issuer.
type testCluster struct {
	t      testing.TB
	iss    *issuer.Issuer
	nodes  []*broker.Broker
	cfgs   []broker.Config
	policy string
}

// startCluster starts n nodes routed to each other. The route ports are
// picked free and then bound by the nodes, so a parallel package may take one
// in between: a start that fails because an address is in use is tried again
// with new ports.
func startCluster(t testing.TB, n int, mod func(i int, c *broker.Config)) *testCluster {
	t.Helper()
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	p := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(p, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		tc, err := tryStartCluster(t, iss, p, n, mod)
		if err == nil {
			return tc
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; again with new ports", attempt, err)
	}
}

func tryStartCluster(t testing.TB, iss *issuer.Issuer, policyFile string, n int, mod func(i int, c *broker.Config)) (*testCluster, error) {
	tc := &testCluster{t: t, iss: iss, policy: policyFile}
	routes := freeport.MustAddrs(t, n)
	for i := range n {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats://"+r)
			}
		}
		cfg := broker.Config{
			MQTTAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", PolicyFile: policyFile,
			Issuer: iss.URL(), IntrospectURL: iss.IntrospectURL(), ClientID: iss.ClientID(), ClientSecret: iss.ClientSecret(),
			Logger:  testLogger(),
			Cluster: broker.ClusterConfig{Embed: routes[i], Routes: others, NodeName: fmt.Sprintf("n%d", i+1)},
		}
		if mod != nil {
			mod(i, &cfg)
		}
		tc.cfgs = append(tc.cfgs, cfg)
	}
	// The nodes start together: each waits for JetStream's quorum, which needs the others.
	tc.nodes = make([]*broker.Broker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc.nodes[i], errs[i] = broker.Start(context.Background(), tc.cfgs[i])
		}()
	}
	wg.Wait()
	closeAll := func() {
		for _, b := range tc.nodes {
			if b != nil {
				_ = b.Close()
			}
		}
	}
	for i, err := range errs {
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
	}
	t.Cleanup(closeAll)
	return tc, nil
}

// token mints a JWT for thing sub with the given scope.
func (tc *testCluster) token(sub, scope string) string {
	return tc.iss.Mint(issuer.Claims{"sub": sub, "scope": scope}, time.Hour)
}

// client is a real MQTT 5 client of one node that records what it receives.
type client struct {
	c    *paho.Client
	got  chan *paho.Publish
	gone chan *paho.Disconnect
}

func (tc *testCluster) connect(node int, clientID, token string, mod func(*paho.Connect)) (*client, *paho.Connack, error) {
	tc.t.Helper()
	conn, err := net.Dial("tcp", tc.nodes[node].Addr("tcp"))
	if err != nil {
		tc.t.Fatal(err)
	}
	cl := &client{got: make(chan *paho.Publish, 1000), gone: make(chan *paho.Disconnect, 1)}
	cl.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			cl.got <- p.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case cl.gone <- d:
			default:
			}
		},
	})
	cp := &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: clientID,
		PasswordFlag: true, Password: []byte(token)}
	if mod != nil {
		mod(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := cl.c.Connect(ctx, cp)
	if err == nil {
		tc.t.Cleanup(func() { _ = cl.c.Disconnect(&paho.Disconnect{}) })
	}
	return cl, ca, err
}

func (tc *testCluster) mustConnect(node int, clientID, token string) *client {
	tc.t.Helper()
	cl, _, err := tc.connect(node, clientID, token, nil)
	if err != nil {
		tc.t.Fatalf("connect %s to node %d: %v", clientID, node+1, err)
	}
	return cl
}

func (c *client) subscribe(t testing.TB, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	if sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: SUBACK 0x%02x", filter, sa.Reasons[0])
	}
}

func (c *client) publish(t testing.TB, topic, payload string, qos byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain,
		Properties: &paho.PublishProperties{ContentType: "text/plain", User: paho.UserProperties{{Key: "k", Value: "v"}}}})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	if pr != nil && pr.ReasonCode >= 0x80 {
		t.Fatalf("publish %s: reason 0x%02x", topic, pr.ReasonCode)
	}
}

// next waits for the next message, or fails.
func (c *client) next(t *testing.T, within time.Duration) *paho.Publish {
	t.Helper()
	select {
	case p := <-c.got:
		return p
	case <-time.After(within):
		t.Fatal("no message arrived")
		return nil
	}
}

// none checks that nothing arrives for a while.
func (c *client) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case p := <-c.got:
		t.Fatalf("unexpected message on %s: %q", p.Topic, p.Payload)
	case <-time.After(within):
	}
}

func TestMessagesCrossNodesThroughTheReceiveCheck(t *testing.T) {
	tc := startCluster(t, 3, nil)
	cloud2 := tc.mustConnect(1, "cloud-a", tc.token("cloud-a", "cloud"))
	cloud2.subscribe(t, "things/#", 1)
	thing3 := tc.mustConnect(2, "t3", tc.token("t3", "publish"))
	thing3.subscribe(t, "things/t3/commands/#", 2)
	pub := tc.mustConnect(0, "t1", tc.token("t1", "publish"))
	// A subscription made on another node must be in place before the publish:
	// nothing is replicated but messages, so the order of the test is the order of events.
	const n = 30
	for i := range n {
		pub.publish(t, "things/t1/telemetry", fmt.Sprint(i), byte(i%3), false)
	}
	pub.publish(t, "things/t1/secret", "hidden", 1, false)
	for i := range n {
		p := cloud2.next(t, 5*time.Second)
		if p.Topic != "things/t1/telemetry" {
			t.Fatalf("message %d: topic %s", i, p.Topic)
		}
		if p.Properties == nil || p.Properties.ContentType != "text/plain" || p.Properties.User.Get("k") != "v" {
			t.Fatalf("message %d lost its properties: %+v", i, p.Properties)
		}
		_ = p
	}
	cloud2.none(t, 300*time.Millisecond) // the secret was withheld by node 2's receive check
	thing3.none(t, 100*time.Millisecond) // not subscribed to t1's topics
}

func TestRetainedMessagesAreClusterWide(t *testing.T) {
	tc := startCluster(t, 3, nil)
	pub := tc.mustConnect(0, "t1", tc.token("t1", "publish"))
	pub.publish(t, "things/t1/state", "on", 1, true)
	pub.publish(t, "things/t1/secret", "s", 1, true)
	time.Sleep(300 * time.Millisecond) // forwarded asynchronously

	cloud := tc.mustConnect(2, "cloud-a", tc.token("cloud-a", "cloud"))
	cloud.subscribe(t, "things/#", 1)
	if p := cloud.next(t, 5*time.Second); p.Topic != "things/t1/state" || string(p.Payload) != "on" || !p.Retain {
		t.Fatalf("retained message on node 3: %s %q retain=%v", p.Topic, p.Payload, p.Retain)
	}
	cloud.none(t, 300*time.Millisecond) // the retained secret is judged by the receive check too

	// Cleared on node 2, cleared everywhere.
	t1b := tc.mustConnect(1, "t1", tc.token("t1", "publish"))
	t1b.publish(t, "things/t1/state", "", 1, true)
	time.Sleep(300 * time.Millisecond)
	late := tc.mustConnect(2, "cloud-b", tc.token("cloud-b", "cloud"))
	late.subscribe(t, "things/t1/state", 1)
	late.none(t, 500*time.Millisecond)
}

func TestRetainedMessagesReachANodeThatJoinsLater(t *testing.T) {
	tc := startCluster(t, 3, nil)
	pub := tc.mustConnect(0, "t1", tc.token("t1", "publish"))
	pub.publish(t, "things/t1/state", "kept", 1, true)
	time.Sleep(300 * time.Millisecond)
	// Node 3 leaves and a fresh node 3 (empty store) joins: it loads the retained
	// messages from the engine before it accepts connections.
	_ = tc.nodes[2].Close()
	cfg := tc.cfgs[2]
	b, err := broker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[2] = b
	cloud := tc.mustConnect(2, "cloud-a", tc.token("cloud-a", "cloud"))
	cloud.subscribe(t, "things/t1/state", 1)
	if p := cloud.next(t, 5*time.Second); string(p.Payload) != "kept" {
		t.Fatalf("retained message on the new node 3: %q", p.Payload)
	}
}

func TestOneClientIDOneSessionAcrossNodes(t *testing.T) {
	tc := startCluster(t, 3, func(_ int, c *broker.Config) { c.ClientIDBinding = []string{"*"} })
	first := tc.mustConnect(0, "dev", tc.token("t1", "publish"))

	// Another identity asking for the client id on another node is refused.
	if _, ca, err := tc.connect(1, "dev", tc.token("t2", "publish"), nil); err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("another identity on node 2: err=%v connack=%+v, want 0x87", err, ca)
	}
	select {
	case d := <-first.gone:
		t.Fatalf("the first connection was disconnected (0x%02x) by a refused identity", d.ReasonCode)
	case <-time.After(200 * time.Millisecond):
	}

	// The same identity on node 3 takes the session over: node 1 says 0x8E.
	second := tc.mustConnect(2, "dev", tc.token("t1", "publish"))
	select {
	case d := <-first.gone:
		if d.ReasonCode != 0x8E {
			t.Fatalf("taken-over connection got DISCONNECT 0x%02x, want 0x8E", d.ReasonCode)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the connection on node 1 was not taken over")
	}
	// And now another identity is refused on node 1, where the client id used to live.
	if _, ca, err := tc.connect(0, "dev", tc.token("t2", "publish"), nil); err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("another identity on node 1 after the takeover: err=%v connack=%+v, want 0x87", err, ca)
	}
	_ = second
}

func TestRevocationFoundOnOneNodeEndsSessionsOnAll(t *testing.T) {
	tc := startCluster(t, 3, func(i int, c *broker.Config) {
		c.ClientIDBinding = []string{"{sub}:*"}
		c.RevalidateInterval = time.Hour
		if i == 0 {
			c.RevalidateInterval = 300 * time.Millisecond // only node 1 re-checks in time
		}
	})
	tok := tc.iss.MintOpaque(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
	a := tc.mustConnect(0, "t1:a", tok)
	b := tc.mustConnect(1, "t1:b", tok)
	tc.iss.Revoke(tok)
	start := time.Now()
	for _, c := range []*client{a, b} {
		select {
		case d := <-c.gone:
			if d.ReasonCode != 0x87 {
				t.Fatalf("DISCONNECT 0x%02x, want 0x87", d.ReasonCode)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("a session of the revoked token is still connected")
		}
	}
	t.Logf("both sessions ended %v after the revocation", time.Since(start))
	// Node 2's cache no longer vouches for the token.
	if _, ca, err := tc.connect(1, "t1:c", tok, nil); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("revoked token on node 2: err=%v connack=%+v, want 0x86", err, ca)
	}
}

func TestANodeWithoutItsEngineRefusesAndDrops(t *testing.T) {
	tc := startCluster(t, 3, func(_ int, c *broker.Config) { c.Cluster.LostGrace = time.Second })
	c := tc.mustConnect(0, "t1", tc.token("t1", "publish"))
	// Nodes 2 and 3 go: node 1's JetStream has no quorum left.
	_ = tc.nodes[1].Close()
	_ = tc.nodes[2].Close()
	tc.nodes[1], tc.nodes[2] = nil, nil
	select {
	case d := <-c.gone:
		if d.ReasonCode != 0x88 {
			t.Fatalf("DISCONNECT 0x%02x, want 0x88", d.ReasonCode)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node 1 kept a connection it cannot prove it owns")
	}
	if err := tc.nodes[0].Ready(context.Background()); err == nil {
		t.Fatal("node 1 says it is ready without its engine")
	}
	if _, ca, err := tc.connect(0, "t2", tc.token("t2", "publish"), nil); err == nil || ca == nil || ca.ReasonCode != 0x88 {
		t.Fatalf("connect to a node without its engine: err=%v connack=%+v, want 0x88", err, ca)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("IMB_CLUSTER_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestSharedSubscriptionIsOneGroupClusterWide: members of $share/G/f on three
// nodes form one group. Each message (QoS 0, 1, 2) reaches exactly one member,
// every member's node takes part, and a plain subscriber still gets every one.
// A member that leaves stops getting messages; the others get them all.
func TestSharedSubscriptionIsOneGroupClusterWide(t *testing.T) {
	tc := startCluster(t, 3, nil)
	const filter = "$share/workers/things/#"
	members := make([]*client, 3)
	for i := range members {
		id := fmt.Sprintf("worker-%d", i+1)
		members[i] = tc.mustConnect(i, id, tc.token(id, "cloud"))
		members[i].subscribe(t, filter, 2)
	}
	plain := tc.mustConnect(1, "cloud-plain", tc.token("cloud-plain", "cloud"))
	plain.subscribe(t, "things/#", 1)
	pub := tc.mustConnect(0, "t1", tc.token("t1", "publish"))

	const n = 90
	for i := range n {
		pub.publish(t, "things/t1/telemetry", fmt.Sprint(i), byte(i%3), false)
	}
	seen := map[string]int{}
	perMember := make([]int, len(members))
	deadline := time.After(20 * time.Second)
	for total := 0; total < n; {
		select {
		case p := <-members[0].got:
			seen[string(p.Payload)]++
			perMember[0]++
		case p := <-members[1].got:
			seen[string(p.Payload)]++
			perMember[1]++
		case p := <-members[2].got:
			seen[string(p.Payload)]++
			perMember[2]++
		case <-deadline:
			t.Fatalf("the group got %d of %d messages (per member %v)", total, n, perMember)
		}
		total = perMember[0] + perMember[1] + perMember[2]
	}
	for _, m := range members {
		m.none(t, time.Second) // no second copy to anyone
	}
	for i := range n {
		if seen[fmt.Sprint(i)] != 1 {
			t.Errorf("message %d reached the group %d times", i, seen[fmt.Sprint(i)])
		}
	}
	for i, c := range perMember {
		if c == 0 {
			t.Errorf("member on node %d got none of %d messages (per member %v): not one group across nodes", i+1, n, perMember)
		}
	}
	for range n {
		plain.next(t, 10*time.Second)
	}

	// Member 3 leaves: the other two get every further message, once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := members[2].c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{filter}}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pub.publish(t, "things/t1/telemetry", fmt.Sprint("after-", i), 1, false)
	}
	got := 0
	deadline = time.After(20 * time.Second)
	for got < n {
		select {
		case <-members[0].got:
			got++
		case <-members[1].got:
			got++
		case p := <-members[2].got:
			t.Fatalf("member 3 left the group and still got %q", p.Payload)
		case <-deadline:
			t.Fatalf("after member 3 left, the group got %d of %d", got, n)
		}
	}
	members[0].none(t, 500*time.Millisecond)
	members[1].none(t, 500*time.Millisecond)
}

// TestPersistentSessionResumesOnAnotherNode: a thing leaves node 1 with a
// persistent session; QoS 1 commands published on node 2 while it is away are
// queued; it comes back on node 3 with clean start false and finds its session
// (session present), the queued commands, and its subscription, which carries
// the next command too. Clean start true on yet another node starts afresh.
func TestPersistentSessionResumesOnAnotherNode(t *testing.T) {
	tc := startCluster(t, 3, nil)
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: paho.Uint32(300)}
	}
	tok := tc.token("p1", "publish")
	thing, _, err := tc.connect(0, "p1", tok, persistent)
	if err != nil {
		t.Fatal(err)
	}
	thing.subscribe(t, "things/p1/commands/#", 1)
	if err := thing.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // node 1 has marked the session offline

	cloud := tc.mustConnect(1, "cloud-cmd", tc.token("cloud-cmd", "cloud"))
	const queued = 5
	for i := range queued {
		cloud.publish(t, "things/p1/commands/set", fmt.Sprint("while-away-", i), 1, false)
	}
	time.Sleep(500 * time.Millisecond) // queued on node 1, the node that kept the session

	back, ca, err := tc.connect(2, "p1", tok, persistent)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.SessionPresent {
		t.Fatal("CONNACK on node 3 says no session present: the session of node 1 did not come along")
	}
	got := map[string]bool{}
	for range queued {
		got[string(back.next(t, 10*time.Second).Payload)] = true
	}
	for i := range queued {
		if !got[fmt.Sprint("while-away-", i)] {
			t.Errorf("queued command %d missing on node 3 (got %v)", i, got)
		}
	}
	cloud.publish(t, "things/p1/commands/set", "after", 1, false)
	if p := back.next(t, 10*time.Second); string(p.Payload) != "after" {
		t.Fatalf("the resumed subscription delivered %q", p.Payload)
	}
	back.none(t, 500*time.Millisecond)
	if err := back.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	// Clean start: the session that node 3 kept is not resumed on node 2.
	fresh, ca, err := tc.connect(1, "p1", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ca.SessionPresent {
		t.Fatal("clean start on node 2 resumed a session")
	}
	cloud.publish(t, "things/p1/commands/set", "not-subscribed", 1, false)
	fresh.none(t, time.Second)
}

// TestPersistentSessionOutlivesItsNode: the node that keeps two persistent
// sessions (one offline, one connected) goes away. Each thing resumes on another
// node: session present, its subscription there, and every QoS 1 message that
// arrived for it while it was offline and after its node was gone.
func TestPersistentSessionOutlivesItsNode(t *testing.T) {
	tc := startCluster(t, 3, nil)
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: paho.Uint32(300)}
	}
	away, live := tc.token("s-away", "publish"), tc.token("s-live", "publish")
	a, _, err := tc.connect(0, "s-away", away, persistent)
	if err != nil {
		t.Fatal(err)
	}
	a.subscribe(t, "things/s-away/commands/#", 1)
	l, _, err := tc.connect(0, "s-live", live, persistent)
	if err != nil {
		t.Fatal(err)
	}
	l.subscribe(t, "things/s-live/commands/#", 1)
	if err := a.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	cloud := tc.mustConnect(1, "cloud-cmd", tc.token("cloud-cmd", "cloud"))
	for i := range 3 {
		cloud.publish(t, "things/s-away/commands/set", fmt.Sprint("while-away-", i), 1, false)
	}
	cloud.publish(t, "things/s-live/commands/set", "before", 1, false)
	if p := l.next(t, 10*time.Second); string(p.Payload) != "before" {
		t.Fatalf("live session got %q", p.Payload)
	}
	// A message published while the session is being rebuilt, after the stream's
	// last message was read, reaches it live.
	var during sync.Once
	duringErr := make(chan error, 1)
	cluster.SetAfterLastRead(func(id string) {
		if id == "s-away" {
			during.Do(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				pr, err := cloud.c.Publish(ctx, &paho.Publish{Topic: "things/s-away/commands/set", Payload: []byte("during-replay"), QoS: 1})
				if err == nil && pr != nil && pr.ReasonCode >= 0x80 {
					err = fmt.Errorf("PUBACK 0x%02x", pr.ReasonCode)
				}
				duringErr <- err
			})
		}
	})
	t.Cleanup(func() { cluster.SetAfterLastRead(nil) })
	_ = tc.nodes[0].Close()
	tc.nodes[0] = nil
	for i := range 3 {
		cloud.publish(t, "things/s-away/commands/set", fmt.Sprint("after-", i), 1, false)
		cloud.publish(t, "things/s-live/commands/set", fmt.Sprint("after-", i), 1, false)
	}

	// resume reconnects id on node: every message of want must come; one of
	// earlier (what it had before its node went) may come again, as QoS 1 allows.
	resume := func(node int, id, tok string, want, earlier []string) {
		t.Helper()
		// While JetStream elects leaders for what the lost node led, the session
		// cannot be rebuilt yet and the node answers 0x88: a thing tries again.
		var c *client
		var ca *paho.Connack
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			c, ca, err = tc.connect(node, id, tok, persistent)
			if err == nil || ca == nil || ca.ReasonCode != 0x88 || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if !ca.SessionPresent {
			t.Fatalf("%s on node %d: no session present: it died with its node", id, node+1)
		}
		missing := map[string]bool{}
		for _, w := range want {
			missing[w] = true
		}
		for len(missing) > 0 {
			p := string(c.next(t, 10*time.Second).Payload)
			if !missing[p] && !slices.Contains(want, p) && !slices.Contains(earlier, p) {
				t.Fatalf("%s: unexpected %q", id, p)
			}
			delete(missing, p)
		}
		cloud.publish(t, "things/"+id+"/commands/set", "later", 1, false)
		for {
			p := string(c.next(t, 10*time.Second).Payload)
			if p == "later" {
				break
			}
			if !slices.Contains(want, p) && !slices.Contains(earlier, p) {
				t.Fatalf("%s: unexpected %q", id, p)
			}
		}
	}
	resume(2, "s-away", away, []string{"while-away-0", "while-away-1", "while-away-2", "after-0", "after-1", "after-2", "during-replay"}, nil)
	select {
	case err := <-duringErr:
		if err != nil {
			t.Fatalf("publish during the replay: %v", err)
		}
	default:
		t.Fatal("the session was recovered without a replay")
	}
	resume(1, "s-live", live, []string{"after-0", "after-1", "after-2"}, []string{"before"})
}

// TestIdentityLimitsAreClusterWide: an identity's connects and sessions are
// counted over all nodes, so a load balancer spreading its connections does not
// multiply its limits: the third connect in a minute is refused (0x9F) on the
// third node, a second session on another node is refused (0x97), and once the
// first session ends the second may be opened.
func TestIdentityLimitsAreClusterWide(t *testing.T) {
	tc := startCluster(t, 3, func(_ int, c *broker.Config) { c.ClientIDBinding = []string{"{sub}", "{sub}:*"} })
	tok := tc.token("lim-c1", "publish")
	for node := range 2 {
		c, _, err := tc.connect(node, "lim-c1", tok, nil)
		if err != nil {
			t.Fatalf("connect %d on node %d: %v", node+1, node+1, err)
		}
		_ = c.c.Disconnect(&paho.Disconnect{})
	}
	_, ca, err := tc.connect(2, "lim-c1", tok, nil)
	if ca == nil || ca.ReasonCode != 0x9F {
		t.Fatalf("third connect in a minute, on node 3: CONNACK %+v, %v; want 0x9F", ca, err)
	}

	stok := tc.token("lim-s1", "publish")
	first := tc.mustConnect(0, "lim-s1:a", stok)
	_, ca, err = tc.connect(1, "lim-s1:b", stok, nil)
	if ca == nil || ca.ReasonCode != 0x97 {
		t.Fatalf("second session, on node 2: CONNACK %+v, %v; want 0x97", ca, err)
	}
	if err := first.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, ca, err := tc.connect(1, "lim-s1:b", stok, nil)
		if err == nil {
			_ = c.c.Disconnect(&paho.Disconnect{})
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the first session ended, node 2 still refuses: %+v, %v", ca, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A publish through the HTTP door of node 1 reaches an MQTT subscriber on node 2, through node
// 2's receive check, like an MQTT publish (docs/http.md).
func TestHTTPDoorPublishReachesAnotherNode(t *testing.T) {
	tc := startCluster(t, 2, func(i int, c *broker.Config) {
		if i == 0 {
			c.HTTPAddr = "127.0.0.1:0"
		}
	})
	cloud := tc.mustConnect(1, "cloud-h", tc.token("cloud-h", "cloud"))
	cloud.subscribe(t, "things/#", 1)
	door := "http://" + tc.nodes[0].Addr("http")
	tok := tc.token("tv", "publish")
	for _, tt := range []struct {
		topic string
		want  int
	}{
		{"things/tv/telemetry/channel", http.StatusOK},
		{"things/tv/secret", http.StatusOK}, // allowed to publish, withheld from the cloud by node 2
		{"things/other/telemetry/channel", http.StatusForbidden},
	} {
		req, _ := http.NewRequest(http.MethodPost, door+"/topics/"+tt.topic, strings.NewReader("7"))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Fatalf("POST %s: %s %s, want %d", tt.topic, resp.Status, body, tt.want)
		}
	}
	p := cloud.next(t, 10*time.Second)
	if p.Topic != "things/tv/telemetry/channel" || string(p.Payload) != "7" || p.Properties == nil || p.Properties.ContentType != "text/plain" {
		t.Fatalf("node 2 delivered %s %q %+v", p.Topic, p.Payload, p.Properties)
	}
	cloud.none(t, 500*time.Millisecond)
}

// TestEmbedOnATakenPortSaysSo: a route address another process holds fails the
// start at once, and the error names the address and why.
func TestEmbedOnATakenPortSaysSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	e, err := cluster.Start(ctx, cluster.Options{Embed: ln.Addr().String(), NodeName: "n1", StoreDir: t.TempDir(), Logger: testLogger()})
	if err == nil {
		e.Close()
		t.Fatal("started on a taken route port")
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %q: want the address and why", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to say so", d)
	}
}
