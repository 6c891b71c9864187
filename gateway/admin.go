package gateway

import (
	"io"
	"net/http"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus series, on a registry of its own so that several gateways
// (tests, imb dev) never collide on the default one.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imb_gateway_requests_total",
			Help: "CoAP requests answered by the gateway, by route and CoAP response code.",
		}, []string{"route", "code"}),
	}
	m.reg.MustRegister(m.requests, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// countingWriter remembers the code a handler answered with.
type countingWriter struct {
	mux.ResponseWriter
	code codes.Code
}

func (w *countingWriter) SetResponse(code codes.Code, format message.MediaType, d io.ReadSeeker, opts ...message.Option) error {
	w.code = code
	return w.ResponseWriter.SetResponse(code, format, d, opts...)
}

// counted wraps a route's handler so every answer is counted under the route's name.
func (m *metrics) counted(route string, h mux.HandlerFunc) mux.HandlerFunc {
	return func(w mux.ResponseWriter, r *mux.Message) {
		cw := &countingWriter{ResponseWriter: w}
		h(cw, r)
		m.requests.WithLabelValues(route, cw.code.String()).Inc()
	}
}

// AdminHandler serves /healthz (the process answers), /readyz (the CoAP listener is open) and
// /metrics, as imb serve's admin listener does.
func (g *Gateway) AdminHandler() http.Handler {
	h := http.NewServeMux()
	h.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	h.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-g.stopped:
			http.Error(w, "gateway stopped", http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "ready\n")
		}
	})
	h.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	return h
}
