package hooks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"imb/authz"
)

// Metrics are the hook's Prometheus collectors. A nil *Metrics counts nothing, so
// the hook's code never checks.
type Metrics struct {
	connects    *prometheus.CounterVec
	denials     [4]prometheus.Counter // indexed by authz.Action
	willDenials prometheus.Counter
	disconnects *prometheus.CounterVec
	validations prometheus.Histogram
	sessions    prometheus.GaugeFunc
	drops       *prometheus.CounterVec
	limits      map[string]prometheus.Counter // imb_limit_refusals_total by reason
}

// NewMetrics creates the hook's collectors and registers them on reg. The
// active-sessions gauge asks the hook set later with Watch.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imb_connects_total",
			Help: "CONNECT packets by result (accepted, refused) and reason (accepted: ok, or bound_key and bound_certificate for a proven sender-constrained token).",
		}, []string{"result", "reason"}),
		willDenials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imb_will_denials_total",
			Help: "Wills refused at CONNECT or dropped when they were due.",
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imb_disconnects_total",
			Help: "Connections the broker closed on identity grounds, by reason (expired, revoked, reauth_failed).",
		}, []string{"reason"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imb_deliveries_dropped_total",
			Help: "Deliveries to a subscriber given up after the publisher was held for delivery_wait, by reason (queue_full, inflight_full, packet_ids_exhausted).",
		}, []string{"reason"}),
		validations: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "imb_token_validation_seconds",
			Help:    "Time to validate a token at CONNECT or AUTH, cache hits included.",
			Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}),
	}
	denials := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imb_denials_total",
		Help: "Authorization denials by action (publish, subscribe, receive).",
	}, []string{"action"})
	for _, a := range []authz.Action{authz.Publish, authz.Subscribe, authz.Receive} {
		m.denials[a] = denials.WithLabelValues(a.String())
	}
	for _, r := range []string{"expired", "revoked", "reauth_failed"} {
		m.disconnects.WithLabelValues(r)
	}
	for _, r := range []string{dropQueueFull, dropInflightFull, dropPacketIDs} {
		m.drops.WithLabelValues(r) // exported at 0, so that an alert can watch them from the start
	}
	limits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imb_limit_refusals_total",
		Help: "Refusals by a limit of topics.yaml's limits section or a pre-authentication bound, by reason.",
	}, []string{"reason"})
	m.limits = map[string]prometheus.Counter{}
	for _, r := range limitReasons {
		m.limits[r] = limits.WithLabelValues(r) // resolved once: the publish path only looks them up
	}
	reg.MustRegister(m.connects, denials, m.willDenials, m.disconnects, m.validations, m.drops, limits)
	return m
}

// Watch registers the active-sessions gauge for h on reg.
func (m *Metrics) Watch(reg prometheus.Registerer, h *Hook) {
	if m == nil {
		return
	}
	m.sessions = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "imb_sessions_active",
		Help: "Connected, authenticated MQTT sessions.",
	}, func() float64 { return float64(h.ActiveSessions()) })
	reg.MustRegister(m.sessions)
}

func (m *Metrics) connect(result, reason string) {
	if m != nil {
		m.connects.WithLabelValues(result, reason).Inc()
	}
}

func (m *Metrics) denied(a authz.Action) {
	if m != nil && int(a) < len(m.denials) && m.denials[a] != nil {
		m.denials[a].Inc()
	}
}

func (m *Metrics) willDenied() {
	if m != nil {
		m.willDenials.Inc()
	}
}

func (m *Metrics) disconnect(reason string) {
	if m != nil {
		m.disconnects.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) validation(d time.Duration) {
	if m != nil {
		m.validations.Observe(d.Seconds())
	}
}

func (m *Metrics) deliveryDropped(reason string) {
	if m != nil {
		m.drops.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) limitRefused(reason string) {
	if m != nil {
		if c := m.limits[reason]; c != nil {
			c.Inc()
		}
	}
}
