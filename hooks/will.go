package hooks

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/authz"
	"imb/introspect"
)

// delayedWills holds the wills with a Will Delay Interval that the hook sends itself.
// mochi keeps such a will in a private queue and publishes (and retains) it when the
// delay has passed without asking any hook, so a will judged when the connection
// dropped would go out after a policy reload took the grant away, after the token
// expired or after it was revoked. The hook therefore hands mochi an empty will and
// sends the real one when it is due, judged again at that moment.
type delayedWills struct {
	mu      sync.Mutex
	pending map[string]*delayedWill // by client id
	inline  *mqtt.Client            // publishes due wills into the broker
}

// delayedWill is one will waiting for its delay, with the identity and the session
// whose grants judge it.
type delayedWill struct {
	will  mqtt.Will
	s     *session
	id    *identity
	timer *time.Timer
}

// deferWill takes over a will mochi would send after its delay.
func (h *Hook) deferWill(cl *mqtt.Client, s *session, will mqtt.Will) {
	delay := time.Duration(will.WillDelayInterval) * time.Second
	dw := &delayedWill{will: will, s: s, id: s.id.Load()}
	w := &h.wills
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		w.pending = map[string]*delayedWill{}
	}
	if old := w.pending[cl.ID]; old != nil {
		old.timer.Stop()
	}
	w.pending[cl.ID] = dw
	dw.timer = time.AfterFunc(delay, func() { h.sendWill(cl.ID, dw) })
}

// cancelWill drops the delayed will of a client id, because a new connection took
// the session over before the delay passed [MQTT-3.1.3-9].
func (h *Hook) cancelWill(clientID string) {
	w := &h.wills
	w.mu.Lock()
	defer w.mu.Unlock()
	if dw := w.pending[clientID]; dw != nil {
		dw.timer.Stop()
		delete(w.pending, clientID)
	}
}

// stopWills drops every pending will when the hook stops: the broker is going away.
func (h *Hook) stopWills() {
	w := &h.wills
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, dw := range w.pending {
		dw.timer.Stop()
		delete(w.pending, id)
	}
}

// sendWill publishes a delayed will that is due, if its identity may still publish
// it now: the token has not expired, an introspected token is still active, and the
// policy in force grants the publish with its QoS and retain flag.
func (h *Hook) sendWill(clientID string, dw *delayedWill) {
	w := &h.wills
	w.mu.Lock()
	if w.pending[clientID] != dw {
		w.mu.Unlock()
		return // cancelled or replaced meanwhile
	}
	delete(w.pending, clientID)
	w.mu.Unlock()
	if h.ctx.Err() != nil {
		return
	}
	if reason := h.willRefusal(dw); reason != "" {
		h.metrics.willDenied()
		d := authz.Decision{Reason: reason}
		h.auditDecision(dw.s, "will dropped", authz.Publish, dw.will.TopicName, d)
		return
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: dw.will.Retain, Qos: dw.will.Qos},
		TopicName:   dw.will.TopicName,
		Payload:     dw.will.Payload,
		Properties:  packets.Properties{User: dw.will.User},
		PacketID:    1, // mochi's validation wants one at QoS > 0; an inline publisher is never acknowledged
	}
	srv := h.cfg.Server
	w.mu.Lock()
	if w.inline == nil {
		w.inline = srv.NewClient(nil, "local", "imb-delayed-will", true)
	}
	inline := w.inline
	w.mu.Unlock()
	// An inline client skips the write ACL; the decision was made above, and every
	// delivery is still judged against the receiving client's grants.
	if err := srv.InjectPacket(inline, pk); err != nil {
		h.audit.Error("delayed will", slog.String("client_id", clientID), slog.String("error", err.Error()))
	}
}

// willRefusal says why a due will may not be sent, or "" when it may.
func (h *Hook) willRefusal(dw *delayedWill) string {
	id := dw.id
	if cur := dw.s.id.Load(); cur != nil {
		id = cur // re-authenticated before the connection dropped
	}
	if !id.expiry.IsZero() && !id.expiry.After(h.cfg.Now()) {
		return "token expired before the delayed will was due"
	}
	if id.method == "introspection" {
		select {
		case h.revalN <- struct{}{}:
		case <-h.ctx.Done():
			return "broker stopping"
		}
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.ValidateTimeout)
		tok, err := h.cfg.Validator.Revalidate(ctx, id.token)
		cancel()
		<-h.revalN
		switch {
		case errors.Is(err, introspect.ErrInvalidToken):
			return "token revoked or inactive before the delayed will was due"
		case err != nil:
			// Fail closed: a will is sent in the thing's name, and whether it may still
			// speak cannot be learned now.
			return "identity provider unavailable when the delayed will was due"
		case tok.ThingID != id.subject.ID:
			return "token now names another subject"
		}
	}
	d := h.policy.Load().Compile(id.subject).Allow(authz.Publish, dw.will.TopicName, dw.will.Qos, dw.will.Retain)
	if !d.Allowed {
		return d.Reason
	}
	return ""
}
