package hooks

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/authz"
	"imb/introspect"
)

// armTimers (re)starts the session's expiry and revocation timers. Runtime timers
// cost no goroutine until they fire, so 100k sessions hold 200k heap entries, not
// 200k goroutines.
func (h *Hook) armTimers(s *session) {
	id := s.id.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopTimersLocked()
	if !id.expiry.IsZero() {
		s.expiryT = time.AfterFunc(id.expiry.Sub(h.cfg.Now()), func() { h.expire(s, id) })
	}
	if id.method == "introspection" && h.cfg.RevalidateInterval > 0 {
		s.revalT = time.AfterFunc(h.jittered(), func() { h.revalidate(s, id) })
	}
}

// jittered spreads revalidations over ±10 % of the interval so that a fleet that
// connected at once is not re-checked at once.
func (h *Hook) jittered() time.Duration {
	iv := h.cfg.RevalidateInterval
	return iv - iv/10 + rand.N(iv/5+1)
}

// expire ends a session whose token has reached exp: MQTT 5 gets DISCONNECT 0xA0
// (maximum connect time), 3.1.1 a closed connection. The will is not sent: nothing
// may be published in the thing's name after its token lapsed.
func (h *Hook) expire(s *session, id *identity) {
	if s.id.Load() != id {
		return // re-authenticated meanwhile
	}
	h.endSession(s, packets.ErrMaxConnectTime, "expired", "disconnect", "disconnect", "token expired")
}

// endSession disconnects a live session for an identity reason, without its will,
// and writes the audit line (event "disconnect", or "reauth_refused" and the like).
// code goes on the wire as is (MQTT 5); 3.1.1 connections are closed.
func (h *Hook) endSession(s *session, code packets.Code, label, event, msg, reason string) {
	s.revoked.Store(true)
	cl := s.cl
	if cl.Closed() {
		return
	}
	dropWill(cl)
	h.metrics.disconnect(label)
	id := s.id.Load()
	h.audit.Warn(msg,
		slog.String("event", event),
		slog.String("thing_id", id.subject.ID),
		slog.String("client_id", cl.ID),
		slog.String("remote", clientRemote(cl)),
		slog.String("reason", reason),
		slog.String("code", hexCode(code.Code)))
	if cl.Properties.ProtocolVersion == 5 {
		_ = h.cfg.Server.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

// revalidate asks the identity provider again about an introspected token and ends
// the session if the token is no longer active. An unreachable provider is not a
// verdict: the session goes on until its token expires, and is asked again later.
func (h *Hook) revalidate(s *session, id *identity) {
	if s.id.Load() != id || s.cl.Closed() {
		return
	}
	select {
	case h.revalN <- struct{}{}:
	case <-h.ctx.Done():
		return
	}
	h.wg.Add(1)
	defer func() { <-h.revalN; h.wg.Done() }()

	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.ValidateTimeout)
	tok, err := h.cfg.Validator.Revalidate(ctx, id.token)
	cancel()
	if s.id.Load() != id {
		return
	}
	switch {
	case err == nil && sameIdentity(tok, id):
		h.applyRecheck(s, id, tok)
		return
	case err == nil:
		h.endSession(s, packets.ErrNotAuthorized, "revoked", "disconnect", "disconnect", "token now names another subject")
		return
	case errors.Is(err, introspect.ErrInvalidToken):
		h.endSession(s, packets.ErrNotAuthorized, "revoked", "disconnect", "disconnect", "token revoked or inactive")
		if h.cfg.Revoked != nil {
			h.cfg.Revoked(TokenHash(id.token))
		}
		return
	default:
		h.audit.Warn("revalidation failed",
			slog.String("event", "revalidation_failed"),
			slog.String("thing_id", id.subject.ID),
			slog.String("client_id", s.cl.ID),
			slog.String("token", id.fp),
			slog.String("error", err.Error()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revalT != nil && h.ctx.Err() == nil {
		s.revalT.Reset(h.jittered())
	}
}

// applyRecheck puts in force what a successful re-check learnt about the session's
// token: its scopes and claims (grants are compiled again and subscriptions they no
// longer allow removed, as on a policy reload) and its exp (the expiry timer is armed
// again, or not at all when the answer has none; the next re-check is the bound then).
func (h *Hook) applyRecheck(s *session, old *identity, tok *introspect.Token) {
	id := newIdentity(tok, old.token, old.fp, old.authMethod)
	id.subject = old.subject
	id.subject.Scopes = tok.Scopes
	id.subject.Claims = tok.Claims
	g, ok := s.replace(old, id, h.policy.Load())
	if !ok || h.ctx.Err() != nil {
		return // re-authenticated meanwhile, or shutting down
	}
	h.applyLimits(s)
	h.armTimers(s)
	h.trimSession(s.cl, g, "token re-checked with narrower grants")
	if h.cfg.Sessions != nil && persistent(s.cl) && !slices.Equal(old.subject.Scopes, id.subject.Scopes) {
		if err := h.cfg.Sessions.Put(s.cl.ID, StoredSession{Owner: id.owner, Subject: id.subject}); err != nil {
			h.audit.Error("session store", slog.String("client_id", s.cl.ID), slog.String("error", err.Error()))
		}
	}
}

// trimSession removes from a client the subscriptions its grants no longer allow,
// and the queued messages it may no longer receive (mochi resends inflight messages
// on resumption without asking the ACL).
func (h *Hook) trimSession(cl *mqtt.Client, g *authz.Grants, why string) {
	srv := h.cfg.Server
	var removed []packets.Subscription
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if g.Allow(authz.Subscribe, filter, sub.Qos, false).Allowed {
			continue
		}
		if srv.Topics.Unsubscribe(filter, cl.ID) {
			atomic.AddInt64(&srv.Info.Subscriptions, -1)
		}
		cl.State.Subscriptions.Delete(filter)
		removed = append(removed, sub)
	}
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish || g.Allow(authz.Receive, pk.TopicName, 0, false).Allowed {
			continue
		}
		if cl.State.Inflight.Delete(pk.PacketID) && h.cfg.Storage != nil {
			h.cfg.Storage.OnQosDropped(cl, pk)
		}
	}
	if len(removed) == 0 {
		return
	}
	if h.cfg.Storage != nil {
		h.cfg.Storage.OnUnsubscribed(cl, packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe},
			Filters:     removed,
		})
	}
	filters := make([]string, len(removed))
	for i, r := range removed {
		filters[i] = r.Filter
	}
	h.audit.Warn("subscriptions removed",
		slog.String("event", "unsubscribed"),
		slog.String("client_id", cl.ID),
		slog.String("owner", string(cl.Properties.Username)),
		slog.Any("filters", filters),
		slog.String("reason", why))
}
