package broker

import (
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// pendingGate bounds the connections accepted and not yet answered with a CONNACK,
// over all listeners and per source IP address. Until its CONNACK a socket costs
// about 20 KB and two goroutines and is bounded only by the connect deadline, so
// without a cap one address could hold thousands of them open. A connection over
// either bound is closed as soon as it is accepted.
type pendingGate struct {
	max, perAddr int // 0: no bound

	mu     sync.Mutex
	total  int
	byAddr map[string]int

	refused *prometheus.CounterVec
}

func newPendingGate(total, perAddr int, reg prometheus.Registerer) *pendingGate {
	g := &pendingGate{max: max(total, 0), perAddr: max(perAddr, 0), byAddr: map[string]int{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imb_pending_connects_refused_total",
			Help: "Connections closed at accept because too many were waiting for their CONNACK, by limit (total, per_address).",
		}, []string{"limit"})}
	g.refused.WithLabelValues("total")
	g.refused.WithLabelValues("per_address")
	if reg != nil {
		reg.MustRegister(g.refused)
	}
	return g
}

// acquire admits a new connection from addr, or names the bound it would break.
// An admitted connection must be released exactly once.
func (g *pendingGate) acquire(addr net.Addr) (release func(), limit string) {
	host := hostOf(addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.max > 0 && g.total >= g.max:
		limit = "total"
	case g.perAddr > 0 && g.byAddr[host] >= g.perAddr:
		limit = "per_address"
	}
	if limit != "" {
		g.refused.WithLabelValues(limit).Inc()
		return nil, limit
	}
	g.total++
	g.byAddr[host]++
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.total--
		if g.byAddr[host]--; g.byAddr[host] <= 0 {
			delete(g.byAddr, host)
		}
	}, ""
}

// hostOf is the IP address of a remote address, without the port.
func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}
