package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Shared subscriptions, one group cluster-wide. A `$share/G/f` group has members
// on any number of nodes; each message matching f goes to exactly one of them.
// mochi alone would pick one member per node, since every node receives every
// message. So a node serves none of its groups from its own deliveries
// (OnSelectSubscribers takes the groups out) and each group gets the messages
// through the engine, where NATS picks one node per message:
//   - QoS 1 and 2: a durable JetStream consumer per group on IMB_MSGS, pulled by
//     every node with members. A message is acknowledged once a member here has it;
//     a node whose members left gives it back (Nak) for another node to take.
//   - QoS 0: a NATS queue subscription per group on imb.m0, on the engine's second
//     connection (which, unlike the first, hears the node's own messages).
// The node NATS chose injects the message marked with the group, and
// OnSelectSubscribers hands it to one local member of that group alone.

// groupKey names a group in NATS: a consumer name and a queue name may not hold
// the characters a filter does.
func groupKey(filter string) string {
	return hashedName("share-", filter, 12)
}

// isShared reports whether filter is a shared subscription ($share/G/f; mochi
// takes the prefix in any case).
func isShared(filter string) bool {
	return len(filter) > len(mqtt.SharePrefix) && strings.EqualFold(filter[:len(mqtt.SharePrefix)], mqtt.SharePrefix) &&
		filter[len(mqtt.SharePrefix)] == '/'
}

// groupTopicFilter is the topic filter of $share/G/f: f.
func groupTopicFilter(filter string) string {
	rest := filter[len(mqtt.SharePrefix)+1:]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[i+1:]
	}
	return ""
}

// group is one shared subscription group this node has members of.
type group struct {
	filter string // $share/G/f as the members subscribed
	key    string
	qsub   *nats.Subscription
	cc     *consumer
}

// groupIdleAfter is how long a group's consumer outlives the last node that
// pulled from it: messages for a group whose members are all away wait that long.
const groupIdleAfter = time.Hour

// OnSubscribed joins the cluster-wide groups a local client subscribed to.
func (h *Hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl == h.inline {
		return
	}
	h.describe(cl, true)
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 && isShared(f.Filter) {
			if err := h.joinGroup(f.Filter); err != nil {
				h.stats.Errors.Add(1)
				h.e.log.Warn("cluster shared subscription", "filter", f.Filter, "error", err)
			}
		}
	}
}

// OnUnsubscribed leaves the groups whose last local member this was.
func (h *Hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl == h.inline {
		return
	}
	h.describe(cl, true)
	for _, f := range pk.Filters {
		if !isShared(f.Filter) {
			continue
		}
		h.mu.Lock()
		g := h.groups[f.Filter]
		h.mu.Unlock()
		if g != nil {
			h.leaveGroupIfEmpty(g)
		}
	}
}

// joinGroup starts receiving a group's messages, once per node.
func (h *Hook) joinGroup(filter string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.groups == nil {
		h.groups = map[string]*group{}
	}
	if _, ok := h.groups[filter]; ok {
		return nil
	}
	g := &group{filter: filter, key: groupKey(filter)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := h.e.js.CreateOrUpdateConsumer(ctx, streamMsgs, jetstream.ConsumerConfig{
		Durable:           g.key,
		Description:       filter,
		FilterSubject:     "imb.m1.*",
		AckPolicy:         jetstream.AckExplicitPolicy,
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckWait:           30 * time.Second,
		MaxAckPending:     4096,
		InactiveThreshold: groupIdleAfter,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", g.key, err)
	}
	if g.cc, err = h.consume(cons, g.key, 256, func(m jetstream.Msg) {
		switch h.deliverToGroup(g, m.Data()) {
		case groupDelivered, groupNotMatching:
			_ = m.Ack()
		case groupNoMember:
			_ = m.NakWithDelay(100 * time.Millisecond)
			h.leaveGroupIfEmpty(g)
		}
	}); err != nil {
		return fmt.Errorf("consume %s: %w", g.key, err)
	}
	if g.qsub, err = h.e.ncGroups.QueueSubscribe(subjectQoS0, g.key, func(m *nats.Msg) {
		if h.deliverToGroup(g, m.Data) == groupNoMember {
			h.leaveGroupIfEmpty(g)
		}
	}); err != nil {
		g.cc.Stop()
		return fmt.Errorf("queue subscribe %s: %w", g.key, err)
	}
	_ = g.qsub.SetPendingLimits(1<<20, 1<<30)
	// The queue subscription is in place once the server has it: a QoS 0 message
	// published right after the SUBACK finds this node among the group's members.
	_ = h.e.ncGroups.FlushTimeout(2 * time.Second)
	h.groups[filter] = g
	return nil
}

// leaveGroupIfEmpty stops receiving a group's messages once no local client is a
// member any more (unsubscribed, or its session ended).
func (h *Hook) leaveGroupIfEmpty(g *group) {
	if h.localMembers(g.filter) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.groups[g.filter] != g {
		return
	}
	delete(h.groups, g.filter)
	// Off the delivery goroutine: stopping a consume waits for its callbacks.
	go func() {
		_ = g.qsub.Unsubscribe()
		g.cc.Stop()
	}()
}

// localMembers reports whether any local client still subscribes to filter.
func (h *Hook) localMembers(filter string) bool {
	for _, subs := range h.srv.Topics.Subscribers(groupProbeTopic(filter)).Shared {
		for _, sub := range subs {
			if sub.Filter == filter {
				return true
			}
		}
	}
	return false
}

// groupProbeTopic is a topic that f of $share/G/f matches, to find the group's
// members in mochi's index by topic.
func groupProbeTopic(filter string) string {
	levels := strings.Split(groupTopicFilter(filter), "/")
	for i, l := range levels {
		switch l {
		case "+":
			levels[i] = "x"
		case "#":
			levels = levels[:i]
			if i == 0 {
				return "x"
			}
			return strings.Join(levels, "/")
		}
	}
	return strings.Join(levels, "/")
}

// groupOutcome is what a node did with a group's message.
type groupOutcome int

const (
	groupDelivered   groupOutcome = iota
	groupNotMatching              // the message's topic is not the group's
	groupNoMember                 // no member here any more: another node's turn
	groupUndecodable
)

// deliverToGroup hands a message of the group to one of its members here.
func (h *Hook) deliverToGroup(g *group, data []byte) groupOutcome {
	pk, err := decode(data)
	if err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster deliver", "error", err)
		return groupUndecodable
	}
	if _, ok := auth.MatchTopic(groupTopicFilter(g.filter), pk.TopicName); !ok {
		return groupNotMatching
	}
	if len(h.srv.Topics.Subscribers(pk.TopicName).Shared[g.filter]) == 0 {
		return groupNoMember
	}
	pk.FixedHeader.Retain = false // a group member gets the message, not the topic's retained copy
	pk.Filters = packets.Subscriptions{{Filter: g.filter}}
	h.stats.In.Add(1)
	if err := h.srv.InjectPacket(h.inline, pk); err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster deliver", "topic", pk.TopicName, "error", err)
	}
	return groupDelivered
}

// OnSelectSubscribers keeps the groups out of every local delivery, except a
// message the engine gave this node for one group: that goes to one member of
// that group and to nobody else.
func (h *Hook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if pk.Origin == h.inline.ID && len(pk.Filters) == 1 && isShared(pk.Filters[0].Filter) {
		f := pk.Filters[0].Filter
		members := subs.Shared[f]
		subs.Shared = map[string]map[string]packets.Subscription{f: members}
		subs.Subscriptions = map[string]packets.Subscription{}
		subs.InlineSubscriptions = nil
		return subs
	}
	subs.Shared = nil
	return subs
}

// stopGroups ends every group's consumer and queue subscription.
func (h *Hook) stopGroups() {
	for _, g := range h.groups {
		_ = g.qsub.Unsubscribe()
		g.cc.Stop()
	}
	h.groups = nil
}
