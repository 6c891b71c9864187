package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// counters are read once a second by the monitor: running totals.
type counters struct {
	connects, publishes, deliveries func() int64
}

// monitor samples the load's counters and the broker's /proc entry once a second,
// keeps the timeline, and prints one progress line per sample.
type monitor struct {
	label string
	pids  []int // the broker's processes (a cluster's nodes); none: nothing to read
	c     counters
	out   io.Writer // nil: no progress lines

	mu       sync.Mutex
	samples  []Sample
	peakRSS  int64
	startCPU float64
	lastCPU  float64
	selfCPU  float64 // the harness's own CPU time at start
	procErr  error

	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

// startMonitor begins sampling now.
func startMonitor(label string, pids []int, c counters, out io.Writer) *monitor {
	m := &monitor{label: label, pids: pids, c: c, out: out, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if st, err := readProc(os.Getpid()); err == nil {
		m.selfCPU = st.CPUSeconds
	}
	if len(pids) > 0 {
		if st, err := m.read(); err == nil {
			m.startCPU, m.lastCPU, m.peakRSS = st.CPUSeconds, st.CPUSeconds, st.RSSBytes
		} else {
			m.procErr = err
		}
	}
	go m.loop()
	return m
}

func (m *monitor) loop() {
	defer close(m.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	lc, lp, ld := m.totals()
	for {
		final := false
		var now time.Time
		select {
		case <-m.stop:
			// A last, partial sample: a run shorter than a second still has a
			// timeline. A sliver of a second after full ones would only be noise.
			final, now = true, time.Now()
			if m.sampleCount() > 0 && now.Sub(last) < 300*time.Millisecond {
				return
			}
		case now = <-tick.C:
		}
		{
			c, p, d := m.totals()
			dt := max(now.Sub(last).Seconds(), 1e-3)
			s := Sample{
				T:             now.Sub(m.start).Seconds(),
				ConnectsPerS:  float64(c-lc) / dt,
				PublishesPerS: float64(p-lp) / dt,
				DeliveriesPer: float64(d-ld) / dt,
			}
			last, lc, lp, ld = now, c, p, d
			m.mu.Lock()
			if len(m.pids) > 0 {
				if st, err := m.read(); err == nil {
					s.RSSMB = float64(st.RSSBytes) / (1 << 20)
					s.CPUPercent = (st.CPUSeconds - m.lastCPU) / dt * 100
					m.lastCPU = st.CPUSeconds
					m.peakRSS = max(m.peakRSS, st.RSSBytes)
				} else {
					m.procErr = err
				}
			}
			m.samples = append(m.samples, s)
			m.mu.Unlock()
			if m.out != nil && !final {
				fmt.Fprintf(m.out, "[%s] %3.0fs  conn %s/s  pub %s/s  deliv %s/s  rss %.1f MB  cpu %.0f%%\n",
					m.label, s.T, si(s.ConnectsPerS), si(s.PublishesPerS), si(s.DeliveriesPer), s.RSSMB, s.CPUPercent)
			}
		}
		if final {
			return
		}
	}
}

// read adds up the broker's processes: CPU time and resident memory.
func (m *monitor) read() (procStat, error) {
	var sum procStat
	for _, pid := range m.pids {
		st, err := readProc(pid)
		if err != nil {
			return sum, err
		}
		sum.CPUSeconds += st.CPUSeconds
		sum.RSSBytes += st.RSSBytes
	}
	return sum, nil
}

func (m *monitor) sampleCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.samples)
}

func (m *monitor) totals() (c, p, d int64) {
	if m.c.connects != nil {
		c = m.c.connects()
	}
	if m.c.publishes != nil {
		p = m.c.publishes()
	}
	if m.c.deliveries != nil {
		d = m.c.deliveries()
	}
	return c, p, d
}

// brokerUsage is the broker's resource use since the monitor started, and the
// harness's own CPU time (load generator and token issuer), which shares the
// machine with it.
type brokerUsage struct {
	PeakRSS             int64
	RSS                 int64
	CPUSeconds          float64
	GeneratorCPUSeconds float64
}

// usage reads the broker's current RSS and CPU time used since start.
func (m *monitor) usage() (brokerUsage, error) {
	var u brokerUsage
	if self, err := readProc(os.Getpid()); err == nil {
		u.GeneratorCPUSeconds = self.CPUSeconds - m.selfCPU
	}
	if len(m.pids) == 0 {
		return u, nil
	}
	st, err := m.read()
	if err != nil {
		return u, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peakRSS = max(m.peakRSS, st.RSSBytes)
	u.PeakRSS, u.RSS, u.CPUSeconds = m.peakRSS, st.RSSBytes, st.CPUSeconds-m.startCPU
	return u, nil
}

// finish stops sampling and returns the timeline.
func (m *monitor) finish() []Sample {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.samples
}

// si formats a rate with a k/M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// errorCounts counts failures by kind ("connack 0x86", "puback 0x87", "dial",
// ...). Failures are rare, so a mutex is fine.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (e *errorCounts) add(kind string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]int64{}
	}
	e.m[kind]++
}

func (e *errorCounts) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.m)
}

func (e *errorCounts) total() int64 {
	var n int64
	for _, v := range e.snapshot() {
		n += v
	}
	return n
}

// describe lists the counts in a stable order.
func describeErrors(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
