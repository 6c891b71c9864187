package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"imb/loadtest/hist"
)

// trafficPlan is who publishes where and who subscribes to what.
type trafficPlan struct {
	publishers []string // subjects; each publishes its own telemetry topic
	subs       []subPlan
	fan        int // deliveries each publish must cause
}

type subPlan struct{ id, filter string }

// planTraffic lays out p2p, fan-out and fan-in. Publishers are things publishing
// their own telemetry (authorized by things/{sub}/telemetry/#); subscribers are
// cloud application workers with fleet:read (authorized by things/+/telemetry/#,
// and every delivery re-checked against their read grant).
func planTraffic(o Options) trafficPlan {
	var p trafficPlan
	switch o.Scenario {
	case scenarioP2P:
		for i := range o.Clients {
			p.publishers = append(p.publishers, thingID(i))
			p.subs = append(p.subs, subPlan{appID(i), "things/" + thingID(i) + "/telemetry/#"})
		}
		p.fan = 1
	case scenarioFanout:
		p.publishers = []string{thingID(0)}
		for i := range o.Clients {
			p.subs = append(p.subs, subPlan{appID(i), "things/" + thingID(0) + "/telemetry/#"})
		}
		p.fan = o.Clients
	case scenarioFanin:
		for i := range o.Clients {
			p.publishers = append(p.publishers, thingID(i))
		}
		for i := range o.Subscribers {
			p.subs = append(p.subs, subPlan{appID(i), "$share/loadtest/things/+/telemetry/#"})
		}
		p.fan = 1
	}
	return p
}

// identityCounts is how many things and application identities a scenario needs.
func identityCounts(o Options) (things, apps int) {
	switch o.Scenario {
	case scenarioP2P:
		return o.Clients, o.Clients
	case scenarioFanout:
		return 1, o.Clients
	case scenarioFanin:
		return o.Clients, o.Subscribers
	case scenarioNoisy:
		return o.Clients, noisyApps
	default:
		return o.Clients, 0
	}
}

// runTraffic runs p2p, fan-out or fan-in once and returns its figures.
func runTraffic(ctx context.Context, e *runEnv) (Run, error) {
	o := e.o
	plan := planTraffic(o)
	qos := byte(o.QoS)
	var closing atomic.Bool
	run := Run{Target: e.target, Started: time.Now(), Values: map[string]float64{}}

	subs := make([]*subscriber, len(plan.subs))
	pubs := make([]*publisher, len(plan.publishers))
	defer func() {
		closing.Store(true)
		for _, s := range subs {
			if s != nil {
				_ = s.conn.Close()
				<-s.done
			}
		}
		for _, p := range pubs {
			if p != nil {
				_ = p.conn.Close()
				<-p.done
			}
		}
	}()

	// Setup: subscribers first, each with its SUBACK, then publishers.
	setupStart := time.Now()
	upstreamSetup := e.upstreamCalls()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for i, sp := range plan.subs {
		g.Go(func() error {
			c, err := e.dialConnect(gctx, sp.id, i, 64<<10)
			if err != nil {
				e.errs.add(classify(err))
				return fmt.Errorf("subscriber %s: %w", sp.id, err)
			}
			sctx, cancel := context.WithTimeout(gctx, connectTimeout)
			defer cancel()
			code, err := c.Subscribe(sctx, sp.filter, qos)
			if err == nil && code >= 0x80 {
				err = fmt.Errorf("suback 0x%02x", code)
				e.errs.add(err.Error())
			} else if err != nil {
				e.errs.add(classify(err))
			}
			if err != nil {
				_ = c.Close()
				return fmt.Errorf("subscriber %s: subscribe %s: %w", sp.id, sp.filter, err)
			}
			subs[i] = &subscriber{conn: c, done: make(chan struct{})}
			go subs[i].read(e, qos, &closing)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return run, err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for i, id := range plan.publishers {
		g.Go(func() error {
			c, err := e.dialConnect(gctx, id, len(plan.subs)+i, 16<<10)
			if err != nil {
				e.errs.add(classify(err))
				return fmt.Errorf("publisher %s: %w", id, err)
			}
			p := &publisher{conn: c, topic: telemetryTopic(id), window: make(chan struct{}, o.Inflight), done: make(chan struct{})}
			pubs[i] = p
			go p.read(e, &closing)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return run, err
	}
	setupConnects := len(plan.subs) + len(plan.publishers)
	run.Values["setup_connects_per_s"] = float64(setupConnects) / time.Since(setupStart).Seconds()

	sumPub := func() int64 {
		var n int64
		for _, p := range pubs {
			if qos > 0 {
				n += p.acked.Load()
			} else {
				n += p.sent.Load()
			}
		}
		return n
	}
	sumDeliv := func() int64 {
		var n int64
		for _, s := range subs {
			n += s.delivered.Load()
		}
		return n
	}
	upstream0 := e.upstreamCalls()
	run.Values["upstream_calls_setup"] = float64(upstream0 - upstreamSetup)
	mon := startMonitor(e.label, e.pids(), counters{publishes: sumPub, deliveries: sumDeliv}, e.progress)

	// Publish.
	t0 := time.Since(e.base)
	pctx, cancel := context.WithTimeout(ctx, o.Duration)
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.publish(pctx, e, qos, o.Rate)
		}()
	}
	wg.Wait()
	cancel()
	pubEnd := time.Since(e.base)

	// Drain: acknowledgements, then deliveries, until complete or no progress for
	// o.Drain.
	waitQuiet(ctx, o.Drain, func() (int64, bool) {
		if qos == 0 {
			return 0, true
		}
		var inflight int64
		for _, p := range pubs {
			inflight += int64(len(p.window))
		}
		return -inflight, inflight == 0
	})
	published := sumPub()
	expected := published * int64(plan.fan)
	waitQuiet(ctx, o.Drain, func() (int64, bool) {
		d := sumDeliv()
		return d, d >= expected
	})
	usage, procErr := mon.usage()
	run.Timeline = mon.finish()
	if procErr != nil {
		return run, procErr
	}

	delivered := sumDeliv()
	var lat hist.Histogram
	lastDeliv := t0
	closing.Store(true)
	for _, s := range subs {
		_ = s.conn.Close()
		<-s.done
		lat.Merge(&s.lat)
		lastDeliv = max(lastDeliv, time.Duration(s.last.Load()))
	}
	lastPub := pubEnd
	if qos > 0 {
		lastPub = t0
		for _, p := range pubs {
			lastPub = max(lastPub, time.Duration(p.lastAck.Load()))
		}
	}
	v := run.Values
	v["publishers"] = float64(len(pubs))
	v["subscribers"] = float64(len(subs))
	v["deliveries_per_publish"] = float64(plan.fan)
	v["publishes"] = float64(published)
	v["deliveries"] = float64(delivered)
	v["expected_deliveries"] = float64(expected)
	v["drops"] = float64(max(expected-delivered, 0))
	v["duplicates"] = float64(max(delivered-expected, 0))
	v["publishes_per_s"] = rate(published, lastPub-t0)
	v["deliveries_per_s"] = rate(delivered, lastDeliv-t0)
	setLatency(v, "latency", &lat)
	v["errors"] = float64(e.errs.total())
	v["upstream_calls"] = float64(e.upstreamCalls() - upstream0)
	setUsage(v, usage)
	if delivered > 0 {
		v["broker_cpu_us_per_delivery"] = usage.CPUSeconds * 1e6 / float64(delivered)
		v["generator_cpu_us_per_delivery"] = usage.GeneratorCPUSeconds * 1e6 / float64(delivered)
	}
	run.Latency = lat.Buckets()
	return run, nil
}

// rate is n per second over d (0 for an empty interval).
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// setLatency stores p50, p95, p99 and max in milliseconds under prefix_*.
func setLatency(v map[string]float64, prefix string, h *hist.Histogram) {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	v[prefix+"_p50_ms"] = ms(h.Quantile(0.50))
	v[prefix+"_p95_ms"] = ms(h.Quantile(0.95))
	v[prefix+"_p99_ms"] = ms(h.Quantile(0.99))
	v[prefix+"_max_ms"] = ms(h.Max())
}

func setUsage(v map[string]float64, u brokerUsage) {
	v["broker_rss_peak_mb"] = float64(u.PeakRSS) / (1 << 20)
	v["broker_cpu_s"] = u.CPUSeconds
	v["generator_cpu_s"] = u.GeneratorCPUSeconds
}

// waitQuiet polls progress every 10 ms until done reports true, or the progress
// value has not changed for quiet, or ctx ends.
func waitQuiet(ctx context.Context, quiet time.Duration, progress func() (int64, bool)) {
	last, done := progress()
	changed := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !done {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var v int64
		v, done = progress()
		if v != last {
			last, changed = v, time.Now()
		} else if time.Since(changed) > quiet {
			return
		}
	}
}
