package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/authz"
	"imb/internal/claimpath"
	"imb/introspect"
)

// refusal is why a CONNECT is refused, as the MQTT 5 reason code, the MQTT 3.1.1
// return code and a short reason safe to show the client and the audit log.
type refusal struct {
	v5, v3 byte
	label  string // metrics label
	limit  string // the limit refusal reason (imb_limit_refusals_total), when a limit refused
	reason string
	detail string // for the audit line only: what exactly was wrong (never the token)
}

func badToken(reason string) *refusal {
	return &refusal{v5: 0x86, v3: 0x04, label: "bad_token", reason: reason}
}

func notAuthorized(reason string) *refusal {
	return &refusal{v5: 0x87, v3: 0x05, label: "not_authorized", reason: reason}
}

func unavailable(reason string) *refusal {
	return &refusal{v5: 0x88, v3: 0x03, label: "unavailable", reason: reason}
}

// rateExceeded is a validation refused before it reached the identity provider,
// because upstream validations are at their bound. 3.1.1 has no such code; 0x03
// (server unavailable) also says "later".
func rateExceeded(reason string) *refusal {
	return &refusal{v5: 0x9F, v3: 0x03, label: "rate_exceeded", reason: reason}
}

func badAuthMethod(reason string) *refusal {
	return &refusal{v5: 0x8C, v3: 0x05, label: "bad_auth_method", reason: reason}
}

// refusalFor maps a validation error to its CONNACK: an identity provider that
// cannot answer is 0x88 (fail closed), anything else about the token is 0x86.
func refusalFor(err error) *refusal {
	reason := "invalid token"
	detail := ""
	var ie *introspect.Error
	if errors.As(err, &ie) && ie.Reason != "" {
		reason = ie.Reason
		if ie.Err != nil {
			detail = ie.Err.Error()
		}
	}
	var r *refusal
	switch {
	case errors.Is(err, introspect.ErrBusy):
		r = rateExceeded(reason)
		r.limit = limitUpstreamBusy
		if reason == introspect.ReasonSourceRateExceeded {
			r.limit = limitSourceRate
		}
	case errors.Is(err, introspect.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		if reason == "invalid token" {
			reason = "identity provider unavailable"
		}
		r = unavailable(reason)
	default:
		r = badToken(reason)
	}
	// The detail (the token's iss and the issuer expected, say) goes to the audit line only: the CONNACK reason
	// string stays the fixed text, so a client learns nothing about the configuration from a refusal.
	r.detail = truncateDetail(detail)
	return r
}

// OnConnect authenticates the client and decides everything about the connection
// before mochi's OnConnectAuthenticate, because only here can the hook answer with a
// CONNACK reason code of its own (mochi's fixed answer is 0x86).
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if r := h.admitSource(cl); r != nil {
		return h.refuse(cl, nil, r)
	}
	id, r := h.authenticate(cl, pk)
	if r == nil {
		r = h.checkRevoked(id, cl.ID)
	}
	if r == nil {
		r = h.checkBinding(cl, id)
	}
	if r != nil {
		return h.refuse(cl, id, r)
	}
	policy := h.policy.Load()
	if r := requireBound(policy, id); r != nil {
		return h.refuse(cl, id, r)
	}
	grants := policy.Compile(id.subject)
	s := newSession(cl, id, grants)
	sl := h.applyLimits(s)
	if r := h.admitConnect(id, &sl.Limits); r != nil {
		return h.refuse(cl, id, r)
	}

	if cl.Properties.Will.Flag == 1 {
		w := cl.Properties.Will
		d := s.allow(authz.Publish, w.TopicName, w.Qos, w.Retain)
		if !d.Allowed {
			h.metrics.willDenied()
			h.auditDecision(s, "will denied", authz.Publish, w.TopicName, d)
			if h.cfg.WillDenied == WillReject {
				return h.refuse(cl, id, notAuthorized("will not allowed: "+d.Reason))
			}
			cl.Properties.Will = mqtt.Will{}
		}
	}

	if existing, ok := h.cfg.Server.Clients.Get(cl.ID); ok && existing != cl {
		// mochi inherits a stored session by client id alone (#504): an identity may
		// never resume, or take over, what another identity left under the same id.
		// Identity here is the whole principal, not the plain id: a thing named like
		// a client, or a subject of another issuer, is another identity.
		owner := string(existing.Properties.Username)
		if owner != id.owner && !existing.Closed() {
			return h.refuse(cl, id, notAuthorized("client identifier in use by another identity"))
		}
		if id.subject.Anonymous && owner != "" {
			// Without a token there is no identity to take a thing's stored session from.
			return h.refuse(cl, id, notAuthorized("client identifier belongs to an identity"))
		}
		h.finishOld(existing)
	}
	if r := h.admitSession(s, id, &sl.Limits); r != nil {
		return h.refuse(cl, id, r)
	}
	if r := h.claim(s, id.owner); r != nil {
		s.releaseSession()
		return h.refuse(cl, id, r)
	}

	h.sessions.Store(cl, s)
	h.applyInflight(cl, sl.Inflight)
	if id.authMethod != "" && cl.Properties.ProtocolVersion == 5 {
		if a, ok := cl.Net.Conn.(ConnackAmender); ok {
			a.AmendConnack(id.authMethod)
		}
	}
	return nil
}

// authenticate reads the token from CONNECT, validates it and binds the client id.
func (h *Hook) authenticate(cl *mqtt.Client, pk packets.Packet) (*identity, *refusal) {
	token, authMethod, r := tokenFromConnect(cl, pk, h.cfg.TokenField)
	if r != nil {
		return nil, r
	}
	if token == "" {
		if !h.policy.Load().AllowsAnonymous() {
			return nil, badToken("no token presented")
		}
		return &identity{
			subject: authz.Subject{ClientID: cl.ID, Anonymous: true},
			method:  "anonymous",
		}, nil
	}

	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.ValidateTimeout)
	// The source address rates the upstream requests unknown tokens cause.
	ctx = introspect.WithSource(ctx, remoteHost(clientRemote(cl)))
	start := time.Now()
	tok, err := h.cfg.Validator.Validate(ctx, token)
	cancel()
	h.metrics.validation(time.Since(start))
	fp := introspect.Fingerprint(token)
	if err != nil {
		return &identity{fp: fp}, refusalFor(err)
	}
	now := h.cfg.Now()
	if !tok.Expiry.IsZero() && !tok.Expiry.After(now) {
		return &identity{fp: fp}, badToken("token expired")
	}
	if tok.ThingID == "" {
		return &identity{fp: fp}, badToken("token names no subject")
	}
	if h.unbounded(tok) {
		return &identity{fp: fp}, badToken(reasonUnbounded)
	}
	if strings.ContainsAny(tok.ThingID, "/+#\x00") {
		// Such an identity could never own its {sub} topics (authz skips those rules),
		// and as a client id or audit value it would only confuse: refuse it outright.
		return &identity{fp: fp}, notAuthorized("token subject contains a character reserved in topics (/ + # or NUL)")
	}
	id := newIdentity(tok, token, fp, authMethod)
	id.subject = authz.Subject{ID: tok.ThingID, Scopes: tok.Scopes, Claims: tok.Claims}

	if cl.Net.Listener == DoorListener && cl.Properties.Props.AssignedClientID != "" {
		// One HTTP request of the door is one clean session that ends with the request: an id of
		// its own, so that it never takes over the thing's MQTT session or another request's.
		// There is no session to steal under it (clean start, no expiry), and the door sends no
		// username; the grants and limits are the identity's as always.
		cl.ID = tok.ThingID + DoorClientIDInfix + cl.ID
		cl.Properties.Props.AssignedClientID = cl.ID
		id.subject.ClientID = cl.ID
		return id, nil
	}
	if h.cfg.RequireUsername && !usernameIs(cl, tok.ThingID) {
		id.subject.ClientID = cl.ID
		return id, notAuthorized("username does not match the token's subject")
	}
	if cl.Properties.Props.AssignedClientID != "" {
		// The client sent an empty client id: give it one bound to its identity.
		cl.ID = h.assignID(tok.ThingID, cl.ID)
		cl.Properties.Props.AssignedClientID = cl.ID
		if cl.Properties.ProtocolVersion < 5 {
			cl.Properties.Props.AssignedClientID = ""
		}
	}
	id.subject.ClientID = cl.ID
	if !h.bound(tok.ThingID, cl.ID) {
		return id, notAuthorized("client identifier not bound to the token's subject")
	}
	return id, nil
}

// reasonUnbounded is why a token without exp that nothing checks again is refused.
const reasonUnbounded = "token has no expiry and is never checked again"

// unbounded reports a token whose session nothing would ever end: no exp, and no
// re-check (only introspected tokens are re-checked, and only with a positive
// RevalidateInterval). A token without exp lives as long as each re-check finds it
// active; the re-check interval is its bound.
func (h *Hook) unbounded(tok *introspect.Token) bool {
	return tok.Expiry.IsZero() && (tok.Method != introspect.MethodIntrospection || h.cfg.RevalidateInterval < 0)
}

// Values of Config.TokenField.
const (
	TokenInPassword = "password"
	TokenInUsername = "username"
	TokenInEither   = "either"
)

// tokenFromConnect takes the token from MQTT 5 Authentication Data under AuthMethod,
// or else from the CONNECT field that field names.
func tokenFromConnect(cl *mqtt.Client, pk packets.Packet, field string) (token, authMethod string, r *refusal) {
	if m := pk.Properties.AuthenticationMethod; m != "" {
		if m != AuthMethod && m != PoPAuthMethod {
			return "", "", badAuthMethod("authentication method not supported; use " + AuthMethod + " or " + PoPAuthMethod)
		}
		if len(pk.Properties.AuthenticationData) == 0 {
			return "", "", badToken("no token in authentication data")
		}
		return string(pk.Properties.AuthenticationData), m, nil
	}
	if field == TokenInUsername || (field == TokenInEither && len(pk.Connect.Password) == 0) {
		// The username is a token here, not a name: no log line or stored record
		// may see it (the identity's name replaces it once the token is judged).
		cl.Properties.Username = nil
		return string(pk.Connect.Username), "", nil
	}
	return string(pk.Connect.Password), "", nil
}

// refuse answers a CONNECT with the refusal's code and records it. Returning an error
// from OnConnect makes mochi close the connection without a CONNACK of its own.
func (h *Hook) refuse(cl *mqtt.Client, id *identity, r *refusal) error {
	code := r.v5
	if cl.Properties.ProtocolVersion < 5 {
		code = r.v3
	}
	h.metrics.connect("refused", r.label)
	if r.limit != "" {
		h.metrics.limitRefused(r.limit)
	}
	attrs := []any{
		slog.String("event", "connect_refused"),
		slog.String("client_id", cl.ID),
		slog.String("remote", clientRemote(cl)),
		slog.String("reason", r.reason),
		slog.String("code", hexCode(code)),
	}
	if r.detail != "" {
		attrs = append(attrs, slog.String("detail", r.detail))
	}
	if r.limit != "" {
		attrs = append(attrs, slog.String("limit", r.limit))
	}
	if id != nil {
		if id.subject.ID != "" {
			attrs = append(attrs, slog.String("thing_id", id.subject.ID))
		}
		if id.fp != "" {
			attrs = append(attrs, slog.String("token", id.fp))
		}
	}
	// Audit before answering: whoever sees the CONNACK can rely on the record.
	h.audit.Warn("connect refused", attrs...)
	if h.cfg.Denied != nil {
		d := Denial{Time: h.cfg.Now(), Action: "connect", ClientID: cl.ID, Remote: clientRemote(cl),
			Reason: r.reason + " (" + hexCode(code) + ")"}
		if id != nil {
			d.ThingID = id.subject.ID
		}
		h.cfg.Denied(d)
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connack},
		ReasonCode:  code,
	}
	if cl.Properties.ProtocolVersion == 5 {
		ack.Properties.ReasonString = r.reason
	}
	_ = cl.WritePacket(ack)
	return packets.Code{Code: r.v5, Reason: r.reason}
}

// OnConnectAuthenticate returns what OnConnect decided.
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.session(cl) != nil
}

// OnSessionEstablish runs after authentication and before mochi inherits any stored
// session for the client id: the hook scrubs the token from the client record
// (storage hooks persist it otherwise), discards a session left by another
// identity, trims an own session to the current grants, and arms the timers.
func (h *Hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	s := h.session(cl)
	if s == nil {
		return
	}
	id := s.id.Load()
	cl.Properties.Props.AuthenticationData = nil
	// The username becomes the owner of the session: storage hooks persist it, so the
	// owner of a stored session is known again after a restart.
	cl.Properties.Username = []byte(id.owner)

	if existing, ok := h.cfg.Server.Clients.Get(cl.ID); ok && existing != cl {
		if string(existing.Properties.Username) != id.owner {
			h.discardSession(existing, "stored session belonged to another identity")
		} else {
			h.trimSession(existing, s.grants.Load(), "resumed session trimmed to current grants")
		}
		if old := h.session(existing); old != nil {
			old.stopTimers()
			h.sessions.Delete(existing)
		}
	}

	h.cancelWill(cl.ID) // [MQTT-3.1.3-9]
	h.armTimers(s)
	if h.cfg.Sessions != nil && persistent(cl) {
		if err := h.cfg.Sessions.Put(cl.ID, StoredSession{Owner: id.owner, Subject: id.subject}); err != nil {
			h.audit.Error("session store", slog.String("client_id", cl.ID), slog.String("error", err.Error()))
		}
	}
	if id.bound != "" {
		h.metrics.connect("accepted", "bound_"+id.bound) // a sender-constrained token, its binding proven
	} else {
		h.metrics.connect("accepted", "ok")
	}
	attrs := []any{
		slog.String("event", "connect"),
		slog.String("thing_id", id.subject.ID),
		slog.String("client_id", cl.ID),
		slog.String("remote", clientRemote(cl)),
		slog.String("method", id.method),
		slog.Int("protocol", int(cl.Properties.ProtocolVersion)),
	}
	if id.fp != "" {
		attrs = append(attrs, slog.String("token", id.fp))
	}
	if id.bound != "" {
		attrs = append(attrs, slog.String("bound", id.bound))
	}
	if !id.expiry.IsZero() {
		attrs = append(attrs, slog.Time("expires", id.expiry))
	}
	if !id.subject.Anonymous {
		// What the policy decides by, so a refused publish can be explained from the log: the scopes as the
		// claims map read them, and the value of every claim a rule reads. Never the token itself.
		attrs = append(attrs, slog.Any("scopes", nonNil(id.subject.Scopes)))
		if used := usedClaims(h.policy.Load(), id.subject.Claims); len(used) > 0 {
			attrs = append(attrs, slog.Any("claims", used))
		}
	}
	h.audit.Info("connect", attrs...)
}

// persistent reports whether the client's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// OnDisconnect stops the session's timers. A persistent session keeps its grants
// while the thing is away, so that messages queued for it are judged as they arrive;
// whoever resumes it must present the same identity again.
func (h *Hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	s := h.session(cl)
	if s == nil {
		if !expire {
			h.restoreSession(cl)
		}
		return
	}
	if errors.Is(err, packets.ErrReceiveMaximum) {
		h.limitRefused(s, limitInflight, "", s.limits.Load())
	}
	s.stopTimers()
	s.releaseSession()
	h.release(s, expire)
	if expire || cl.IsTakenOver() {
		h.sessions.Delete(cl)
		if expire && h.cfg.Sessions != nil {
			_ = h.cfg.Sessions.Delete(cl.ID)
		}
		return
	}
	// Offline: queueing follows the last grants; the token itself no longer matters
	// until the thing comes back with a valid one.
	s.revoked.Store(false)
}

// OnClientExpired forgets a persistent session mochi has expired.
func (h *Hook) OnClientExpired(cl *mqtt.Client) {
	if s := h.session(cl); s != nil {
		s.stopTimers()
		h.sessions.Delete(cl)
	}
	if h.cfg.Sessions != nil {
		_ = h.cfg.Sessions.Delete(cl.ID)
	}
}

// restoreSession gives a session loaded from storage after a restart the grants of
// the identity that owned it, so that messages queued for it are authorized, and
// settles its owner (the username mochi stored). The session record confirms the
// owner. A record written before owners were kept names only the plain id (the
// username was the plain id then): it counts when that matches, and the owner is
// derived from the verified claims the record holds, so that only the principal
// that left the session resumes it. Without a record, only an owner in principal
// form is believed; a plain one is replaced by one no principal has, so that the
// session is discarded, never inherited, when anyone connects under its client id.
func (h *Hook) restoreSession(cl *mqtt.Client) {
	stored := string(cl.Properties.Username)
	var rec StoredSession
	var found bool
	if h.cfg.Sessions != nil {
		var err error
		if rec, found, err = h.cfg.Sessions.Get(cl.ID); err != nil {
			found = false
		}
	}
	owner, ok := stored, false
	switch {
	case !found:
		ok = stored == "" || isPrincipal(stored)
	case rec.Owner != "":
		ok = rec.Owner == stored
	case rec.Subject.Anonymous:
		ok = stored == ""
	case rec.Subject.ID == stored:
		if p, err := introspect.PrincipalOfClaims(rec.Subject.Claims); err == nil {
			owner, ok = p.String(), true
		}
	}
	if !ok {
		cl.Properties.Username = []byte(unconfirmedOwner)
		return
	}
	cl.Properties.Username = []byte(owner)
	if !found {
		return // no identity to compile grants from: nothing queued is delivered until the owner is back
	}
	id := &identity{subject: rec.Subject, owner: owner, method: "restored"}
	h.sessions.Store(cl, newSession(cl, id, h.policy.Load().Compile(rec.Subject)))
}

// unconfirmedOwner is the owner of a restored session that nothing confirms. No
// principal encodes to it (they are JSON arrays), and it is not "", so neither an
// identity nor an anonymous client resumes the session.
const unconfirmedOwner = "unconfirmed owner"

// isPrincipal reports whether an owner is in the form introspect.Principal.String
// writes: a JSON array of three strings.
func isPrincipal(owner string) bool {
	var parts []string
	return strings.HasPrefix(owner, "[") && json.Unmarshal([]byte(owner), &parts) == nil && len(parts) == 3
}

// discardSession throws away a stored session so that nothing of it reaches the
// client that connects under its id.
func (h *Hook) discardSession(existing *mqtt.Client, why string) {
	srv := h.cfg.Server
	if h.cfg.Storage != nil {
		for _, pk := range existing.State.Inflight.GetAll(false) {
			h.cfg.Storage.OnQosDropped(existing, pk)
		}
	}
	srv.UnsubscribeClient(existing)
	existing.ClearInflights()
	srv.Clients.Delete(existing.ID)
	if h.cfg.Sessions != nil {
		_ = h.cfg.Sessions.Delete(existing.ID)
	}
	h.audit.Warn("session discarded",
		slog.String("event", "session_discarded"),
		slog.String("client_id", existing.ID),
		slog.String("previous_owner", string(existing.Properties.Username)),
		slog.String("reason", why))
}

// remoteHost is the IP address of a client's remote address, without the port.
func remoteHost(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

func hexCode(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{'0', 'x', digits[c>>4], digits[c&0xf]})
}

// finishOld takes over a connection of the same client id and waits until mochi has
// finished it. mochi's clean-up of a clean session deletes the client and its
// subscriptions by client id; run after the new client has registered (a reconnect
// racing the old connection's end, or mochi's own takeover), it would delete the new
// ones. Taking over here, before mochi registers the new client, orders the two.
func (h *Hook) finishOld(existing *mqtt.Client) {
	e, ok := existing.Net.Conn.(ConnEnder)
	if !ok {
		return // restored from storage: no connection behind it
	}
	if !existing.Closed() {
		if existing.Properties.ProtocolVersion == 5 {
			_ = h.cfg.Server.DisconnectClient(existing, packets.ErrSessionTakenOver)
		} else {
			existing.Stop(packets.ErrSessionTakenOver) // 3.1.1 has no server DISCONNECT
		}
	}
	select {
	case <-e.Ended():
	case <-time.After(2 * time.Second):
	}
}

// usedClaims returns the values of the claims the policy's rules read that the token carries, by path.
func usedClaims(pol *authz.Policy, claims map[string]any) map[string]any {
	var out map[string]any
	for _, p := range pol.ClaimPaths() {
		if v, ok := claimpath.Lookup(claims, p); ok {
			if out == nil {
				out = map[string]any{}
			}
			out[p] = v
		}
	}
	return out
}

// nonNil makes an absent list log as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// maxDetail bounds the detail of a refusal in the audit line; it may quote issuer-controlled text.
const maxDetail = 512

func truncateDetail(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	return s[:maxDetail] + "…"
}
