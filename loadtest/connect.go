package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"imb/loadtest/hist"
	"imb/loadtest/wire"
)

// connectPhase is one pass of every thing through CONNECT.
type connectPhase struct {
	ok       int64
	wall     time.Duration
	lat      hist.Histogram
	cpu      float64
	upstream int64
}

// runConnect is the connect storm: every thing connects with its own fresh token
// (the broker has never seen it), disconnects, and then all connect again with the
// same tokens (a validation cache answers, if there is one). o.Concurrency
// connects are in flight at once; --concurrency equal to --things is "all at once".
func runConnect(ctx context.Context, e *runEnv) (Run, error) {
	o := e.o
	run := Run{Target: e.target, Started: time.Now(), Values: map[string]float64{}}
	var connects atomic.Int64
	mon := startMonitor(e.label, e.pids(), counters{connects: connects.Load}, e.progress)
	phase := func(name string) (*connectPhase, error) {
		ph := &connectPhase{}
		u0, err := mon.usage()
		if err != nil {
			return nil, err
		}
		up0 := e.upstreamCalls()
		start := time.Now()
		connectAll(ctx, e, name, o.Clients, o.Concurrency, &connects, &ph.lat, &ph.ok, true)
		ph.wall = time.Since(start)
		u1, err := mon.usage()
		if err != nil {
			return nil, err
		}
		ph.cpu = u1.CPUSeconds - u0.CPUSeconds
		ph.upstream = e.upstreamCalls() - up0
		return ph, nil
	}
	fresh, err := phase("connect")
	if err != nil {
		mon.finish()
		return run, err
	}
	again, err := phase("reconnect")
	if err != nil {
		mon.finish()
		return run, err
	}
	usage, err := mon.usage()
	run.Timeline = mon.finish()
	if err != nil {
		return run, err
	}
	v := run.Values
	v["things"] = float64(o.Clients)
	v["distinct_tokens"] = float64(o.Clients)
	v["connects"] = float64(fresh.ok)
	v["reconnects"] = float64(again.ok)
	v["connects_per_s"] = rate(fresh.ok, fresh.wall)
	v["reconnects_per_s"] = rate(again.ok, again.wall)
	setLatency(v, "connect", &fresh.lat)
	setLatency(v, "reconnect", &again.lat)
	v["upstream_calls_connect"] = float64(fresh.upstream)
	v["upstream_calls_reconnect"] = float64(again.upstream)
	v["upstream_calls"] = float64(fresh.upstream + again.upstream)
	if fresh.ok > 0 {
		v["broker_cpu_us_per_connect"] = fresh.cpu * 1e6 / float64(fresh.ok)
	}
	if again.ok > 0 {
		v["broker_cpu_us_per_reconnect"] = again.cpu * 1e6 / float64(again.ok)
	}
	v["errors"] = float64(e.errs.total())
	setUsage(v, usage)
	run.Latency = fresh.lat.Buckets()
	run.Reconnect = again.lat.Buckets()
	return run, nil
}

// connectAll connects things 0..n-1 with at most conc in flight, recording each
// CONNECT's latency (TCP dial to CONNACK). With disconnect the connection is
// closed again at once; otherwise the open connections are returned.
func connectAll(ctx context.Context, e *runEnv, name string, n, conc int, count *atomic.Int64, lat *hist.Histogram, ok *int64, disconnect bool) []*wire.Conn {
	var conns []*wire.Conn
	if !disconnect {
		conns = make([]*wire.Conn, n)
	}
	next := atomic.Int64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h hist.Histogram
			var good int64
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					break
				}
				start := time.Now()
				c, err := e.dialConnect(ctx, thingID(i), i, 512)
				if err != nil {
					e.errs.add(name + ": " + classify(err))
					continue
				}
				h.Record(time.Since(start))
				good++
				count.Add(1)
				if !disconnect {
					conns[i] = c
					continue
				}
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if err := c.Disconnect(dctx); err != nil {
					e.errs.add(name + ": disconnect: " + classify(err))
				}
				cancel()
				_ = c.Close()
			}
			mu.Lock()
			lat.Merge(&h)
			*ok += good
			mu.Unlock()
		}()
	}
	wg.Wait()
	return conns
}

// fdHeadroom is what the harness keeps for itself besides client sockets.
const fdHeadroom = 200

// checkFDs refuses a scenario that needs more open connections than this process
// (or the broker child, which inherits the same limit) may hold.
func checkFDs(open int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if uint64(open+fdHeadroom) > lim.Cur {
		return fmt.Errorf("%d open connections need %d file descriptors in the harness and in the broker; RLIMIT_NOFILE is %d (hard limit %d): "+
			"raise it (ulimit -Hn as root) or use --things %d or fewer", open, open+fdHeadroom, lim.Cur, lim.Max, int(lim.Cur)-fdHeadroom)
	}
	return nil
}
