package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"imb/internal/freeport"
	"imb/internal/issuer"
)

// TestDrillNodeKilled is the fault drill: three imb nodes as separate processes,
// QoS 1 publishers on every node, subscribers with persistent sessions on nodes
// 2 and 3. Node 1 is killed with SIGKILL while it is publishing; its publisher
// reconnects to node 2 and sends its unacknowledged message again. Every message
// a publisher saw acknowledged reaches every subscriber (duplicates are counted,
// not failed), and the identity rules still hold on the survivors.
func TestDrillNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster of processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := newDrill(t, ctx)
	proc, err := startClusterProc(ctx, d.ref, Options{Nodes: 3, Out: d.out}, d.out+"/drill")
	if err != nil {
		t.Fatal(err)
	}
	defer proc.stop()
	d.run(proc.addrs(), 0, func() {
		if err := proc.nodes[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDrillNATSNodeRestarted is the second drill: the imb nodes join a NATS
// cluster of their own (three NATS servers, here in the test process, with
// JetStream on disk), and one NATS server is shut down during the QoS 1 run and
// started again on its store five seconds later. The imb nodes' connections
// move to the other NATS servers, JetStream elects new leaders for what it led,
// and no acknowledged message is lost.
func TestDrillNATSNodeRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster and three imb processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := newDrill(t, ctx)
	nc := startNATSCluster(t, 3)
	args := make([][]string, 3)
	for i := range args {
		args[i] = []string{"--cluster-nats", strings.Join(nc.urls, ",")}
	}
	proc, err := startNodes(ctx, d.ref, Options{Nodes: 3, Out: d.out}, d.out+"/drill-nats", args)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.stop()
	d.run(proc.addrs(), -1, func() { nc.restart(t, 1, 5*time.Second) })
	if nc.restarts.Load() != 1 {
		t.Fatal("the NATS node was not restarted during the run")
	}
}

// natsCluster is a NATS cluster with JetStream in the test process.
type natsCluster struct {
	mu       sync.Mutex
	opts     []*natsserver.Options
	servers  []*natsserver.Server
	urls     []string
	restarts atomic.Int32
}

// startNATSCluster starts n NATS servers with JetStream, routed to each other.
func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	addrs := freeport.MustAddrs(t, 2*n)
	nc := &natsCluster{}
	var routes []*url.URL
	for i := range n {
		routes = append(routes, &url.URL{Scheme: "nats", Host: addrs[n+i]})
	}
	for i := range n {
		host, cport, _ := net.SplitHostPort(addrs[i])
		_, rport, _ := net.SplitHostPort(addrs[n+i])
		no := &natsserver.Options{
			ServerName: fmt.Sprintf("nats-%d", i+1), Host: host, Port: atoi(t, cport),
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
			Cluster: natsserver.ClusterOpts{Name: "imb", Host: host, Port: atoi(t, rport)},
			Routes:  routes,
		}
		nc.opts = append(nc.opts, no)
		nc.urls = append(nc.urls, "nats://"+addrs[i])
	}
	nc.servers = make([]*natsserver.Server, n)
	for i := range n {
		nc.servers[i] = nc.start(t, i)
	}
	t.Cleanup(func() {
		nc.mu.Lock()
		defer nc.mu.Unlock()
		for _, s := range nc.servers {
			s.Shutdown()
		}
	})
	return nc
}

func (nc *natsCluster) start(t *testing.T, i int) *natsserver.Server {
	ns, err := natsserver.NewServer(nc.opts[i])
	if err != nil {
		t.Errorf("nats-%d: %v", i+1, err)
		return nil
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Errorf("nats-%d did not start", i+1)
	}
	return ns
}

// restart shuts server i down, waits down (the publishers go on meanwhile), and
// starts it again on the same ports and store.
func (nc *natsCluster) restart(t *testing.T, i int, down time.Duration) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	nc.servers[i].Shutdown()
	nc.servers[i].WaitForShutdown()
	time.Sleep(down)
	nc.servers[i] = nc.start(t, i)
	nc.restarts.Add(1)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// drill is the QoS 1 workload both drills run: its issuer, tokens and the
// directory of the nodes' logs.
type drill struct {
	t    *testing.T
	ctx  context.Context
	ref  issuerRef
	toks map[string]string
	out  string
}

func newDrill(t *testing.T, ctx context.Context) *drill {
	t.Helper()
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	ref, err := issuerRefOf(ctx, iss)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.MkdirTemp("", "imb-drill-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(out)
		} else {
			t.Logf("the nodes' logs are in %s", out)
		}
	})
	return &drill{t: t, ctx: ctx, ref: ref, toks: mintTokens(iss, 3, 3).jwt, out: out}
}

// run is the workload against the three nodes at addrs: subscribers with
// persistent sessions on nodes 2 and 3, a QoS 1 publisher on every node. Two
// seconds in, fault runs; victim is the imb node it takes away (-1: none), whose
// publisher moves to the next node. The run goes on until every publisher has
// had 200 more messages acknowledged after the fault; then every acknowledged
// message must reach both subscribers, and the identity rules must still hold.
func (d *drill) run(addrs []string, victim int, fault func()) {
	t, ctx, toks := d.t, d.ctx, d.toks
	t.Helper()
	next := func(node int) int {
		node = (node + 1) % len(addrs)
		if node == victim {
			node = (node + 1) % len(addrs)
		}
		return node
	}
	dialP := func(node int, id string, persistent bool, onMsg func(*paho.Publish)) (*paho.Client, bool, error) {
		conn, err := net.DialTimeout("tcp", addrs[node], 2*time.Second)
		if err != nil {
			return nil, false, err
		}
		cfg := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)}
		if onMsg != nil {
			cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
				onMsg(p.Packet)
				return true, nil
			}}
		}
		c := paho.NewClient(cfg)
		cp := &paho.Connect{ClientID: id, CleanStart: !persistent, KeepAlive: 30, PasswordFlag: true, Password: []byte(toks[id])}
		if persistent {
			cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: paho.Uint32(300)}
		}
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second) // a resume may wait for JetStream's elections and a replay
		defer ccancel()
		ca, err := c.Connect(cctx, cp)
		if err != nil {
			_ = conn.Close()
			if ca != nil {
				return nil, false, fmt.Errorf("CONNACK 0x%02x: %w", ca.ReasonCode, err)
			}
			return nil, false, err
		}
		return c, ca.SessionPresent, nil
	}
	dial := func(node int, id string, persistent bool, onMsg func(*paho.Publish)) (*paho.Client, error) {
		c, _, err := dialP(node, id, persistent, onMsg)
		return c, err
	}

	// dialResume connects id's persistent session again and requires that it
	// is there (CONNACK session present): its subscription and what it missed.
	dialResume := func(node int, id string, onMsg func(*paho.Publish)) (*paho.Client, error) {
		c, present, err := dialP(node, id, true, onMsg)
		if err != nil {
			return nil, err
		}
		if !present {
			_ = c.Disconnect(&paho.Disconnect{})
			return nil, fmt.Errorf("%s resumed on node %d without its session", id, node+1)
		}
		return c, nil
	}

	// A subscriber with a persistent session on every node: what each received,
	// by payload. One whose connection ends (its node killed, or the node let it
	// go without its engine) resumes its session on the next node, as a thing
	// behind a load balancer would.
	type tally struct {
		mu      sync.Mutex
		seen    map[string]int
		resumed int // connections after the first, each with its session present
	}
	subs := []*tally{{seen: map[string]int{}}, {seen: map[string]int{}}, {seen: map[string]int{}}}
	subStop := make(chan struct{})
	var subWG sync.WaitGroup
	defer func() { close(subStop); subWG.Wait() }()
	stopped := func() bool {
		select {
		case <-subStop:
			return true
		default:
			return false
		}
	}
	for i, s := range subs {
		onMsg := func(p *paho.Publish) {
			s.mu.Lock()
			s.seen[string(p.Payload)]++
			s.mu.Unlock()
		}
		c, err := dial(i, appID(i), true, onMsg)
		if err != nil {
			t.Fatalf("subscriber on node %d: %v", i+1, err)
		}
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = c.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "things/+/telemetry/#", QoS: 1}}})
		scancel()
		if err != nil {
			t.Fatal(err)
		}
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			node := i
			for {
				select {
				case <-c.Done():
				case <-subStop:
					_ = c.Disconnect(&paho.Disconnect{})
					return
				}
				for c = nil; c == nil; {
					if stopped() {
						return
					}
					if node == victim || victim < 0 {
						node = next(node)
					}
					var err error
					if c, err = dialResume(node, appID(i), onMsg); err != nil {
						t.Logf("subscriber %d: resume on node %d: %v", i+1, node+1, err)
						c = nil
						time.Sleep(200 * time.Millisecond)
					}
				}
				s.mu.Lock()
				s.resumed++
				s.mu.Unlock()
			}
		}()
	}
	// Publishers, thing i on node i+1: each sends numbered QoS 1 messages, one at
	// a time, and sends a message again until it is acknowledged, reconnecting to
	// the next node when its node is gone.
	var stop atomic.Bool
	acked := make([][]string, 3) // read after wg.Wait
	var ackedN [3]atomic.Int64
	var retries [3]atomic.Int64
	var lastErr [3]atomic.Value
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, node := thingID(i), i
			var c *paho.Client
			for seq := 0; !stop.Load(); {
				if c == nil {
					var err error
					if c, err = dial(node, id, false, nil); err != nil {
						retries[i].Add(1)
						lastErr[i].Store(fmt.Sprintf("connect to node %d: %v", node+1, err))
						node = next(node)
						time.Sleep(100 * time.Millisecond)
						continue
					}
				}
				msg := fmt.Sprintf("%s-%d", id, seq)
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := c.Publish(pctx, &paho.Publish{Topic: telemetryTopic(id), QoS: 1, Payload: []byte(msg)})
				pcancel()
				if err != nil || resp == nil || resp.ReasonCode >= 0x80 {
					retries[i].Add(1)
					if resp != nil {
						lastErr[i].Store(fmt.Sprintf("node %d: PUBACK 0x%02x %s", node+1, resp.ReasonCode, resp.Properties.ReasonString))
					} else {
						lastErr[i].Store(fmt.Sprintf("node %d: publish: %v", node+1, err))
					}
					if err != nil { // the connection is gone, or its node: another node
						go func(c *paho.Client) { _ = c.Disconnect(&paho.Disconnect{}) }(c)
						c = nil
						if node == victim {
							node = next(node)
						}
					}
					time.Sleep(100 * time.Millisecond)
					continue // the same message again
				}
				acked[i] = append(acked[i], msg)
				ackedN[i].Add(1)
				seq++
			}
			if c != nil {
				_ = c.Disconnect(&paho.Disconnect{})
			}
		}()
	}
	time.Sleep(2 * time.Second)
	var atFault [3]int
	for i := range atFault {
		atFault[i] = int(ackedN[i].Load())
	}
	fault()
	// The fault is over when fault returns (a restarted server is back).
	// JetStream elects new leaders for what was lost; the drill goes on until
	// every publisher has had 200 messages acknowledged since.
	var afterFault [3]int
	for i := range afterFault {
		afterFault[i] = int(ackedN[i].Load())
	}
	behind := func() int {
		for i := range afterFault {
			if int(ackedN[i].Load()) < afterFault[i]+200 {
				return i
			}
		}
		return -1
	}
	for wait := time.Now().Add(60 * time.Second); behind() >= 0 && time.Now().Before(wait); {
		time.Sleep(100 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if i := behind(); i >= 0 {
		t.Fatalf("the publisher that began on node %d got %d acknowledged in 60 s after the fault (%d before, %d retries, last: %v)",
			i+1, len(acked[i])-afterFault[i], afterFault[i], retries[i].Load(), lastErr[i].Load())
	}

	// Every acknowledged message reaches both subscribers. A node's consumer that
	// was restarted during the elections gets what it had pulled and not yet
	// acknowledged again after AckWait (30 s): the wait covers that.
	deadline := time.Now().Add(45 * time.Second)
	for {
		lost, dups := 0, 0
		for _, s := range subs {
			s.mu.Lock()
			for _, msgs := range acked {
				for _, m := range msgs {
					switch n := s.seen[m]; {
					case n == 0:
						lost++
					case n > 1:
						dups += n - 1
					}
				}
			}
			s.mu.Unlock()
		}
		if lost == 0 {
			total := len(acked[0]) + len(acked[1]) + len(acked[2])
			if victim >= 0 {
				subs[victim].mu.Lock()
				r := subs[victim].resumed
				subs[victim].mu.Unlock()
				if r == 0 {
					t.Fatal("the subscriber of the lost node never resumed its session elsewhere")
				}
			}
			resumed := 0
			for _, s := range subs {
				s.mu.Lock()
				resumed += s.resumed
				s.mu.Unlock()
			}
			t.Logf("drill: %d messages acknowledged (%d before the fault), 0 lost to 3 subscribers, %d duplicates, %d publish retries, %d subscriber sessions resumed on another connection",
				total, atFault[0]+atFault[1]+atFault[2], dups, retries[0].Load()+retries[1].Load()+retries[2].Load(), resumed)
			break
		}
		if time.Now().After(deadline) {
			for si, s := range subs {
				s.mu.Lock()
				for pi, msgs := range acked {
					n, first := 0, ""
					for _, m := range msgs {
						if s.seen[m] == 0 {
							if n == 0 {
								first = m
							}
							n++
						}
					}
					t.Logf("subscriber on node %d: %d of %d messages of the publisher that began on node %d lost (first %s)", si+1, n, len(msgs), pi+1, first)
				}
				s.mu.Unlock()
			}
			t.Fatalf("%d acknowledged messages did not reach the subscribers (fault after %v)", lost, atFault)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The identity rules hold on the survivors: a thing may not publish into
	// another thing's topic.
	c, err := dial(next(victim), thingID(0), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	resp, err := c.Publish(pctx, &paho.Publish{Topic: telemetryTopic(thingID(1)), QoS: 1, Payload: []byte("forged")})
	if err == nil && (resp == nil || resp.ReasonCode != 0x87) {
		t.Fatalf("publishing into another thing's topic after the kill: %+v", resp)
	}
}
