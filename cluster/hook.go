package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Hook is the mochi hook through which a node takes part in the cluster: it
// forwards every message the local server accepted (after the identity hook
// allowed it) to the other nodes, and hands the messages they forward to the local
// server as inline publishes, so that each delivery is judged by the receiving
// client's grants here. It answers the other nodes' takeover requests and hears
// the identity events.
type Hook struct {
	mqtt.HookBase

	e      *Engine
	srv    *mqtt.Server
	inline *mqtt.Client // publishes what other nodes forward; never forwarded again
	cfg    HookConfig
	seq    atomic.Uint64
	stats  Stats

	mu     sync.Mutex
	beat   chan struct{} // closed by Stop: the heartbeat ends
	subs   []*nats.Subscription
	cc     *consumer
	groups map[string]*group // shared subscription groups with members here, by $share/G/f
}

// HookConfig is what the node tells its cluster hook.
type HookConfig struct {
	// Yield answers another node that claims clientID for owner: refused when a
	// live connection of another owner holds it here; else this node lets go of it
	// (a live connection of the same owner is taken over, a stored session
	// discarded). Before a session of owner is discarded, Yield gives it to
	// handOver (when not nil), for the other node to resume. The identity hook
	// decides; nil refuses nothing and keeps nothing.
	Yield func(clientID, owner string, handOver func(*mqtt.Client)) (refused bool)
	// Event hears each identity event another node broadcast.
	Event func(Event)
	// Query answers another node's Gather; nil answers nothing.
	Query func(question []byte) []byte
}

// Stats counts what crossed the engine; read it with Snapshot.
type Stats struct {
	Out, In, Errors, Dropped atomic.Uint64
}

// NewHook makes the cluster hook for srv. Call Run once the hook is added and
// before the server accepts connections.
func NewHook(e *Engine, srv *mqtt.Server, cfg HookConfig) *Hook {
	return &Hook{e: e, srv: srv, cfg: cfg, inline: srv.NewClient(nil, "cluster", "imb-cluster", true)}
}

// ID names the hook in mochi's logs.
func (h *Hook) ID() string { return "imb-cluster" }

// Provides lists the events the hook needs; mochi asks per event and per message.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnPublished, mqtt.OnWillSent, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnSelectSubscribers,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// Stats is the hook's counters.
func (h *Hook) Stats() *Stats { return &h.stats }

// Run loads the cluster's retained messages into the local server and starts
// receiving what the other nodes forward.
func (h *Hook) Run(ctx context.Context) error {
	if err := h.loadRetained(ctx); err != nil {
		return err
	}
	nc := h.e.nc
	s0, err := nc.Subscribe(subjectQoS0, func(m *nats.Msg) { h.deliver(m.Data) })
	if err != nil {
		return fmt.Errorf("cluster: subscribe %s: %w", subjectQoS0, err)
	}
	_ = s0.SetPendingLimits(1<<20, 1<<30) // QoS 0 may be dropped, but not by a burst
	sT, err := nc.Subscribe("imb.node."+h.e.opts.NodeName+".takeover", h.onTakeover)
	if err != nil {
		return fmt.Errorf("cluster: subscribe takeover: %w", err)
	}
	// Another node's limit counter asks whether this node is there (limits.go).
	sP, err := nc.Subscribe("imb.node."+h.e.opts.NodeName+".ping", func(m *nats.Msg) { _ = m.Respond(nil) })
	if err != nil {
		return fmt.Errorf("cluster: subscribe ping: %w", err)
	}
	sQ, err := nc.Subscribe(subjectQuery, h.onQuery)
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	sE, err := nc.Subscribe(subjectEvents, h.onEvent)
	if err != nil {
		return fmt.Errorf("cluster: subscribe events: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := h.e.js.CreateOrUpdateConsumer(cctx, streamMsgs, jetstream.ConsumerConfig{
		Durable:       "node-" + h.e.opts.NodeName,
		FilterSubject: "imb.m1.*",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 4096,
	})
	if err != nil {
		return fmt.Errorf("cluster: consumer for node %s: %w", h.e.opts.NodeName, err)
	}
	own := h.e.subj
	cc, err := h.consume(cons, "node-"+h.e.opts.NodeName, 1024, func(m jetstream.Msg) {
		if m.Subject() != own {
			h.deliver(m.Data())
		}
		_ = m.Ack()
	})
	if err != nil {
		return fmt.Errorf("cluster: consume %s: %w", streamMsgs, err)
	}
	h.mu.Lock()
	h.subs = append(h.subs, s0, sT, sP, sQ, sE)
	h.cc = cc
	h.beat = make(chan struct{})
	go h.heartbeat(h.beat)
	h.mu.Unlock()
	return nil
}

// consumer keeps pulling from a durable consumer. nats.go's Consume reports
// what goes wrong (a pull nobody answered while JetStream elected a leader, missed
// heartbeats) and may stop pulling after it: a node whose consumer stopped would
// deliver nothing of the other nodes' messages while seeming well. So on any
// error the consume is started again, at most once a second; the durable
// consumer keeps its place, and what was delivered and not acknowledged comes
// again after AckWait.
type consumer struct {
	h       *Hook
	name    string
	cons    jetstream.Consumer
	handle  jetstream.MessageHandler
	max     int
	restart chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// consume starts pulling from cons; Stop ends it.
func (h *Hook) consume(cons jetstream.Consumer, name string, max int, handle jetstream.MessageHandler) (*consumer, error) {
	c := &consumer{h: h, name: name, cons: cons, handle: handle, max: max,
		restart: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	cc, err := c.start()
	if err != nil {
		return nil, err
	}
	go c.run(cc)
	return c, nil
}

func (c *consumer) start() (jetstream.ConsumeContext, error) {
	return c.cons.Consume(c.handle, jetstream.PullMaxMessages(c.max), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		c.h.stats.Errors.Add(1)
		c.h.e.log.Warn("cluster consumer", "consumer", c.name, "error", err)
		select {
		case c.restart <- struct{}{}:
		default:
		}
	}))
}

func (c *consumer) run(cc jetstream.ConsumeContext) {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			cc.Stop()
			return
		case <-c.restart:
		}
		// Errors come in bursts (a leader change): let the engine settle first.
		select {
		case <-c.stop:
			cc.Stop()
			return
		case <-time.After(time.Second):
		}
		cc.Stop()
		select {
		case <-c.restart:
		default:
		}
		for {
			next, err := c.start()
			if err == nil {
				cc = next
				break
			}
			c.h.e.log.Warn("cluster consumer restart", "consumer", c.name, "error", err)
			select {
			case <-c.stop:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// Stop ends the pulling.
func (c *consumer) Stop() {
	close(c.stop)
	<-c.done
}

// Stop ends the subscriptions; the engine itself is closed by its owner.
func (h *Hook) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		_ = s.Unsubscribe()
	}
	h.subs = nil
	if h.beat != nil {
		close(h.beat)
		h.beat = nil
	}
	if h.cc != nil {
		h.cc.Stop()
		h.cc = nil
	}
	h.stopGroups()
	return nil
}

// OnPublish stores a QoS 1 or 2 message in the cluster's stream before mochi
// acknowledges it (the identity hook, added first, has allowed it): once the
// publisher has its PUBACK or PUBREC, the message is in JetStream, and no node's
// failure loses it. A message the engine does not take is refused: MQTT 5 gets
// 0x80 with a reason string and resends at will; 3.1.1 has no refusal, so it
// gets no acknowledgement and resends it on its next connection. The publisher
// waits one JetStream round trip per message (its next message is read after).
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl == h.inline || pk.FixedHeader.Qos == 0 || pk.Ignore {
		return pk, nil
	}
	data, err := encode(pk, time.Now())
	if err == nil {
		err = h.store(pk, data)
	}
	if err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster forward", "topic", pk.TopicName, "qos", pk.FixedHeader.Qos, "error", err)
		if cl.Properties.ProtocolVersion < 5 {
			return pk, packets.ErrRejectPacket
		}
		return pk, packets.Code{Code: packets.ErrUnspecifiedError.Code, Reason: "cluster engine unavailable: not stored, publish again"}
	}
	return pk, nil
}

// OnPublished forwards a QoS 0 message the local server has just handed to its
// own subscribers (QoS 1 and 2 went in OnPublish). What came from another node is
// not forwarded again.
func (h *Hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl == h.inline || pk.FixedHeader.Qos > 0 {
		return
	}
	h.forward(pk)
}

// OnWillSent forwards a will mochi published for a client of this node.
func (h *Hook) OnWillSent(_ *mqtt.Client, pk packets.Packet) {
	if pk.TopicName == "" {
		return // neutralised by the identity hook: never published
	}
	h.forward(pk)
}

func (h *Hook) forward(pk packets.Packet) {
	data, err := encode(pk, time.Now())
	if err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster forward", "topic", pk.TopicName, "error", err)
		return
	}
	if pk.FixedHeader.Qos == 0 {
		if pk.FixedHeader.Retain {
			h.storeRetained(pk.TopicName, data)
		}
		h.stats.Out.Add(1)
		if err := h.e.nc.Publish(subjectQoS0, data); err != nil {
			h.stats.Errors.Add(1)
		}
		return
	}
	// A will of QoS 1 or 2: mochi publishes it with nobody waiting for an
	// acknowledgement, so it is stored the same way as a publish, in the
	// background.
	go func() {
		if err := h.store(pk, data); err != nil {
			h.stats.Errors.Add(1)
			h.e.log.Warn("cluster forward", "topic", pk.TopicName, "qos", pk.FixedHeader.Qos, "error", err)
		}
	}()
}

// store puts a QoS 1 or 2 message into IMB_MSGS (and a retained one into
// IMB_RETAINED) and waits for JetStream's acknowledgement. The message id lets
// JetStream drop a second copy of a retried store.
func (h *Hook) store(pk packets.Packet, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.e.opts.RequestTimeout)
	defer cancel()
	if pk.FixedHeader.Retain {
		// Stored before the acknowledgement as the message is: a node that joins
		// after the PUBACK finds it.
		if _, err := h.e.js.Publish(ctx, retainedSubject(pk.TopicName), data); err != nil {
			return fmt.Errorf("retained store: %w", err)
		}
	}
	id := h.e.opts.NodeName + "-" + strconv.FormatUint(h.seq.Add(1), 36)
	if _, err := h.e.js.PublishMsg(ctx, &nats.Msg{Subject: h.e.subj, Data: data}, jetstream.WithMsgID(id)); err != nil {
		return err
	}
	h.stats.Out.Add(1)
	return nil
}

// deliver hands a forwarded message to the local server.
func (h *Hook) deliver(data []byte) {
	pk, err := decode(data)
	if err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster deliver", "error", err)
		return
	}
	h.stats.In.Add(1)
	if err := h.srv.InjectPacket(h.inline, pk); err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster deliver", "topic", pk.TopicName, "error", err)
	}
}

// retainedSubject names a topic's retained message in IMB_RETAINED. Topics hold
// characters NATS subjects do not, so the subject is the topic's hash.
func retainedSubject(topic string) string { return hashedName("imb.r.", topic, 16) }

// hashedName names s where NATS allows fewer characters than s holds (a subject
// token, a consumer, queue or key name): prefix and the hex of the first n bytes
// of s's SHA-256.
func hashedName(prefix, s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return prefix + hex.EncodeToString(sum[:n])
}

func (h *Hook) storeRetained(topic string, data []byte) {
	if _, err := h.e.js.PublishAsync(retainedSubject(topic), data); err != nil {
		h.stats.Errors.Add(1)
		h.e.log.Warn("cluster retained store", "topic", topic, "error", err)
	}
}

// loadRetained reads the last retained message of every topic into the local
// server's retained store, without delivering them to anyone.
func (h *Hook) loadRetained(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cons, err := h.e.js.OrderedConsumer(cctx, streamRetained, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"imb.r.*"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return fmt.Errorf("cluster: read retained messages: %w", err)
	}
	info, err := cons.Info(cctx)
	if err != nil {
		return fmt.Errorf("cluster: read retained messages: %w", err)
	}
	pending := info.NumPending
	n := 0
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 1024)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("cluster: read retained messages: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, _ := m.Metadata()
			if pk, err := decode(m.Data()); err == nil {
				h.srv.Topics.RetainMessage(pk)
				n++
			}
			if md != nil {
				pending = md.NumPending
			} else {
				pending--
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("cluster: read retained messages: %w", err)
		}
		if got == 0 {
			break
		}
	}
	h.e.log.Info("cluster retained messages loaded", slog.Int("messages", n))
	return nil
}
