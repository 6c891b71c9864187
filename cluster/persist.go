package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
)

// A persistent session outlives its node. The node that keeps a session hands
// it over when the thing resumes elsewhere (handover.go); when that node is
// dead, or came back without it, nobody can. So each persistent session is also
// described in bucket imb_persisted (owner, subscriptions, and since when it
// has been offline), and every node writes a heartbeat there. A node that claims
// a session whose holder cannot hand it over rebuilds it from that description,
// and fills its queue from stream IMB_MSGS, where every QoS 1 and 2 message of
// the cluster is stored before its publisher's acknowledgement: every message
// matching the session's subscriptions since the session went offline (or, if
// its node died while the thing was connected, since that node's last
// heartbeat), less a margin, is queued. A message the thing had already received
// within the margin comes again, as QoS 1 allows: a duplicate, never a loss.
//
// This replaces what NATS's own MQTT layer does (server/README-MQTT.md): a
// JetStream consumer per session and subscription, which replicated costs a raft
// group each and stops scaling long before a fleet does. Here the cost per
// persistent session is one small key, written when it connects, subscribes and
// leaves; the stream is read only when a node is lost.

// persisted is a persistent session as bucket imb_persisted keeps it.
type persisted struct {
	Owner         string                 `json:"owner"`
	Node          string                 `json:"node"`
	Protocol      byte                   `json:"protocol"`
	SessionExpiry uint32                 `json:"session_expiry,omitempty"`
	Subscriptions []packets.Subscription `json:"subscriptions,omitempty"`
	Live          bool                   `json:"live"`
	Since         time.Time              `json:"since"` // Live: when it connected; else when it left
}

const (
	bucketPersisted = "imb_persisted"
	// heartbeatEvery is how often a node says in imb_persisted that it is alive:
	// the point from which a session live on a node that died is replayed.
	heartbeatEvery = 2 * time.Second
	// replayMargin is how far before that point the replay starts: messages
	// stored then may not yet have reached the thing when its node died.
	replayMargin = 2 * time.Second
	// maxRecovered bounds the messages one recovered session queues.
	maxRecovered = 10000
	// recoverTimeout bounds reading the stream for one session.
	recoverTimeout = 10 * time.Second
)

// afterLastRead, when set (by tests), runs in a replay once the stream's last
// message has been read: what is published then must reach the session live.
var afterLastRead atomic.Pointer[func(clientID string)]

func heartbeatKey(node string) string { return "node." + node }

// isPersistent is the identity hook's rule: a session that outlives its
// connection.
func isPersistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// describe writes cl's session to imb_persisted.
func (h *Hook) describe(cl *mqtt.Client, live bool) {
	if h.e.persisted == nil || cl == h.inline || !isPersistent(cl) {
		return
	}
	p := persisted{
		Owner: string(cl.Properties.Username), Node: h.e.opts.NodeName, Protocol: cl.Properties.ProtocolVersion,
		SessionExpiry: cl.Properties.Props.SessionExpiryInterval, Live: live, Since: time.Now(),
	}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		p.Subscriptions = append(p.Subscriptions, sub)
	}
	val, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.Background(), h.e.opts.RequestTimeout)
	defer cancel()
	if _, err := h.e.persisted.Put(ctx, sessionKey(cl.ID), val); err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster: describe persistent session", "client_id", cl.ID, "error", err)
	}
}

// forget removes what imb_persisted says of clientID's session.
func (h *Hook) forget(clientID string) {
	if h.e.persisted == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.e.opts.RequestTimeout)
	defer cancel()
	if err := h.e.persisted.Delete(ctx, sessionKey(clientID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		h.e.log.Debug("cluster: forget persistent session", "client_id", clientID, "error", err)
	}
}

// OnSessionEstablished describes a persistent session that has just connected
// here (new, resumed, or adopted from another node).
func (h *Hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { h.describe(cl, true) }

// OnDisconnect describes a persistent session left offline here, and forgets one
// that ends with its connection.
func (h *Hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl == h.inline || !isPersistent(cl) {
		return
	}
	if expire {
		h.forget(cl.ID)
		return
	}
	h.describe(cl, false)
}

// OnClientExpired forgets a session whose expiry has passed.
func (h *Hook) OnClientExpired(cl *mqtt.Client) { h.forget(cl.ID) }

// heartbeat tells the cluster every heartbeatEvery that this node is alive,
// until stop is closed.
func (h *Hook) heartbeat(stop <-chan struct{}) {
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), h.e.opts.RequestTimeout)
		now, _ := time.Now().MarshalText()
		_, _ = h.e.persisted.Put(ctx, heartbeatKey(h.e.opts.NodeName), now)
		cancel()
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// recoverSession rebuilds clientID's session for owner from imb_persisted and
// IMB_MSGS, when the node that held it cannot hand it over. Without a
// description there is nothing to rebuild (and one of another owner is
// forgotten: a session is never inherited).
//
// The session is put into the local server with its subscriptions before the
// stream is read: from then on what is published reaches it live, and the
// replay covers what came before, up to the stream's last message (a message
// in both comes twice, as QoS 1 allows; none falls between them however long
// the read takes). An error: the stream could not be read now (JetStream
// electing a leader after a node's loss); the claim fails, the client is
// refused with 0x88 and tries again, and both the description and the session
// that gathers live messages stay, so nothing queued for it is lost.
func (h *Hook) recoverSession(ctx context.Context, clientID, owner string) error {
	if h.e.persisted == nil {
		return nil
	}
	entry, err := h.e.persisted.Get(ctx, sessionKey(clientID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: recover session %q: %w", clientID, err)
	}
	var p persisted
	if err := json.Unmarshal(entry.Value(), &p); err != nil || p.Owner != owner {
		h.forget(clientID)
		return nil
	}
	since := p.Since
	if p.Live {
		// Its node died with the thing connected: what reached it is unknown
		// after that node's last heartbeat (without one, after it connected).
		if hb, err := h.e.persisted.Get(ctx, heartbeatKey(p.Node)); err == nil {
			var t time.Time
			if t.UnmarshalText(hb.Value()) == nil && t.After(since) {
				since = t
			}
		}
	}
	since = since.Add(-replayMargin)
	cl := h.adoptSession(clientID, owner, &handedSession{Protocol: p.Protocol, SessionExpiry: p.SessionExpiry, Subscriptions: p.Subscriptions})
	queued, dropped, err := h.replay(ctx, cl, p.Subscriptions, since)
	if err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster: session not recovered yet: its messages could not be read", "client_id", clientID,
			"lost_node", p.Node, "since", since, "queued", queued, "error", err)
		return fmt.Errorf("cluster: recover session %q: %w", clientID, err)
	}
	h.e.log.Info("session recovered from the cluster", "client_id", clientID, "lost_node", p.Node,
		"subscriptions", len(p.Subscriptions), "queued", queued, "dropped", dropped, "since", since)
	return nil
}

// replay reads IMB_MSGS from since up to its last message now, and queues for
// the offline session cl, under packet ids of its own, every QoS 1 and 2
// message that one of subs (shared subscriptions aside: their groups keep their
// own) delivers at QoS > 0. It reports how many it queued, and how many it left
// out beyond maxRecovered.
func (h *Hook) replay(ctx context.Context, cl *mqtt.Client, subs []packets.Subscription, since time.Time) (queued, dropped int, err error) {
	clientID := cl.ID
	idx := mqtt.NewTopicsIndex()
	n := 0
	for _, s := range subs {
		if !isShared(s.Filter) && s.Qos > 0 {
			idx.Subscribe(clientID, s)
			n++
		}
	}
	if n == 0 {
		return 0, 0, nil
	}
	// The claim's own deadline is for a round trip, not for reading a stream.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoverTimeout)
	defer cancel()
	stream, err := h.e.js.Stream(ctx, streamMsgs)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", streamMsgs, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", streamMsgs, err)
	}
	last := info.State.LastSeq
	if f := afterLastRead.Load(); f != nil {
		(*f)(clientID)
	}
	if last == 0 || info.State.LastTime.Before(since) {
		return 0, 0, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &since,
	})
	if err != nil {
		return 0, 0, fmt.Errorf("replay consumer: %w", err)
	}
	now := time.Now()
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return queued, dropped, fmt.Errorf("replay: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > last {
				return queued, dropped, nil
			}
			pk, err := decode(m.Data())
			if err == nil {
				sub, ok := idx.Subscribers(pk.TopicName).Subscriptions[clientID]
				if ok && (pk.Properties.MessageExpiryInterval == 0 ||
					md.Timestamp.Add(time.Duration(pk.Properties.MessageExpiryInterval)*time.Second).After(now)) {
					if queued >= maxRecovered {
						dropped++
					} else if h.queue(cl, pk, sub.Qos, md.Timestamp, now) {
						queued++
					} else {
						dropped++
					}
				}
			}
			if md.Sequence.Stream >= last {
				return queued, dropped, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return queued, dropped, fmt.Errorf("replay: %w", err)
		}
		if got == 0 && ctx.Err() != nil {
			return queued, dropped, fmt.Errorf("replay: stopped before message %d: %w", last, ctx.Err())
		}
	}
}

// queue puts pk, stored in the stream at stored, into the offline session cl's
// inflight store as mochi would have queued it: at most at the subscription's
// QoS, not retained, with what is left of its expiry, under a packet id cl does
// not use. False: cl has no packet id left.
func (h *Hook) queue(cl *mqtt.Client, pk packets.Packet, qos byte, stored, now time.Time) bool {
	id, err := cl.NextPacketID()
	if err != nil {
		return false
	}
	pk.PacketID = uint16(id)
	pk.FixedHeader.Qos = min(pk.FixedHeader.Qos, qos)
	pk.FixedHeader.Retain = false
	pk.Created = now.Unix()
	if e := pk.Properties.MessageExpiryInterval; e > 0 {
		left := max(int64(e)-int64(now.Sub(stored)/time.Second), 1)
		pk.Properties.MessageExpiryInterval = uint32(left)
		pk.Expiry = now.Unix() + left
	}
	cl.State.Inflight.Set(pk)
	return true
}
