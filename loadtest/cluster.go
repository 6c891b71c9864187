package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"imb/internal/freeport"
)

// Cluster mode (--nodes N): imb-jwt runs as N broker children joined through
// embedded NATS JetStream, the clients spread over the nodes as a load balancer
// would spread them, and each run is one of two placements:
//   - same node: each subscriber on its publisher's node (p2p pairs round-robin
//     over the nodes; fan-out: every subscriber on the publisher's node);
//   - cross node: no subscriber on its publisher's node.
// Broker CPU and memory are the sums over all nodes, so the ratio of the two
// placements' CPU per delivery is what a delivery across nodes costs more. The
// same-node figure includes what the other nodes spend receiving a message that
// nobody there subscribed to: every message goes to every node.

// Cluster placements, reported as targets.
const (
	clusterSame  = targetJWT + "@same-node"
	clusterCross = targetJWT + "@cross-node"
)

var clusterPlacements = []string{clusterSame, clusterCross}

// maxClusterNodes bounds --nodes: every node is a process on this machine.
const maxClusterNodes = 5

// checkCluster refuses a cluster run that cannot be measured.
func (o *Options) checkCluster() error {
	if o.Nodes < 1 {
		o.Nodes = 1
	}
	if o.Nodes == 1 {
		return nil
	}
	if o.Nodes > maxClusterNodes {
		return fmt.Errorf("--nodes %d: want 1 to %d", o.Nodes, maxClusterNodes)
	}
	if o.Scenario != scenarioP2P && o.Scenario != scenarioFanout {
		return fmt.Errorf("--nodes %d: the cluster mode measures p2p and fanout, not %s", o.Nodes, o.Scenario)
	}
	return nil
}

// placement returns the node each client dials, by the index runTraffic dials it
// with: subscribers 0..subs-1, then publishers.
func placement(o Options, subs int, cross bool) func(i int) int {
	n := o.Nodes
	return func(i int) int {
		if o.Scenario == scenarioFanout {
			if i >= subs { // the one publisher
				return 0
			}
			if cross {
				return 1 + i%(n-1)
			}
			return 0
		}
		if i >= subs { // publisher of pair i-subs
			return (i - subs) % n
		}
		if cross {
			return (i + 1) % n
		}
		return i % n
	}
}

// clusterProc is the N children of one cluster run.
type clusterProc struct {
	nodes []*brokerProc
}

func (c *clusterProc) addrs() []string {
	out := make([]string, len(c.nodes))
	for i, p := range c.nodes {
		out[i] = p.addr
	}
	return out
}

func (c *clusterProc) pids() []int {
	out := make([]int, len(c.nodes))
	for i, p := range c.nodes {
		out[i] = p.Pid()
	}
	return out
}

func (c *clusterProc) stop() {
	var wg sync.WaitGroup
	for _, p := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}

// startClusterProc starts o.Nodes imb-jwt children routed to each other, all at
// once: each waits for JetStream's quorum, which needs the others.
func startClusterProc(ctx context.Context, ref issuerRef, o Options, prefix string) (*clusterProc, error) {
	routes, err := freeport.Addrs(o.Nodes)
	if err != nil {
		return nil, err
	}
	args := make([][]string, o.Nodes)
	for i := range o.Nodes {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats://"+r)
			}
		}
		args[i] = []string{"--cluster-embed", routes[i], "--cluster-routes", strings.Join(others, ",")}
	}
	return startNodes(ctx, ref, o, prefix, args)
}

// startNodes starts one imb-jwt child per entry of clusterArgs, named n1, n2,
// ..., each with its cluster flags, all at once.
func startNodes(ctx context.Context, ref issuerRef, o Options, prefix string, clusterArgs [][]string) (*clusterProc, error) {
	n := len(clusterArgs)
	c := &clusterProc{nodes: make([]*brokerProc, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		no := o
		no.clusterArgs = append(slices.Clone(clusterArgs[i]), "--node-name", fmt.Sprintf("n%d", i+1))
		profile := ""
		if o.CPUProfile {
			profile = fmt.Sprintf("%s-n%d.cpu.pprof", prefix, i+1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = startBroker(ctx, targetJWT, ref, no, fmt.Sprintf("%s-n%d.log", prefix, i+1), profile)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, p := range c.nodes {
			if p != nil {
				p.stop()
			}
		}
		return nil, err
	}
	return c, nil
}

// compareCluster is compareOne for a cluster placement.
func compareCluster(ctx context.Context, o Options, target string, repeat int, ref issuerRef, toks map[string]string,
	prefix string, base time.Time, progress io.Writer) Run {
	proc, err := startClusterProc(ctx, ref, o, prefix)
	if err != nil {
		return Run{Target: target, Repeat: repeat, Started: time.Now(), Failure: err.Error()}
	}
	defer proc.stop()
	// p2p: o.Clients pairs; fanout: o.Clients subscribers. Either way the
	// subscribers come first (planTraffic).
	e := &runEnv{target: target, addr: proc.nodes[0].addr, addrs: proc.addrs(), nodeOf: placement(o, o.Clients, target == clusterCross),
		pidList: proc.pids(), tokens: toks, o: o, errs: &errorCounts{}, progress: progress,
		label: fmt.Sprintf("%s %d/%d", target, repeat, o.Repeat), base: base}
	run, err := runTraffic(ctx, e)
	run.Target, run.Repeat = target, repeat
	run.Errors = e.errs.snapshot()
	run.Values["nodes"] = float64(o.Nodes)
	if err != nil {
		run.Failure = err.Error()
	}
	return run
}
