package main

import (
	"context"
	"io"
	"os"
	"testing"
	"time"
)

// TestPlacement: same node keeps each subscriber with its publisher, cross node
// never does, and both use every node.
func TestPlacement(t *testing.T) {
	for _, tt := range []struct {
		scenario string
		clients  int
	}{{scenarioP2P, 6}, {scenarioFanout, 5}} {
		o := Options{Scenario: tt.scenario, Nodes: 3, Clients: tt.clients}
		subs := tt.clients
		pubOf := func(i int) int { // the dial index of subscriber i's publisher
			if tt.scenario == scenarioFanout {
				return subs
			}
			return subs + i
		}
		for _, cross := range []bool{false, true} {
			place := placement(o, subs, cross)
			used := map[int]bool{}
			for i := range subs {
				same := place(i) == place(pubOf(i))
				if same == cross {
					t.Errorf("%s cross=%v: subscriber %d on node %d, its publisher on node %d", tt.scenario, cross, i, place(i), place(pubOf(i)))
				}
				used[place(i)], used[place(pubOf(i))] = true, true
			}
			if want := 3; tt.scenario == scenarioP2P && len(used) != want {
				t.Errorf("%s cross=%v: nodes used %v, want all %d", tt.scenario, cross, used, want)
			}
		}
	}
}

// TestCompareCluster: compare --nodes 3 runs imb-jwt as three real nodes, once
// same-node and once cross-node, and every QoS 1 message arrives in both.
func TestCompareCluster(t *testing.T) {
	o, err := parseOptions("compare", []string{"--nodes", "3", "--scenario", "p2p", "--clients", "3", "--qos", "1",
		"--messages", "50", "--out", t.TempDir(), "--quiet"}, os.Stderr, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := compare(ctx, o, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Target != clusterSame || rep.Runs[1].Target != clusterCross {
		t.Fatalf("runs %+v", rep.Runs)
	}
	for _, r := range rep.Runs {
		v := r.Values
		if r.Failure != "" || v["deliveries"] != 150 || v["drops"] != 0 || v["nodes"] != 3 {
			t.Errorf("%s: failure %q, %g deliveries, %g drops, %g nodes; want 150, 0, 3", r.Target, r.Failure, v["deliveries"], v["drops"], v["nodes"])
		}
		if v["broker_cpu_us_per_delivery"] <= 0 || v["broker_rss_peak_mb"] < 30 {
			t.Errorf("%s: CPU/delivery %g µs, RSS %g MB: not three nodes' figures", r.Target, v["broker_cpu_us_per_delivery"], v["broker_rss_peak_mb"])
		}
	}
}

func TestClusterOptions(t *testing.T) {
	for _, args := range [][]string{{"--nodes", "9"}, {"--nodes", "3", "--scenario", "connect"}} {
		if _, err := parseOptions("compare", args, os.Stderr, false); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// TestFleetSmall runs the fleet command at a small size: every thing connects
// through its own generator process to its node, every acknowledged command
// reaches its thing, and telemetry is acknowledged.
func TestFleetSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two imb nodes and two generator processes")
	}
	o, err := parseFleet([]string{"--things", "300", "--nodes", "2", "--generators", "2", "--duration", "3s",
		"--telemetry-every", "1s", "--command-share", "0.5", "--out", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := fleet(ctx, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected != 300 || rep.Refused != 0 || rep.Failed != 0 {
		t.Fatalf("%d connected, %d refused, %d failed; want 300, 0, 0", rep.Connected, rep.Refused, rep.Failed)
	}
	if rep.Commands < 100 || rep.CommandsLost != 0 {
		t.Fatalf("%d commands acknowledged, %d lost; want >= 100 and 0", rep.Commands, rep.CommandsLost)
	}
	if rep.Telemetry < 300 || rep.TelemetryFailed != 0 || rep.Disconnected != 0 {
		t.Fatalf("telemetry %d acknowledged, %d failed, %d disconnected; want >= 300, 0, 0", rep.Telemetry, rep.TelemetryFailed, rep.Disconnected)
	}
	if rep.KiBPerThing <= 0 || rep.CommandP99ms <= 0 {
		t.Fatalf("no memory (%g KiB per thing) or latency (p99 %g ms) measured", rep.KiBPerThing, rep.CommandP99ms)
	}
}

func TestFleetRefusesTooManyPerProcess(t *testing.T) {
	for _, args := range [][]string{
		{"--things", "100000", "--nodes", "5"},
		{"--things", "100000", "--generators", "3"},
		{"--things", "0"},
		{"--duration", "0s"},
	} {
		if _, err := parseFleet(args, io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
