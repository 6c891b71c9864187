package hooks

import (
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/authz"
)

// OnACLCheck answers mochi's write check on PUBLISH and its read check, which mochi
// makes both for each SUBSCRIBE filter and for every delivery of a message to this
// client (in the publisher's goroutine, once per subscriber). It allocates nothing.
//
// The write check here sees neither QoS, retain flag nor the topic of an aliased
// publish (mochi resolves aliases after it), so OnPublish makes the publish decision.
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.session(cl)
	if s == nil {
		// A session kept for an owner with nobody connected, and no state of this
		// hook's: one restored from storage or rebuilt from the cluster. What it is
		// sent waits in its queue and is judged against the owner's grants when it
		// resumes (trimSession), as the messages it came with are.
		return !write && cl.Closed() && len(cl.Properties.Username) > 0 && !isFilter(topic)
	}
	if write {
		// OnPublish decides every publish, with its QoS, retain flag and the topic
		// resolved from any alias, and answers a denial as each protocol version
		// requires (a denial here would make mochi send 3.1.1 clients a DISCONNECT,
		// which 3.1.1 does not allow). Deciding here as well would only cost time.
		return !s.revoked.Load()
	}
	if p := s.pending.Load(); p != nil {
		for _, sd := range *p {
			if sd.filter == topic {
				if !sd.allowed {
					return false
				}
				if isFilter(topic) {
					return true
				}
				break // a concrete filter: also check that it can be received
			}
		}
	}
	if isFilter(topic) {
		// A filter outside a SUBSCRIBE this hook judged: never a delivery.
		return false
	}
	d := s.allow(authz.Receive, topic, 0, false)
	if !d.Allowed {
		h.denied(s, authz.Receive, topic, d)
	}
	return d.Allowed
}

// isFilter reports whether s is a topic filter rather than a topic name: topic names
// never hold wildcards, and shared subscriptions exist only as filters.
func isFilter(s string) bool {
	return strings.ContainsAny(s, "+#") || (len(s) > 7 && strings.EqualFold(s[:7], "$share/"))
}

// OnSubscribe judges every filter of a SUBSCRIBE with the requested QoS, lowers the
// QoS to what the deciding rule permits, and leaves the verdicts for mochi's
// per-filter OnACLCheck, which then answers SUBACK 0x87 (v3.1.1: 0x80) for a denial.
func (h *Hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	s := h.session(cl)
	if s == nil {
		return pk
	}
	decisions := make([]subDecision, len(pk.Filters))
	count := cl.State.Subscriptions.Len()
	sl := s.limits.Load()
	quota := h.cfg.MaxSubscriptions
	if sl != nil {
		quota = sl.Subscriptions
	}
	for i, f := range pk.Filters {
		d := s.allow(authz.Subscribe, f.Filter, f.Qos, false)
		decisions[i] = subDecision{filter: f.Filter, allowed: d.Allowed}
		if !d.Allowed {
			h.denied(s, authz.Subscribe, f.Filter, d)
			continue
		}
		if quota > 0 && newFilter(cl, pk.Filters[:i], f.Filter) {
			if count >= quota {
				decisions[i] = subDecision{filter: f.Filter, quota: true}
				h.limitRefused(s, limitSubscription, f.Filter, sl)
				continue
			}
			count++
		}
		if f.Qos > d.MaxQoS {
			pk.Filters[i].Qos = d.MaxQoS
		}
	}
	s.pending.Store(&decisions)
	return pk
}

// newFilter reports whether filter would add a subscription: it is neither held by
// the client already (a SUBSCRIBE to it replaces it) nor earlier in the same packet.
func newFilter(cl *mqtt.Client, earlier []packets.Subscription, filter string) bool {
	if _, ok := cl.State.Subscriptions.Get(filter); ok {
		return false
	}
	for _, e := range earlier {
		if e.Filter == filter {
			return false
		}
	}
	return true
}

// OnSubscribed clears the verdicts OnSubscribe left, before mochi sends retained
// messages (those are judged one by one as deliveries). It also turns the 0x87 mochi
// answered for a filter beyond the subscription quota into 0x97 Quota exceeded:
// mochi hands the hook the very reason codes it is about to write in the SUBACK.
// MQTT 3.1.1 keeps mochi's 0x80, its only failure code.
func (h *Hook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, codes []byte) {
	s := h.session(cl)
	if s == nil {
		return
	}
	if p := s.pending.Load(); p != nil && cl.Properties.ProtocolVersion == 5 {
		for i, sd := range *p {
			if sd.quota && i < len(codes) && codes[i] == packets.ErrNotAuthorized.Code {
				codes[i] = packets.ErrQuotaExceeded.Code
			}
		}
	}
	s.pending.Store(nil)
}

// OnPublish repeats the publish decision with the packet's QoS and retain flag and
// the topic resolved from any alias. A denial answers v5 QoS 1/2 with PUBACK/PUBREC
// 0x87, drops QoS 0 silently, and closes a v3.1.1 connection publishing at QoS > 0
// (3.1.1 has no negative acknowledgement). Only ErrRejectPacket stops mochi from
// delivering, so that is the only error returned.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.session(cl)
	if s == nil {
		return pk, packets.ErrRejectPacket
	}
	d := s.allow(authz.Publish, pk.TopicName, pk.FixedHeader.Qos, pk.FixedHeader.Retain)
	if d.Allowed {
		if sl := s.limits.Load(); sl != nil && (sl.publish != nil || sl.bytes != nil) {
			now := h.cfg.Now()
			if why := sl.overLimit(now, len(pk.Payload)); why != "" {
				h.refusePublish(cl, s, sl, pk.TopicName, pk.FixedHeader.Qos, pk.PacketID, now, why)
				return pk, packets.ErrRejectPacket
			}
		}
		if h.cfg.Journal != nil && pk.FixedHeader.Qos > 0 {
			if err := h.cfg.Journal.Put(journalKey(cl, pk), pk); err != nil {
				h.audit.Error("journal", slog.String("client_id", cl.ID), slog.String("error", err.Error()))
			}
		}
		return pk, nil
	}
	h.denied(s, authz.Publish, pk.TopicName, d)
	switch {
	case pk.FixedHeader.Qos == 0:
	case cl.Properties.ProtocolVersion == 5:
		ack := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Puback},
			PacketID:    pk.PacketID,
			ReasonCode:  packets.ErrNotAuthorized.Code,
			Properties:  packets.Properties{ReasonString: d.Reason},
		}
		if pk.FixedHeader.Qos == 2 {
			ack.FixedHeader.Type = packets.Pubrec
		}
		_ = cl.WritePacket(ack)
	default:
		cl.Stop(packets.ErrNotAuthorized) // closed without a packet: 3.1.1 has no server DISCONNECT
	}
	return pk, packets.ErrRejectPacket
}

// OnWill judges the will again when it is about to be sent, with the grants in force
// now (the token may have been re-authenticated, revoked or the policy reloaded).
// mochi ignores errors from OnWill, so a denied will is neutralised instead: an
// empty topic reaches no subscriber and, without retain, no retained store. A will
// with a delay is neutralised for mochi too and sent by the hook when it is due,
// judged once more then (see delayedWills).
func (h *Hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	s := h.session(cl)
	if s == nil {
		return mqtt.Will{}, nil
	}
	d := s.allow(authz.Publish, will.TopicName, will.Qos, will.Retain)
	if !d.Allowed {
		h.metrics.willDenied()
		h.auditDecision(s, "will dropped", authz.Publish, will.TopicName, d)
		return mqtt.Will{}, nil
	}
	if will.WillDelayInterval > 0 {
		// mochi would send this will later without asking again: send it ourselves.
		h.deferWill(cl, s, will)
		return mqtt.Will{}, nil
	}
	return will, nil
}

// dropWill clears a client's will, before a disconnect the thing has not earned a
// will for (expiry, revocation, failed re-authentication).
func dropWill(cl *mqtt.Client) {
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
}

// denied counts a denial and writes it to the audit log, at most gateBurst lines per
// session per gateWindow.
func (h *Hook) denied(s *session, a authz.Action, topic string, d authz.Decision) {
	h.metrics.denied(a)
	ok, suppressed := s.denials.pass(h.cfg.Now())
	if !ok {
		return
	}
	attrs := []any{slog.Int("suppressed_since_last", suppressed)}
	h.auditDecision(s, "denied", a, topic, d, attrs...)
}

// auditDecision writes one audit line for a decision that denies.
func (h *Hook) auditDecision(s *session, msg string, a authz.Action, topic string, d authz.Decision, extra ...any) {
	id := s.id.Load()
	rule := "none (deny by default)"
	if d.Rule != nil {
		rule = d.Rule.String()
	}
	attrs := append([]any{
		slog.String("event", "deny"),
		slog.String("action", a.String()),
		slog.String("topic", topic),
		slog.String("thing_id", id.subject.ID),
		slog.String("client_id", s.cl.ID),
		slog.String("remote", clientRemote(s.cl)),
		slog.String("reason", d.Reason),
		slog.String("rule", rule),
	}, extra...)
	h.audit.Warn(msg, attrs...)
	if h.cfg.Denied != nil {
		h.cfg.Denied(Denial{Time: h.cfg.Now(), Action: a.String(), Topic: topic, ThingID: id.subject.ID,
			ClientID: s.cl.ID, Remote: clientRemote(s.cl), Reason: d.Reason, Rule: rule})
	}
}

// OnPublished ends the journal entry of a QoS 1/2 message mochi has handed to its
// subscribers.
func (h *Hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if h.cfg.Journal == nil || pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		return
	}
	_ = h.cfg.Journal.Delete(journalKey(cl, pk))
}

// Journal is where accepted QoS 1/2 messages wait until they have reached their
// subscribers; a broker replays what is left in it when it starts.
type Journal interface {
	Put(key string, pk packets.Packet) error
	Delete(key string) error
}

// journalKey names a message by its publisher and packet id, which the publisher
// may not reuse before the message is acknowledged.
func journalKey(cl *mqtt.Client, pk packets.Packet) string {
	return cl.ID + "\x00" + strconv.Itoa(int(pk.PacketID))
}
