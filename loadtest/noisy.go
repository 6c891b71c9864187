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

// The noisy-neighbour scenario: o.Clients well-behaved things publish their
// telemetry at o.Rate each while one thing, the flooder, publishes at
// o.FloodFactor times its limit (harnessPolicy's limits entry for floodID).
// The others are paced at o.Rate and spread evenly over one interval. Each
// run has two phases on the same broker and the same connections, interleaved so
// that the machine's noise hits both alike: first the others alone ("quiet"),
// then the others with the flooder ("flood"). A new subscriber takes each phase's
// deliveries, so that each phase's latency is its own.
const (
	floodID    = "lt-flood"
	floodTopic = "things/" + floodID + "/telemetry/flood"
	// floodLimit and floodBurst are the flooder's publishes/s and burst in
	// harnessPolicy.
	floodLimit = 20
	floodBurst = 20
	// othersFilter matches every well-behaved thing's telemetryTopic and not
	// floodTopic (its last level is not x).
	othersFilter = "things/+/telemetry/x"
	// noisyApps: a subscriber of the others per phase, and one of the flooder.
	noisyApps = 3
)

// noisyPhase is what one phase measured.
type noisyPhase struct {
	delivered    int64
	perS         float64
	lat          hist.Histogram
	floodSent    int64
	floodAccepts int64
	floodFor     time.Duration // how long the flooder published
}

// runNoisy runs both phases once and returns their figures.
func runNoisy(ctx context.Context, e *runEnv) (Run, error) {
	o := e.o
	qos := byte(o.QoS)
	var closing atomic.Bool
	run := Run{Target: e.target, Started: time.Now(), Values: map[string]float64{}}
	// conns and dones are appended to by the connecting goroutines: under track.
	var (
		track sync.Mutex
		conns []interface{ Close() error }
		dones []chan struct{}
	)
	keep := func(c interface{ Close() error }, done chan struct{}) {
		track.Lock()
		defer track.Unlock()
		if c != nil {
			conns = append(conns, c)
		}
		if done != nil {
			dones = append(dones, done)
		}
	}
	defer func() {
		closing.Store(true)
		track.Lock()
		defer track.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
		for _, d := range dones {
			<-d
		}
	}()

	subscribe := func(id string, i int, filter string) (*subscriber, error) {
		c, err := e.dialConnect(ctx, id, i, 256<<10)
		if err != nil {
			e.errs.add(classify(err))
			return nil, fmt.Errorf("subscriber %s: %w", id, err)
		}
		keep(c, nil)
		sctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		code, err := c.Subscribe(sctx, filter, qos)
		if err == nil && code >= 0x80 {
			err = fmt.Errorf("suback 0x%02x", code)
		}
		if err != nil {
			e.errs.add(classify(err))
			return nil, fmt.Errorf("subscriber %s: subscribe %s: %w", id, filter, err)
		}
		s := &subscriber{conn: c, done: make(chan struct{})}
		keep(nil, s.done)
		go s.read(e, qos, &closing)
		return s, nil
	}
	connectPub := func(id, topic string, i int) (*publisher, error) {
		c, err := e.dialConnect(ctx, id, i, 16<<10)
		if err != nil {
			e.errs.add(classify(err))
			return nil, fmt.Errorf("publisher %s: %w", id, err)
		}
		p := &publisher{conn: c, topic: topic, window: make(chan struct{}, o.Inflight), done: make(chan struct{})}
		keep(c, p.done)
		go p.read(e, &closing)
		return p, nil
	}

	pubs := make([]*publisher, o.Clients)
	var mu sync.Mutex
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for i := range pubs {
		g.Go(func() error {
			p, err := connectPub(thingID(i), telemetryTopic(thingID(i)), noisyApps+i)
			if p != nil && o.Rate > 0 {
				// Spread the others evenly over one interval: "a normal rate" is
				// independent things, not one synchronised burst a second.
				p.offset = time.Duration(float64(time.Second) / o.Rate * float64(i) / float64(o.Clients))
			}
			mu.Lock()
			pubs[i] = p
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return run, err
	}
	flooder, err := connectPub(floodID, floodTopic, noisyApps+o.Clients)
	if err != nil {
		return run, err
	}
	floodSub, err := subscribe(appID(2), 2, floodTopic)
	if err != nil {
		return run, err
	}
	mon := startMonitor(e.label, e.pids(), counters{
		publishes:  func() int64 { return sumSent(pubs) + flooder.sent.Load() },
		deliveries: func() int64 { return floodSub.delivered.Load() },
	}, e.progress)

	phase := func(i int, flood bool) (noisyPhase, error) {
		var ph noisyPhase
		sub, err := subscribe(appID(i), i, othersFilter)
		if err != nil {
			return ph, err
		}
		before := sumSent(pubs)
		floodSent0, floodAcc0 := flooder.sent.Load(), floodSub.delivered.Load()
		t0 := time.Since(e.base)
		pctx, cancel := context.WithTimeout(ctx, o.Duration)
		var wg sync.WaitGroup
		for _, p := range pubs {
			wg.Add(1)
			go func() { defer wg.Done(); p.publish(pctx, e, qos, o.Rate) }()
		}
		if flood {
			wg.Add(1)
			// QoS 0: what the broker refuses is dropped, and nothing holds the flooder back.
			go func() {
				defer wg.Done()
				start := time.Now()
				flooder.publish(pctx, e, 0, floodLimit*o.FloodFactor)
				ph.floodFor = time.Since(start)
			}()
		}
		wg.Wait()
		cancel()
		expected := sumSent(pubs) - before
		waitQuiet(ctx, o.Drain, func() (int64, bool) {
			d := sub.delivered.Load()
			return d, d >= expected
		})
		closing.Store(true) // this subscriber's end is expected
		_ = sub.conn.Close()
		<-sub.done
		closing.Store(false)
		ph.delivered = sub.delivered.Load()
		ph.perS = rate(ph.delivered, time.Duration(sub.last.Load())-t0)
		ph.lat = sub.lat
		ph.floodSent = flooder.sent.Load() - floodSent0
		ph.floodAccepts = floodSub.delivered.Load() - floodAcc0
		if d := max(expected-ph.delivered, 0); d > 0 {
			e.errs.add(fmt.Sprintf("%d deliveries missing", d))
		}
		return ph, nil
	}
	quiet, err := phase(0, false)
	if err != nil {
		return run, err
	}
	flood, err := phase(1, true)
	if err != nil {
		return run, err
	}
	usage, procErr := mon.usage()
	run.Timeline = mon.finish()
	if procErr != nil {
		return run, procErr
	}

	v := run.Values
	v["others"] = float64(o.Clients)
	v["quiet_deliveries_per_s"] = quiet.perS
	v["flood_deliveries_per_s"] = flood.perS
	setLatency(v, "quiet_latency", &quiet.lat)
	setLatency(v, "flood_latency", &flood.lat)
	if quiet.perS > 0 {
		v["deliveries_flood_to_quiet"] = flood.perS / quiet.perS
	}
	if q := v["quiet_latency_p99_ms"]; q > 0 {
		v["p99_flood_to_quiet"] = v["flood_latency_p99_ms"] / q
	}
	// Rates over the flooder's own publishing time: its goroutine starts after the
	// others', and the accepted ones are what reached its subscriber.
	secs := flood.floodFor.Seconds()
	if secs <= 0 {
		secs = o.Duration.Seconds()
	}
	v["flooder_sent_per_s"] = float64(flood.floodSent) / secs
	v["flooder_accepted_per_s"] = float64(flood.floodAccepts) / secs
	// The burst is a one-time allowance: the sustained rate is what came after it.
	// (Where nothing limits the flooder, as on the baseline, it is the same as
	// the accepted rate, less a rounding.)
	v["flooder_sustained_per_s"] = float64(max(flood.floodAccepts-floodBurst, 0)) / secs
	v["flooder_limit_per_s"] = floodLimit
	v["flooder_sustained_to_limit"] = v["flooder_sustained_per_s"] / floodLimit
	v["errors"] = float64(e.errs.total())
	setUsage(v, usage)
	lat := flood.lat
	run.Latency = lat.Buckets()
	return run, nil
}

// sumSent is the messages the publishers have sent.
func sumSent(pubs []*publisher) int64 {
	var n int64
	for _, p := range pubs {
		n += p.sent.Load()
	}
	return n
}
