package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// tinyCompare runs a real compare (brokers as child processes, real tokens, real
// MQTT on loopback) with small numbers and returns the report read back from its
// JSON file.
func tinyCompare(t *testing.T, args ...string) (*Report, string) {
	t.Helper()
	out := t.TempDir()
	o, err := parseOptions("compare", append(args, "--out", out, "--quiet"), os.Stderr, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := compare(ctx, o, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := writeReports(rep, out)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("JSON report does not decode: %v", err)
	}
	md, err := os.ReadFile(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(paths[2])
	if err != nil {
		t.Fatal(err)
	}
	checkStructure(t, &back, string(md), string(page))
	for _, r := range back.Runs {
		if r.Failure != "" {
			t.Errorf("%s run %d failed: %s", r.Target, r.Repeat, r.Failure)
		}
		if len(r.Errors) > 0 {
			t.Errorf("%s run %d: errors %v", r.Target, r.Repeat, r.Errors)
		}
	}
	return &back, out
}

// checkStructure checks what every report must hold: a summary per target with
// every table figure, ratios that are the medians' quotients, a Markdown row per
// target and an HTML page with its charts.
func checkStructure(t *testing.T, rep *Report, md, page string) {
	t.Helper()
	want := slices.Clone(rep.Options.Targets)
	if rep.Host.Mosquitto == "" {
		want = slices.DeleteFunc(want, func(t string) bool { return t == targetMosquitto })
	}
	if rep.Host.RabbitMQ == "" {
		want = slices.DeleteFunc(want, func(t string) bool { return t == targetRabbitMQ })
	}
	var got []string
	for _, s := range rep.Summaries {
		got = append(got, s.Target)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("summaries for %v, want %v", got, want)
	}
	base := rep.Summaries[0]
	for _, s := range rep.Summaries {
		if s.Runs != rep.Options.Repeat {
			t.Errorf("%s: %d runs, want %d", s.Target, s.Runs, rep.Options.Repeat)
		}
		for _, m := range rep.Metrics {
			v, ok := s.Median[m.Key]
			if !ok {
				t.Errorf("%s: no figure %s", s.Target, m.Key)
				continue
			}
			if b := base.Median[m.Key]; b != 0 {
				if r := s.Ratio[m.Key]; math.Abs(r-v/b) > 1e-9 {
					t.Errorf("%s %s: ratio %g, want %g/%g", s.Target, m.Key, r, v, b)
				}
			} else if _, ok := s.Ratio[m.Key]; ok {
				t.Errorf("%s %s: ratio to a zero baseline", s.Target, m.Key)
			}
		}
		if !strings.Contains(md, "| "+s.Target+" |") {
			t.Errorf("Markdown has no row for %s", s.Target)
		}
		if !strings.Contains(page, ">"+s.Target+"<") {
			t.Errorf("HTML has no entry for %s", s.Target)
		}
	}
	if n := strings.Count(page, "<svg"); n != 3 {
		t.Errorf("HTML has %d charts, want 3", n)
	}
	for _, r := range rep.Runs {
		if r.Failure == "" && (len(r.Latency) == 0 || len(r.Timeline) == 0) {
			t.Errorf("%s run %d: no latency buckets or timeline", r.Target, r.Repeat)
		}
		if r.Failure == "" && r.Target != targetURL && r.Values["broker_rss_peak_mb"] <= 0 {
			t.Errorf("%s run %d: broker RSS not read", r.Target, r.Repeat)
		}
	}
}

func ordered(t *testing.T, name string, v map[string]float64, prefix string) {
	t.Helper()
	p50, p95, p99, mx := v[prefix+"_p50_ms"], v[prefix+"_p95_ms"], v[prefix+"_p99_ms"], v[prefix+"_max_ms"]
	if !(p50 > 0 && p50 <= p95 && p95 <= p99 && p99 <= mx) {
		t.Errorf("%s: %s quantiles out of order: p50 %g p95 %g p99 %g max %g", name, prefix, p50, p95, p99, mx)
	}
}

func TestCompareFanoutQoS1(t *testing.T) {
	const subs = 5
	rep, _ := tinyCompare(t, "--scenario", "fanout", "--clients", "5", "--qos", "1", "--messages", "300", "--duration", "10s")
	for _, r := range rep.Runs {
		v := r.Values
		if v["publishes"] != 300 {
			t.Errorf("%s: %g publishes acknowledged, want 300", r.Target, v["publishes"])
		}
		if v["deliveries"] != v["publishes"]*subs || v["expected_deliveries"] != v["publishes"]*subs {
			t.Errorf("%s: %g deliveries (expected %g) for %g publishes to %d subscribers", r.Target, v["deliveries"], v["expected_deliveries"], v["publishes"], subs)
		}
		if v["drops"] != 0 || v["duplicates"] != 0 || v["errors"] != 0 {
			t.Errorf("%s: drops %g duplicates %g errors %g", r.Target, v["drops"], v["duplicates"], v["errors"])
		}
		if v["deliveries_per_s"] <= 0 || v["publishes_per_s"] <= 0 {
			t.Errorf("%s: rates %g/%g", r.Target, v["deliveries_per_s"], v["publishes_per_s"])
		}
		ordered(t, r.Target, v, "latency")
		var n uint64
		for _, b := range r.Latency {
			n += b.Count
		}
		if float64(n) != v["deliveries"] {
			t.Errorf("%s: latency histogram holds %d values for %g deliveries", r.Target, n, v["deliveries"])
		}
	}
}

// TestCompareFanoutMQTT311 runs the clients as MQTT 3.1.1 against the targets that
// speak both versions: every message arrives, with its timestamp read from the
// right offset (a payload misread by one byte would give latencies of years).
func TestCompareFanoutMQTT311(t *testing.T) {
	rep, _ := tinyCompare(t, "--scenario", "fanout", "--clients", "3", "--qos", "1", "--messages", "100", "--mqtt", "3.1.1",
		"--targets", "baseline,imb-jwt,mosquitto")
	if rep.Options.MQTT != "3.1.1" {
		t.Fatalf("report says MQTT %q", rep.Options.MQTT)
	}
	for _, r := range rep.Runs {
		v := r.Values
		if v["publishes"] != 100 || v["deliveries"] != 300 || v["drops"] != 0 {
			t.Errorf("%s: %g publishes, %g deliveries, %g drops; want 100, 300, 0", r.Target, v["publishes"], v["deliveries"], v["drops"])
		}
		if v["latency_max_ms"] <= 0 || v["latency_max_ms"] > 60e3 {
			t.Errorf("%s: latency max %g ms: timestamps misread", r.Target, v["latency_max_ms"])
		}
	}
}

func TestCompareFaninSharedQoS1(t *testing.T) {
	rep, _ := tinyCompare(t, "--scenario", "fanin", "--clients", "4", "--subscribers", "2", "--qos", "1",
		"--messages", "100", "--targets", "baseline,imb-jwt")
	for _, r := range rep.Runs {
		v := r.Values
		if v["publishes"] != 400 || v["deliveries"] != 400 || v["drops"] != 0 {
			t.Errorf("%s: %g publishes, %g deliveries, %g drops; want 400, 400, 0 (each message to one member of the group)",
				r.Target, v["publishes"], v["deliveries"], v["drops"])
		}
	}
}

func TestCompareConnectUpstreamCalls(t *testing.T) {
	const things = 30
	rep, _ := tinyCompare(t, "--scenario", "connect", "--things", "30", "--concurrency", "30", "--introspect-latency", "20ms")
	// Upstream introspection calls per phase: every fresh token once when
	// introspected; again on reconnect only without the cache; never for JWTs.
	want := map[string][2]float64{
		targetBaseline:           {0, 0},
		targetJWT:                {0, 0},
		targetIntrospect:         {things, 0},
		targetIntrospectUncached: {things, things},
		targetMosquitto:          {0, 0},
	}
	for _, r := range rep.Runs {
		v := r.Values
		if v["connects"] != things || v["reconnects"] != things {
			t.Errorf("%s: %g connects, %g reconnects, want %d each", r.Target, v["connects"], v["reconnects"], things)
		}
		w := want[r.Target]
		if v["upstream_calls_connect"] != w[0] || v["upstream_calls_reconnect"] != w[1] {
			t.Errorf("%s: upstream calls %g + %g, want %g + %g", r.Target, v["upstream_calls_connect"], v["upstream_calls_reconnect"], w[0], w[1])
		}
		if v["distinct_tokens"] != things {
			t.Errorf("%s: %g distinct tokens", r.Target, v["distinct_tokens"])
		}
		ordered(t, r.Target, v, "connect")
		if strings.HasPrefix(r.Target, "imb-introspect") && v["connect_p50_ms"] < 20 {
			t.Errorf("%s: connect p50 %g ms below the endpoint's 20 ms latency", r.Target, v["connect_p50_ms"])
		}
	}
	if rep.CryptoFloor <= 0 {
		t.Error("no ES256 floor measured")
	}
}

func TestCompareMemory(t *testing.T) {
	rep, out := tinyCompare(t, "--scenario", "memory", "--things", "50", "--targets", "baseline,imb-jwt", "--settle", "300ms", "--heapprofile")
	// Each imb child wrote a heap profile and its MemStats at both readings.
	for _, suffix := range []string{"-1.pprof", "-2.pprof", "-1.txt", "-2.txt"} {
		files, _ := filepath.Glob(filepath.Join(out, "*.heap"+suffix))
		if len(files) != len(rep.Runs) {
			t.Errorf("%d heap files *%s for %d runs: %v", len(files), suffix, len(rep.Runs), files)
		}
		for _, f := range files {
			if b, err := os.ReadFile(f); err != nil || len(b) == 0 ||
				(strings.HasSuffix(f, ".txt") && !strings.Contains(string(b), "stack_inuse ")) {
				t.Errorf("%s: empty or without stack_inuse (%v)", f, err)
			}
		}
	}
	for _, r := range rep.Runs {
		v := r.Values
		if v["connected"] != 50 || v["subscribed"] != 50 || v["alive_after"] != 50 {
			t.Errorf("%s: %g connected, %g subscribed, %g alive at the end, want 50", r.Target, v["connected"], v["subscribed"], v["alive_after"])
		}
		if v["rss_after_mb"] <= 0 || v["rss_before_mb"] <= 0 {
			t.Errorf("%s: RSS not read: %g → %g", r.Target, v["rss_before_mb"], v["rss_after_mb"])
		}
		if got := v["rss_kb_per_thing"] * 1024 * 50 / (1 << 20); math.Abs(got-v["rss_delta_mb"]) > 1e-6 {
			t.Errorf("%s: per-thing figure %g KiB does not match the delta %g MB", r.Target, v["rss_kb_per_thing"], v["rss_delta_mb"])
		}
	}
}

func TestCompareP2PQoS0Profile(t *testing.T) {
	rep, out := tinyCompare(t, "--scenario", "p2p", "--clients", "2", "--qos", "0", "--duration", "500ms", "--rate", "500",
		"--targets", "baseline,imb-jwt", "--cpuprofile")
	for _, r := range rep.Runs {
		v := r.Values
		if v["publishes"] <= 0 || v["deliveries"] > v["publishes"] || v["deliveries"]+v["drops"] != v["expected_deliveries"] {
			t.Errorf("%s: %g publishes, %g deliveries, %g drops, %g expected", r.Target, v["publishes"], v["deliveries"], v["drops"], v["expected_deliveries"])
		}
		if st, err := os.Stat(r.Profile); err != nil || st.Size() == 0 || filepath.Dir(r.Profile) != out {
			t.Errorf("%s: CPU profile %q missing or empty (%v)", r.Target, r.Profile, err)
		}
	}
}

// TestCompareNoisyNeighbour: imb holds the flooder to its limit (the baseline,
// without limits, lets all of it through) and every message of the others arrives
// in both phases.
func TestCompareNoisyNeighbour(t *testing.T) {
	rep, _ := tinyCompare(t, "--scenario", "noisy-neighbour", "--clients", "5", "--rate", "20", "--duration", "3s",
		"--flood-factor", "10", "--targets", "baseline,imb-jwt")
	for _, r := range rep.Runs {
		v := r.Values
		if r.Failure != "" || v["errors"] != 0 {
			t.Fatalf("%s: failure %q, errors %v", r.Target, r.Failure, r.Errors)
		}
		if v["quiet_deliveries_per_s"] <= 0 || v["flood_deliveries_per_s"] <= 0 {
			t.Errorf("%s: deliveries/s %g quiet, %g flood", r.Target, v["quiet_deliveries_per_s"], v["flood_deliveries_per_s"])
		}
		ordered(t, r.Target+" quiet", v, "quiet_latency")
		ordered(t, r.Target+" flood", v, "flood_latency")
		sent, accepted := v["flooder_sent_per_s"], v["flooder_sustained_per_s"]
		if sent < 150 {
			t.Errorf("%s: the flooder sent %g/s, want about 200", r.Target, sent)
		}
		switch r.Target {
		case "baseline":
			if accepted < 0.9*sent {
				t.Errorf("baseline has no limits, yet accepted %g/s of %g/s", accepted, sent)
			}
		case "imb-jwt":
			if accepted < 0.8*floodLimit || accepted > 1.2*floodLimit {
				t.Errorf("imb accepted %g/s of the flooder's %g/s, want its limit %d/s", accepted, sent, floodLimit)
			}
		}
	}
}
