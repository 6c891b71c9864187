package main

import (
	"maps"
	"slices"
	"sort"
	"time"

	"imb/loadtest/hist"
)

// Metric describes one reported figure.
type Metric struct {
	Key            string `json:"key"`
	Label          string `json:"label"`
	Unit           string `json:"unit"`
	HigherIsBetter bool   `json:"higher_is_better"`
}

// Sample is one second of a run: rates over that second and the broker's
// resources at its end.
type Sample struct {
	T             float64 `json:"t_s"`
	ConnectsPerS  float64 `json:"connects_per_s"`
	PublishesPerS float64 `json:"publishes_per_s"`
	DeliveriesPer float64 `json:"deliveries_per_s"`
	RSSMB         float64 `json:"broker_rss_mb"`
	CPUPercent    float64 `json:"broker_cpu_percent"`
}

// Run is one scenario run against one target.
type Run struct {
	Target   string             `json:"target"`
	Repeat   int                `json:"repeat"`
	Started  time.Time          `json:"started"`
	Values   map[string]float64 `json:"values"`
	Errors   map[string]int64   `json:"errors"`
	Timeline []Sample           `json:"timeline"`
	// Latency holds the end-to-end message latency (traffic scenarios) or the
	// CONNECT-to-CONNACK latency of fresh connects (connect, memory).
	Latency []hist.Bucket `json:"latency_buckets"`
	// Reconnect holds the reconnect latency of the connect scenario.
	Reconnect []hist.Bucket `json:"reconnect_latency_buckets,omitempty"`
	Profile   string        `json:"cpu_profile,omitempty"`
	Failure   string        `json:"failure,omitempty"`
}

// Summary is one target's figures over its repeats: the median of each figure and
// its ratio to the baseline's median.
type Summary struct {
	Target string             `json:"target"`
	Runs   int                `json:"runs"`
	Failed int                `json:"failed_runs"`
	Median map[string]float64 `json:"median"`
	Ratio  map[string]float64 `json:"ratio_to_baseline"`
	Errors map[string]int64   `json:"errors"`
}

// Host describes the machine the run was taken on.
type Host struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	Mosquitto string `json:"mosquitto,omitempty"`
	RabbitMQ  string `json:"rabbitmq,omitempty"`
	// LoadAvg is /proc/loadavg's 1-, 5- and 15-minute figures when the run began
	// and when it ended: how much else the machine was doing.
	LoadAvg []string `json:"load_average,omitempty"`
	NoFile  uint64   `json:"rlimit_nofile"`
}

// Report is everything one invocation measured: what the JSON file holds and what
// the Markdown and HTML reports are drawn from.
type Report struct {
	Scenario    string    `json:"scenario"`
	Command     string    `json:"command"`
	Started     time.Time `json:"started"`
	Options     Options   `json:"options"`
	Host        Host      `json:"host"`
	CryptoFloor float64   `json:"es256_verifications_per_s,omitempty"`
	Metrics     []Metric  `json:"metrics"`
	Summaries   []Summary `json:"summaries"`
	Runs        []Run     `json:"runs"`
	Notes       []string  `json:"notes,omitempty"`
}

// median of xs (xs is reordered).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

// summarize computes per-target medians and ratios to the baseline target. Failed
// runs are left out of the medians and counted.
func summarize(runs []Run, targets []string, baseline string) []Summary {
	out := make([]Summary, 0, len(targets))
	for _, t := range targets {
		s := Summary{Target: t, Median: map[string]float64{}, Ratio: map[string]float64{}, Errors: map[string]int64{}}
		vals := map[string][]float64{}
		for _, r := range runs {
			if r.Target != t {
				continue
			}
			s.Runs++
			for k, n := range r.Errors {
				s.Errors[k] += n
			}
			if r.Failure != "" {
				s.Failed++
				continue
			}
			for k, v := range r.Values {
				vals[k] = append(vals[k], v)
			}
		}
		for k, v := range vals {
			s.Median[k] = median(v)
		}
		out = append(out, s)
	}
	var base *Summary
	for i := range out {
		if out[i].Target == baseline {
			base = &out[i]
		}
	}
	if base == nil {
		return out
	}
	for i := range out {
		for _, k := range slices.Sorted(maps.Keys(out[i].Median)) {
			if b := base.Median[k]; b != 0 {
				out[i].Ratio[k] = out[i].Median[k] / b
			}
		}
	}
	return out
}
