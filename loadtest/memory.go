package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"imb/loadtest/hist"
	"imb/loadtest/wire"
)

// runMemory connects o.Clients things, each subscribed to its own commands topic
// (an authenticated, authorized session that could receive), and reports the
// broker's RSS growth per thing. Imb brokers collect garbage and return it to the
// system before both readings, so RSS counts what the sessions keep.
func runMemory(ctx context.Context, e *runEnv) (Run, error) {
	o := e.o
	run := Run{Target: e.target, Started: time.Now(), Values: map[string]float64{}}
	if err := checkFDs(o.Clients); err != nil {
		return run, err
	}
	if e.proc == nil {
		return run, fmt.Errorf("memory scenario: needs a broker the harness started (its RSS is read from /proc)")
	}
	before, err := e.settledRSS(ctx)
	if err != nil {
		return run, err
	}
	var connects atomic.Int64
	mon := startMonitor(e.label, e.pids(), counters{connects: connects.Load}, e.progress)
	up0 := e.upstreamCalls()
	var lat hist.Histogram
	var ok int64
	start := time.Now()
	conns := connectAll(ctx, e, "connect", o.Clients, o.Concurrency, &connects, &lat, &ok, false)
	wall := time.Since(start)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			if c != nil {
				wg.Add(1)
				go func() { defer wg.Done(); _ = c.Close() }()
			}
		}
		wg.Wait()
	}()
	// Each thing subscribes to its own commands: the policy grants it, and the
	// session holds a subscription as a real one would.
	var subOK atomic.Int64
	eachConn(ctx, conns, o.Concurrency, func(i int, c *wire.Conn) {
		sctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		code, err := c.Subscribe(sctx, "things/"+thingID(i)+"/commands/#", byte(o.QoS))
		switch {
		case err != nil:
			e.errs.add("subscribe: " + classify(err))
		case code >= 0x80:
			e.errs.add(fmt.Sprintf("suback 0x%02x", code))
		default:
			subOK.Add(1)
		}
	})
	usage, err := mon.usage()
	run.Timeline = mon.finish()
	if err != nil {
		return run, err
	}
	after, err := e.settledRSS(ctx)
	if err != nil {
		return run, err
	}
	// Every session must still be there when RSS was read, or the figure would
	// divide by sessions the broker no longer holds.
	var alive atomic.Int64
	eachConn(ctx, conns, o.Concurrency, func(_ int, c *wire.Conn) {
		pctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		if err := c.Ping(pctx); err != nil {
			e.errs.add("ping after reading RSS: " + classify(err))
			return
		}
		alive.Add(1)
	})
	v := run.Values
	v["things"] = float64(o.Clients)
	v["connected"] = float64(ok)
	v["subscribed"] = float64(subOK.Load())
	v["alive_after"] = float64(alive.Load())
	v["connects_per_s"] = rate(ok, wall)
	setLatency(v, "connect", &lat)
	v["rss_before_mb"] = float64(before) / (1 << 20)
	v["rss_after_mb"] = float64(after) / (1 << 20)
	v["rss_delta_mb"] = float64(after-before) / (1 << 20)
	if ok > 0 {
		v["rss_kb_per_thing"] = float64(after-before) / 1024 / float64(ok)
	}
	v["upstream_calls"] = float64(e.upstreamCalls() - up0)
	v["errors"] = float64(e.errs.total())
	setUsage(v, usage)
	run.Latency = lat.Buckets()
	return run, nil
}

// settledRSS waits, asks the broker to collect garbage, and reads its RSS.
func (e *runEnv) settledRSS(ctx context.Context) (int64, error) {
	select {
	case <-time.After(e.o.Settle):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if err := e.proc.collectGarbage(); err != nil {
		return 0, err
	}
	st, err := readProc(e.pid())
	if err != nil {
		return 0, err
	}
	return st.RSSBytes, nil
}

// eachConn calls f for every open connection, conc at a time.
func eachConn(ctx context.Context, conns []*wire.Conn, conc int, f func(i int, c *wire.Conn)) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range min(conc, len(conns)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) || ctx.Err() != nil {
					return
				}
				if conns[i] != nil {
					f(i, conns[i])
				}
			}
		}()
	}
	wg.Wait()
}
