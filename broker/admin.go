package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminServer serves the operator's endpoints: /healthz (the process answers),
// /readyz (listeners bound and the identity provider usable), /metrics, and the
// read-only status page /status (see statusAccess for who may read it).
type adminServer struct {
	srv  *http.Server
	addr string
}

func startAdmin(addr string, b *Broker) (*adminServer, error) {
	tlsConf, err := b.cfg.adminTLSConfig()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", addr, err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := b.Ready(ctx); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, "not ready", err.Error())
			return
		}
		writeStatus(w, http.StatusOK, "ready", "")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /status", b.serveStatus(newStatusAccess(b.cfg)))
	mux.Handle("GET /{$}", http.RedirectHandler("/status", http.StatusFound))
	mux.HandleFunc("POST /admin/v1/revocations", b.serveRevocation)
	mux.HandleFunc("GET /admin/v1/sessions", b.serveSessions)
	mux.HandleFunc("/ssf/events", func(w http.ResponseWriter, r *http.Request) {
		if b.ssf == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"err": "invalid_request",
				"description": "no Security Event Token receiver configured: set ssf.issuer, ssf.jwks_url (or ssf.jwks_file) and ssf.audience in imb.yaml (docs/revocation.md)"})
			return
		}
		b.ssf.ServeHTTP(w, r)
	})
	a := &adminServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		addr: ln.Addr().String(),
	}
	b.addrs["admin"] = a.addr // before serving: the status page reads b.addrs
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("admin endpoint stopped", "error", err)
		}
	}()
	return a, nil
}

func (a *adminServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, status, detail string) {
	body := map[string]string{"status": status}
	if detail != "" {
		body["error"] = detail
	}
	writeJSON(w, code, body)
}
