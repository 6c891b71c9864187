package hooks

import (
	"context"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/introspect"
)

// OnAuthPacket handles MQTT 5 re-authentication: AUTH with reason 0x19, the method the
// connection authenticated with (OAUTH2-JWT or IMB-POP) and a fresh token as
// Authentication Data; under IMB-POP the broker answers AUTH 0x18 with a nonce and the
// client's AUTH 0x18 carries the proof (pop.go). The same identity gets the new token's
// expiry and grants (subscriptions the new grants refuse are removed) and an AUTH 0x00
// reply. Another identity, a token that is not accepted or a proof that fails ends the
// connection with DISCONNECT 0x87, another method with 0x8C, an unreachable identity
// provider with 0x89, and AUTH on a connection that authenticated by password (MQTT
// 5 §4.12 forbids it) with 0x82. 0x86 and 0x88 are CONNACK codes that MQTT 5 does
// not allow in DISCONNECT. mochi discards what this method returns and logs the whole packet
// (token included) when it returns an error, so the hook writes every reply itself
// and always returns nil.
func (h *Hook) OnAuthPacket(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	s := h.session(cl)
	if s == nil {
		cl.Stop(packets.ErrNotAuthorized)
		return pk, nil
	}
	old := s.id.Load()
	fail := func(code packets.Code, reason string) (packets.Packet, error) {
		h.endSession(s, packets.Code{Code: code.Code, Reason: reason}, "reauth_failed", "reauth_refused",
			"re-authentication refused", reason)
		return pk, nil
	}

	if old.authMethod == "" {
		// MQTT 5 §4.12: AUTH is a protocol error on a connection that did not use an
		// Authentication Method in CONNECT.
		return fail(packets.ErrProtocolViolation, "re-authentication needs CONNECT with authentication method "+AuthMethod+" or "+PoPAuthMethod)
	}
	if pk.Properties.AuthenticationMethod != old.authMethod {
		// [MQTT-4.12.1-1]: re-authentication uses the method of CONNECT.
		return fail(packets.ErrBadAuthenticationMethod, "authentication method is not the one of CONNECT ("+old.authMethod+")")
	}
	switch {
	case pk.ReasonCode == packets.CodeContinueAuthentication.Code && old.authMethod == PoPAuthMethod:
		c := s.challenge.Swap(nil) // a nonce answers one proof
		if c == nil {
			return fail(packets.ErrProtocolViolation, "no re-authentication waits for a proof")
		}
		if err := c.verify(pk.Properties.AuthenticationData, h.cfg.PoPAudience, h.cfg.Now()); err != nil {
			h.audit.Warn("proof of possession failed", "event", "proof_failed", "client_id", cl.ID, "detail", truncateDetail(err.Error()))
			return fail(packets.ErrNotAuthorized, "proof of possession failed")
		}
		if s.id.Load() != old || !sameIdentity(c.tok, old) {
			return fail(packets.ErrNotAuthorized, "re-authentication as another identity")
		}
		h.reauthenticated(cl, s, old, c.tok, c.token, joinBound(boundKey, c.bound))
		return pk, nil
	case pk.ReasonCode != packets.CodeReAuthenticate.Code:
		return fail(packets.ErrProtocolViolation, "only re-authentication (0x19) is supported")
	}
	if old.subject.Anonymous {
		return fail(packets.ErrNotAuthorized, "anonymous sessions cannot re-authenticate")
	}
	token := string(pk.Properties.AuthenticationData)
	if token == "" {
		return fail(packets.ErrNotAuthorized, "no token in authentication data")
	}

	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.ValidateTimeout)
	start := time.Now()
	tok, err := h.cfg.Validator.Validate(ctx, token)
	cancel()
	h.metrics.validation(time.Since(start))
	if err != nil {
		r := refusalFor(err)
		if r.v5 == 0x88 || r.v5 == 0x9F {
			// 0x88 is not a DISCONNECT code; 0x89 (server busy) is, and says "try later"
			// (also when upstream validations are at their bound).
			return fail(packets.ErrServerBusy, r.reason)
		}
		// Neither is 0x86: a token that is not accepted means "not authorized".
		return fail(packets.ErrNotAuthorized, r.reason)
	}
	if !tok.Expiry.IsZero() && !tok.Expiry.After(h.cfg.Now()) {
		return fail(packets.ErrNotAuthorized, "token expired")
	}
	if !sameIdentity(tok, old) {
		return fail(packets.ErrNotAuthorized, "re-authentication as another identity")
	}
	if h.unbounded(tok) {
		return fail(packets.ErrNotAuthorized, reasonUnbounded)
	}
	certBound := tok.Confirmation != nil && tok.Confirmation.X5TS256 != ""
	if certBound && !provedCert(proven(cl), tok.Confirmation) {
		return fail(packets.ErrNotAuthorized, "token is bound to a client certificate this connection did not present")
	}
	bound := ""
	if certBound {
		bound = boundCert
	}
	keyBound := tok.Confirmation.KeyBound()
	switch {
	case old.authMethod == PoPAuthMethod && !keyBound:
		return fail(packets.ErrNotAuthorized, "token is not bound to a key: "+PoPAuthMethod+" needs cnf.jwk or cnf.jkt")
	case old.authMethod == PoPAuthMethod:
		c := h.newChallenge(cl, tok, token)
		c.clientID = cl.ID // after CONNACK the client knows the id, assigned or not
		c.bound = bound
		s.challenge.Store(c)
		_ = cl.WritePacket(authPacket(packets.CodeContinueAuthentication.Code, []byte(c.nonce)))
		return pk, nil
	case keyBound:
		return fail(packets.ErrNotAuthorized, "token is bound to a key: authenticate with "+PoPAuthMethod)
	}
	h.reauthenticated(cl, s, old, tok, token, bound)
	return pk, nil
}

// reauthenticated gives the session the identity of a re-authentication that passed, and answers AUTH 0x00.
func (h *Hook) reauthenticated(cl *mqtt.Client, s *session, old *identity, tok *introspect.Token, token, bound string) {
	id := newIdentity(tok, token, introspect.Fingerprint(token), old.authMethod)
	id.subject = old.subject
	id.subject.Scopes = tok.Scopes
	id.subject.Claims = tok.Claims
	id.bound = bound
	r := h.checkRevoked(id, cl.ID)
	if r == nil {
		r = requireBound(h.policy.Load(), id)
	}
	if r != nil {
		h.endSession(s, packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: r.reason}, "reauth_failed", "reauth_refused",
			"re-authentication refused", r.reason)
		return
	}
	grants, _ := s.replace(nil, id, h.policy.Load())
	h.applyLimits(s)
	s.revoked.Store(false)
	h.armTimers(s)
	h.trimSession(cl, grants, "re-authenticated with narrower grants")

	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Auth},
		ReasonCode:  packets.CodeSuccess.Code,
		Properties:  packets.Properties{AuthenticationMethod: old.authMethod},
	})
	attrs := []any{
		slog.String("event", "reauth"),
		slog.String("thing_id", id.subject.ID),
		slog.String("client_id", cl.ID),
		slog.String("token", id.fp),
	}
	if bound != "" {
		attrs = append(attrs, slog.String("bound", bound))
	}
	if !id.expiry.IsZero() {
		attrs = append(attrs, slog.Time("expires", id.expiry))
	}
	h.audit.Info("re-authenticated", attrs...)
}
