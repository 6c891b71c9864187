package main

import (
	"fmt"
	"math"
	"strings"
)

// metricsFor lists the figures the summary table shows for a scenario, in column
// order. The JSON file holds every figure of every run.
func metricsFor(scenario string) []Metric {
	switch scenario {
	case scenarioConnect:
		return []Metric{
			{"connects_per_s", "connects/s (fresh tokens)", "/s", true},
			{"connect_p50_ms", "connect p50", "ms", false},
			{"connect_p99_ms", "connect p99", "ms", false},
			{"connect_max_ms", "connect max", "ms", false},
			{"reconnects_per_s", "reconnects/s (same tokens)", "/s", true},
			{"reconnect_p99_ms", "reconnect p99", "ms", false},
			{"upstream_calls_connect", "upstream calls, connect", "", false},
			{"upstream_calls_reconnect", "upstream calls, reconnect", "", false},
			{"broker_cpu_us_per_connect", "broker CPU/connect", "µs", false},
			{"broker_cpu_us_per_reconnect", "broker CPU/reconnect", "µs", false},
			{"broker_rss_peak_mb", "broker RSS peak", "MB", false},
			{"errors", "errors", "", false},
		}
	case scenarioNoisy:
		return []Metric{
			{"quiet_deliveries_per_s", "others' deliveries/s, no flooder", "/s", true},
			{"flood_deliveries_per_s", "others' deliveries/s, flooder on", "/s", true},
			{"deliveries_flood_to_quiet", "deliveries flooder on / off", "", true},
			{"quiet_latency_p99_ms", "others' p99, no flooder", "ms", false},
			{"flood_latency_p99_ms", "others' p99, flooder on", "ms", false},
			{"p99_flood_to_quiet", "p99 flooder on / off", "", false},
			{"flooder_sent_per_s", "flooder sent/s", "/s", false},
			{"flooder_accepted_per_s", "flooder accepted/s", "/s", false},
			{"flooder_sustained_per_s", "flooder accepted/s after its burst", "/s", false},
			{"flooder_sustained_to_limit", "that / its limit", "", false},
			{"errors", "errors", "", false},
			{"broker_cpu_s", "broker CPU", "s", false},
			{"broker_rss_peak_mb", "broker RSS peak", "MB", false},
		}
	case scenarioMemory:
		return []Metric{
			{"connected", "things connected", "", true},
			{"alive_after", "still connected at the end", "", true},
			{"rss_before_mb", "RSS before", "MB", false},
			{"rss_after_mb", "RSS after", "MB", false},
			{"rss_kb_per_thing", "RSS per thing", "KiB", false},
			{"connects_per_s", "connects/s", "/s", true},
			{"connect_p99_ms", "connect p99", "ms", false},
			{"upstream_calls", "upstream calls", "", false},
			{"errors", "errors", "", false},
		}
	default:
		return []Metric{
			{"deliveries_per_s", "deliveries/s", "/s", true},
			{"publishes_per_s", "publishes/s", "/s", true},
			{"latency_p50_ms", "latency p50", "ms", false},
			{"latency_p95_ms", "latency p95", "ms", false},
			{"latency_p99_ms", "latency p99", "ms", false},
			{"latency_max_ms", "latency max", "ms", false},
			{"drops", "drops", "", false},
			{"errors", "errors", "", false},
			{"broker_cpu_us_per_delivery", "broker CPU/delivery", "µs", false},
			{"broker_rss_peak_mb", "broker RSS peak", "MB", false},
			{"upstream_calls", "upstream calls", "", false},
		}
	}
}

// markdown renders the summary: one row per target, each cell the median and its
// ratio to the baseline.
func markdown(rep *Report) string {
	var b strings.Builder
	o := rep.Options
	fmt.Fprintf(&b, "## loadtest %s\n\n", rep.Scenario)
	fmt.Fprintf(&b, "`%s`\n\n", rep.Command)
	fmt.Fprintf(&b, "%s; %d CPUs, %s, kernel %s", rep.Started.Format("2006-01-02 15:04 UTC"), rep.Host.CPUs, rep.Host.GoVersion, rep.Host.Kernel)
	if rep.Host.Mosquitto != "" {
		fmt.Fprintf(&b, ", %s", rep.Host.Mosquitto)
	}
	if rep.Host.RabbitMQ != "" {
		fmt.Fprintf(&b, ", %s", rep.Host.RabbitMQ)
	}
	fmt.Fprintf(&b, ". %s.\n\n", describeLoad(o))
	if len(rep.Host.LoadAvg) > 0 {
		fmt.Fprintf(&b, "Load average (1, 5, 15 min) at start and end: %s.\n\n", strings.Join(rep.Host.LoadAvg, "; "))
	}
	if rep.CryptoFloor > 0 {
		fmt.Fprintf(&b, "ES256 verification floor on this machine, all cores, nothing else: %.0f verifications/s.\n\n", rep.CryptoFloor)
	}
	b.WriteString("| target | runs |")
	for _, m := range rep.Metrics {
		unit := ""
		if m.Unit != "" && m.Unit != "/s" {
			unit = " (" + m.Unit + ")"
		}
		fmt.Fprintf(&b, " %s%s |", m.Label, unit)
	}
	b.WriteString("\n|---|---|")
	for range rep.Metrics {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, s := range rep.Summaries {
		runs := fmt.Sprint(s.Runs)
		if s.Failed > 0 {
			runs = fmt.Sprintf("%d (%d failed)", s.Runs, s.Failed)
		}
		fmt.Fprintf(&b, "| %s | %s |", s.Target, runs)
		for _, m := range rep.Metrics {
			v, r := cell(s, m.Key)
			if r != "" {
				v += " (" + r + ")"
			}
			fmt.Fprintf(&b, " %s |", v)
		}
		b.WriteString("\n")
	}
	b.WriteString("\nMedians over the runs.")
	for _, s := range rep.Summaries {
		if s.Target == targetBaseline {
			b.WriteString(" (n×) is the ratio to the baseline's median.")
		}
	}
	if len(rep.Summaries) > 0 {
		b.WriteString(" Errors by reason:")
		for _, s := range rep.Summaries {
			fmt.Fprintf(&b, " %s: %s;", s.Target, describeErrors(s.Errors))
		}
	}
	b.WriteString("\n")
	for _, r := range rep.Runs {
		if r.Failure != "" {
			fmt.Fprintf(&b, "\n- run %d of %s failed: %s", r.Repeat, r.Target, r.Failure)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "\n- %s", n)
	}
	b.WriteString("\n")
	return b.String()
}

// describeLoad says in words what the scenario did.
func describeLoad(o Options) string {
	bound := fmt.Sprintf("for %s", o.Duration)
	if o.Messages > 0 {
		bound = fmt.Sprintf("%d messages each (at most %s)", o.Messages, o.Duration)
	}
	pace := "unpaced"
	if o.Rate > 0 {
		pace = fmt.Sprintf("%.0f msg/s each", o.Rate)
	}
	switch o.Scenario {
	case scenarioP2P:
		return fmt.Sprintf("p2p: %d things publish their telemetry to %d fleet:read subscribers (one each), QoS %d, %d-byte payload, %s, %s, window %d", o.Clients, o.Clients, o.QoS, o.Payload, bound, pace, o.Inflight)
	case scenarioFanout:
		return fmt.Sprintf("fan-out: 1 thing publishes to %d fleet:read subscribers, QoS %d, %d-byte payload, %s, %s, window %d", o.Clients, o.QoS, o.Payload, bound, pace, o.Inflight)
	case scenarioFanin:
		return fmt.Sprintf("fan-in: %d things publish to a shared subscription of %d, QoS %d, %d-byte payload, %s, %s, window %d", o.Clients, o.Subscribers, o.QoS, o.Payload, bound, pace, o.Inflight)
	case scenarioConnect:
		return fmt.Sprintf("connect storm: %d things connect with fresh tokens, then reconnect with the same tokens, %d at once; introspection latency %s, error rate %g", o.Clients, o.Concurrency, o.IntrospectLatency, o.IntrospectErrorRate)
	case scenarioNoisy:
		return fmt.Sprintf("noisy neighbour: %d things publish their telemetry at %s, QoS %d, %d-byte payload, to one fleet:read subscriber, %s without and then %s with a flooder publishing QoS 0 at %g× its limit of %d msg/s (burst %d; imb targets only: the others have no limits)", o.Clients, pace, o.QoS, o.Payload, bound, bound, o.FloodFactor, floodLimit, floodBurst)
	default:
		return fmt.Sprintf("memory: %d things connected and subscribed to their commands, %d connecting at once", o.Clients, o.Concurrency)
	}
}

// cell is a summary's median of a figure and its ratio to the baseline ("" for
// the baseline itself or when there is none); "–" when the figure is missing.
func cell(s Summary, key string) (value, ratio string) {
	v, ok := s.Median[key]
	if !ok {
		return "–", ""
	}
	if r, ok := s.Ratio[key]; ok && s.Target != targetBaseline {
		ratio = formatRatio(r) + "×"
	}
	return formatValue(v), ratio
}

func formatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e6:
		return fmt.Sprintf("%.0f", v)
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func formatRatio(r float64) string {
	return fmt.Sprintf("%.3f", r)
}
