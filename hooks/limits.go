package hooks

import (
	"log/slog"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"imb/authz"
)

// This file enforces the per-identity limits of topics.yaml's limits section.
//
// Memory: the state of an identity (its connect, publish and byte token buckets
// and the client ids of its sessions) lives in limitTable.live while the identity
// has a connected session, so it is bounded by the connected sessions (and so by
// max_clients). When the last session ends the state moves to an LRU of
// DefaultIdleLimitStates identities, so that a thing that reconnects at once
// still finds its connect bucket; the least recently seen idle identity is
// forgotten first, and a forgotten identity starts again with full buckets.

// DefaultIdleLimitStates bounds the identities without a connected session whose
// limit state is kept (about 720 bytes each with its key, so some 72 MB when full).
const DefaultIdleLimitStates = 100_000

// DefaultFloodGrace is how long a session may keep going over its publish limits
// before it is disconnected, when no entry sets flood_grace.
const DefaultFloodGrace = 10 * time.Second

// floodGap is the longest quiet time between two refusals that still counts as the
// same flood: a thing refused at least once a second is flooding.
const floodGap = time.Second

// Limit refusal reasons: the label of imb_limit_refusals_total and the audit line.
const (
	limitPublishRate  = "publish_rate"
	limitPublishBytes = "publish_bytes"
	limitFlood        = "flood_disconnect"
	limitConnectRate  = "connect_rate"
	limitSessions     = "sessions"
	limitSubscription = "subscriptions"
	limitInflight     = "inflight"
	limitSourceRate   = "source_validation_rate"
	limitAddressRate  = "source_connect_rate"
	limitUpstreamBusy = "upstream_validations"
)

// limitReasons lists every reason, so the metric exports each at 0 from the start.
var limitReasons = []string{limitPublishRate, limitPublishBytes, limitFlood, limitConnectRate, limitSessions,
	limitSubscription, limitInflight, limitSourceRate, limitAddressRate, limitUpstreamBusy}

// LimitCounter counts what the per-identity connect and session limits bound. The
// hook's own counter counts on this node only; a cluster can give the hook one
// that counts across its nodes (Config.LimitCounter), and the hook then asks it
// instead. Publish rates stay per node: they are checked on every message.
type LimitCounter interface {
	// AllowConnect reports whether identity may connect once more under a limit of n
	// connects per interval.
	AllowConnect(identity string, n int, per time.Duration) bool
	// AcquireSession reports whether identity may hold a session under clientID with
	// at most max sessions; a client id it holds already is not counted again (a
	// reconnect takes its own session over). release gives the session back; it is
	// called once, when the connection ends.
	AcquireSession(identity, clientID string, max int) (release func(), ok bool)
}

// idState is the limit state of one identity on this node.
type idState struct {
	connects *rate.Limiter // nil until a connects limit applies

	// mu guards creating and adjusting the buckets; the publish path uses them
	// through the session's sessionLimits without it (rate.Limiter locks itself).
	mu      sync.Mutex
	publish *rate.Limiter
	bytes   *rate.Limiter
	holders map[string]*holdToken // client id -> the token of the session holding it
}

// holdToken tells one session's hold on a client id from the next one's. It must
// not be of size zero: Go may give every zero-size allocation the same address.
type holdToken struct{ _ byte }

// limitTable is the node's LimitCounter and the home of the publish buckets.
type limitTable struct {
	mu   sync.Mutex
	live map[string]*idState
	idle *lru.Cache[string, *idState]
}

func newLimitTable(idle int) *limitTable {
	if idle <= 0 {
		idle = DefaultIdleLimitStates
	}
	c, err := lru.New[string, *idState](idle)
	if err != nil {
		panic(err) // only for a size <= 0, excluded above
	}
	return &limitTable{live: map[string]*idState{}, idle: c}
}

// state returns the state of identity, creating it; the caller holds t.mu.
func (t *limitTable) state(identity string) *idState {
	if st := t.live[identity]; st != nil {
		return st
	}
	if st, ok := t.idle.Get(identity); ok {
		return st
	}
	st := &idState{holders: map[string]*holdToken{}}
	t.idle.Add(identity, st)
	return st
}

// AllowConnect implements LimitCounter on this node.
func (t *limitTable) AllowConnect(identity string, n int, per time.Duration) bool {
	t.mu.Lock()
	st := t.state(identity)
	t.mu.Unlock()
	every := rate.Every(per / time.Duration(n))
	st.mu.Lock()
	if st.connects == nil {
		st.connects = rate.NewLimiter(every, n)
	} else if st.connects.Limit() != every || st.connects.Burst() != n {
		st.connects.SetLimit(every)
		st.connects.SetBurst(n)
	}
	lim := st.connects
	st.mu.Unlock()
	return lim.Allow()
}

// AcquireSession implements LimitCounter on this node.
func (t *limitTable) AcquireSession(identity, clientID string, max int) (func(), bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state(identity)
	if _, held := st.holders[clientID]; !held && max > 0 && len(st.holders) >= max {
		return nil, false
	}
	tok := new(holdToken)
	st.holders[clientID] = tok
	if t.live[identity] == nil {
		t.idle.Remove(identity)
		t.live[identity] = st
	}
	return func() { t.release(identity, clientID, tok) }, true
}

// release ends the hold tok has on clientID; a later session of the same client id
// holds it under another token and keeps it.
func (t *limitTable) release(identity, clientID string, tok *holdToken) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.live[identity]
	if st == nil || st.holders[clientID] != tok {
		return
	}
	delete(st.holders, clientID)
	if len(st.holders) == 0 {
		delete(t.live, identity)
		t.idle.Add(identity, st)
	}
}

// buckets returns identity's publish and byte buckets for l, creating or adjusting
// them. Sessions of one identity share them: the limit is the identity's.
func (t *limitTable) buckets(identity string, l *authz.Limits) (pub, bytes *rate.Limiter) {
	t.mu.Lock()
	st := t.state(identity)
	t.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.publish = adjust(st.publish, l.Publishes, l.PublishBurst)
	st.bytes = adjust(st.bytes, float64(l.PublishBytes), l.PublishBytesBurst)
	return st.publish, st.bytes
}

// adjust returns a bucket of r per second with burst b (nil when r is 0), reusing
// lim when there is one, so that a policy reload does not refill it.
func adjust(lim *rate.Limiter, r float64, b int) *rate.Limiter {
	switch {
	case r <= 0:
		return nil
	case lim == nil:
		return rate.NewLimiter(rate.Limit(r), b)
	}
	if lim.Limit() != rate.Limit(r) {
		lim.SetLimit(rate.Limit(r))
	}
	if lim.Burst() != b {
		lim.SetBurst(b)
	}
	return lim
}

// sessionLimits is what a session's publish path reads: its resolved limits and its
// identity's buckets. Replaced whole on reload and re-authentication.
type sessionLimits struct {
	authz.Limits
	publish *rate.Limiter // nil: no message rate
	bytes   *rate.Limiter // nil: no byte rate
	grace   int64         // flood grace in nanoseconds; 0: never disconnect
}

// limitKey is the identity limits are counted by: the principal, or for an
// anonymous client (which has no identity) its client id.
func limitKey(id *identity) string {
	if id.subject.Anonymous {
		return "anonymous\x00" + id.subject.ClientID
	}
	return id.owner
}

// resolveLimits is the policy's limits for id with the broker's defaults filled in.
func (h *Hook) resolveLimits(p *authz.Policy, id *identity) authz.Limits {
	l := p.Limits(id.subject)
	if !l.Set(authz.LimitSubscriptions) {
		l.Subscriptions = h.cfg.MaxSubscriptions // 0: no limit
	}
	if l.FloodGrace == 0 {
		l.FloodGrace = DefaultFloodGrace
	}
	return l
}

// applyLimits puts the limits the policy in force sets for the session's identity
// in force for the session.
func (h *Hook) applyLimits(s *session) *sessionLimits {
	id := s.id.Load()
	l := h.resolveLimits(h.policy.Load(), id)
	sl := &sessionLimits{Limits: l}
	sl.publish, sl.bytes = h.limits.buckets(limitKey(id), &l)
	if l.FloodGrace > 0 {
		sl.grace = int64(l.FloodGrace)
	}
	s.limits.Store(sl)
	return sl
}

// admitSource checks the connect rate of the client's source address, before any
// token is looked at: there is no identity yet, so the address stands in for one.
func (h *Hook) admitSource(cl *mqtt.Client) *refusal {
	r := h.cfg.ConnectRatePerAddr
	if r <= 0 {
		return nil
	}
	burst := max(1, int(2*r))
	if h.sources.AllowConnect("addr\x00"+remoteHost(clientRemote(cl)), burst, time.Duration(float64(burst)/r*float64(time.Second))) {
		return nil
	}
	return &refusal{v5: packets.ErrConnectionRateExceeded.Code, v3: 0x03, label: "rate_exceeded",
		limit: limitAddressRate, reason: "connection rate exceeded for this address"}
}

// admitConnect checks the connect rate of the identity; a refusal is CONNACK 0x9F
// (3.1.1: 0x03, "try later").
func (h *Hook) admitConnect(id *identity, l *authz.Limits) *refusal {
	if l.Connects == 0 || h.counter.AllowConnect(limitKey(id), l.Connects, l.ConnectsPer) {
		return nil
	}
	return &refusal{v5: packets.ErrConnectionRateExceeded.Code, v3: 0x03, label: "rate_exceeded",
		limit: limitConnectRate, reason: "connection rate exceeded for this identity",
		detail: "connects " + l.Value(authz.LimitConnects) + " from " + l.From[authz.LimitConnects].String()}
}

// admitSession takes one of the identity's sessions; beyond its quota, CONNACK 0x97
// (3.1.1 has no quota code: 0x03, "try later", for a session may end meanwhile).
func (h *Hook) admitSession(s *session, id *identity, l *authz.Limits) *refusal {
	// The node's own table always holds the session (it keeps the identity's
	// state live while it has one); a cluster's counter counts it cluster-wide too.
	key := limitKey(id)
	release, ok := h.limits.AcquireSession(key, s.cl.ID, l.Sessions)
	if ok && h.counter != LimitCounter(h.limits) {
		var clusterRelease func()
		if clusterRelease, ok = h.counter.AcquireSession(key, s.cl.ID, l.Sessions); ok {
			local := release
			release = func() { clusterRelease(); local() }
		} else {
			release()
		}
	}
	if !ok {
		return &refusal{v5: packets.ErrQuotaExceeded.Code, v3: 0x03, label: "quota_exceeded",
			limit: limitSessions, reason: "session quota exceeded for this identity",
			detail: "sessions " + l.Value(authz.LimitSessions) + " from " + l.From[authz.LimitSessions].String()}
	}
	s.mu.Lock()
	s.releaseSlot = release
	s.mu.Unlock()
	return nil
}

// releaseSession gives the session's slot back, once.
func (s *session) releaseSession() {
	s.mu.Lock()
	release := s.releaseSlot
	s.releaseSlot = nil
	s.mu.Unlock()
	if release != nil {
		release()
	}
}

// applyInflight bounds the QoS 1/2 messages in flight to and from the client: the
// send quota holds deliveries beyond it back in the session (mochi sends them as
// acknowledgements come), the receive quota is what the CONNACK's Receive Maximum
// announces, and mochi answers a client that exceeds it with DISCONNECT 0x93.
func (h *Hook) applyInflight(cl *mqtt.Client, n int) {
	if n <= 0 {
		return
	}
	send := int32(n)
	if rm := cl.Properties.Props.ReceiveMaximum; rm > 0 && int32(rm) < send {
		send = int32(rm)
	}
	cl.State.Inflight.ResetSendQuota(send)
	recv := int32(n)
	if srv := int32(h.cfg.Server.Options.Capabilities.ReceiveMaximum); srv > 0 && srv < recv {
		recv = srv
	}
	cl.State.Inflight.ResetReceiveQuota(recv)
	if a, ok := cl.Net.Conn.(ReceiveMaximumAmender); ok && cl.Properties.ProtocolVersion == 5 {
		a.AmendReceiveMaximum(uint16(recv))
	}
}

// ReceiveMaximumAmender is implemented by connections that can set the Receive
// Maximum of the success CONNACK mochi writes (the broker's listeners wrap every
// connection so): mochi announces the server-wide one.
type ReceiveMaximumAmender interface {
	AmendReceiveMaximum(n uint16)
}

// overLimit reports which publish limit pk exceeds, or "". It allocates nothing:
// two token buckets, each a mutex and some arithmetic.
func (sl *sessionLimits) overLimit(now time.Time, payload int) string {
	if sl.publish != nil && !sl.publish.AllowN(now, 1) {
		return limitPublishRate
	}
	if sl.bytes != nil && !sl.bytes.AllowN(now, payload) {
		return limitPublishBytes
	}
	return ""
}

// flooding records a refusal at now and reports whether the session has been
// refused at least once every floodGap for its whole grace period.
func (s *session) flooding(now time.Time, grace int64) bool {
	t := now.UnixNano()
	if last := s.lastOver.Swap(t); last == 0 || t-last > int64(floodGap) {
		s.floodStart.Store(t)
		return false
	}
	return grace > 0 && t-s.floodStart.Load() >= grace
}

// refusePublish answers a publish over its limits: MQTT 5 QoS 1/2 get PUBACK/PUBREC
// 0x96, QoS 0 is dropped (and counted); 3.1.1 has no negative acknowledgement, so a
// QoS 1/2 publish closes the connection. A session that keeps flooding past its
// grace period is disconnected with 0x96 (3.1.1: closed).
// The packet's fields come by value so that the publish path's packet stays on the stack.
func (h *Hook) refusePublish(cl *mqtt.Client, s *session, sl *sessionLimits, topic string, qos byte, packetID uint16, now time.Time, why string) {
	flood := s.flooding(now, sl.grace)
	h.limitRefused(s, why, topic, sl)
	v5 := cl.Properties.ProtocolVersion == 5
	switch {
	case flood:
		h.limitRefused(s, limitFlood, topic, sl)
		if v5 {
			_ = h.cfg.Server.DisconnectClient(cl, packets.ErrMessageRateTooHigh)
		} else {
			cl.Stop(packets.ErrMessageRateTooHigh)
		}
	case qos == 0:
	case v5:
		ack := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Puback},
			PacketID:    packetID,
			ReasonCode:  packets.ErrMessageRateTooHigh.Code,
			Properties:  packets.Properties{ReasonString: limitText[why]},
		}
		if qos == 2 {
			ack.FixedHeader.Type = packets.Pubrec
		}
		_ = cl.WritePacket(ack)
	default:
		cl.Stop(packets.ErrMessageRateTooHigh)
	}
}

// limitText is the reason string a client sees, by reason.
var limitText = map[string]string{
	limitPublishRate:  "message rate too high",
	limitPublishBytes: "byte rate too high",
	limitFlood:        "message rate too high for too long",
	limitSubscription: "subscription quota exceeded",
}

// limitKeyOf is the limit key a refusal reason comes from, for the audit line.
var limitKeyOf = map[string]authz.LimitKey{
	limitPublishRate:  authz.LimitPublishes,
	limitPublishBytes: authz.LimitPublishBytes,
	limitFlood:        authz.LimitFloodGrace,
	limitSubscription: authz.LimitSubscriptions,
}

// limitRefused counts a refusal by reason and writes its audit line, at most
// gateBurst lines per session per gateWindow (the count is always exact).
func (h *Hook) limitRefused(s *session, why, topic string, sl *sessionLimits) {
	h.metrics.limitRefused(why)
	ok, suppressed := s.denials.pass(h.cfg.Now())
	if !ok {
		return
	}
	id := s.id.Load()
	entry := "default"
	value := ""
	if k, known := limitKeyOf[why]; known && sl != nil {
		value = sl.Value(k)
		if sl.From[k] != nil {
			entry = sl.From[k].String()
		}
		if k == authz.LimitPublishes || k == authz.LimitPublishBytes {
			burst := sl.PublishBurst
			if k == authz.LimitPublishBytes {
				burst = sl.PublishBytesBurst
			}
			value += "/s burst " + strconv.Itoa(burst)
		}
	}
	h.audit.Warn("limit exceeded",
		slog.String("event", "limit"),
		slog.String("limit", why),
		slog.String("value", value),
		slog.String("entry", entry),
		slog.String("topic", topic),
		slog.String("thing_id", id.subject.ID),
		slog.String("client_id", s.cl.ID),
		slog.String("remote", clientRemote(s.cl)),
		slog.Int("suppressed_since_last", suppressed))
	if h.cfg.Denied != nil {
		h.cfg.Denied(Denial{Time: h.cfg.Now(), Action: "limit", Topic: topic, ThingID: id.subject.ID,
			ClientID: s.cl.ID, Remote: clientRemote(s.cl), Reason: why, Rule: entry})
	}
}
