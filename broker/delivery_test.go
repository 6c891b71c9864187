package broker

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"imb/internal/issuer"
	"imb/internal/mqtttest"
)

// The tests below run a real fast publisher against a deliberately slow real
// subscriber, both raw MQTT 5 connections on loopback, and judge what the
// subscriber got against what the publisher was told with PUBACK 0x00.

const deliveryTopic = "things/t1/telemetry/x"

// deliveryBroker starts a broker on which the thing t1 may use any client id of
// the form t1:…, so that one identity can both publish and subscribe.
func deliveryBroker(t *testing.T, mod func(*Config)) (*Broker, string) {
	t.Helper()
	b, iss := startBroker(t, func(c *Config) {
		c.ClientIDBinding = []string{"{sub}:*"}
		if mod != nil {
			mod(c)
		}
	})
	return b, iss.Mint(issuer.Claims{"sub": "t1", "scope": []string{"publish"}}, time.Hour)
}

// slowSubscriber is a subscriber that reads as slowly as it is told to.
type slowSubscriber struct {
	r    *mqtttest.Raw
	mu   sync.Mutex
	got  map[string]bool // distinct payloads received
	dups int
	done chan struct{}
}

// subscribe connects clientID with receiveMaximum (0: not sent), subscribes to the
// delivery topic at QoS 1 and starts reading once hold is closed: it acknowledges
// every message and sleeps pause after every `every` of them.
func subscribe(t *testing.T, addr, token string, receiveMaximum uint16, hold <-chan struct{}, every int, pause time.Duration) *slowSubscriber {
	t.Helper()
	r := mqtttest.Dial(t, addr)
	cp := mqtttest.ConnectPacket("t1:sub", token)
	cp.Properties.ReceiveMaximum = receiveMaximum
	if err := r.Send(cp); err != nil {
		t.Fatal(err)
	}
	if ack, ok := r.Read(10 * time.Second); !ok || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("subscriber connect: %+v", ack)
	}
	if err := r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: deliveryTopic, Qos: 1}}}); err != nil {
		t.Fatal(err)
	}
	if ack, ok := r.Read(10 * time.Second); !ok || ack.FixedHeader.Type != packets.Suback || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 1 {
		t.Fatalf("suback: %+v", ack)
	}
	s := &slowSubscriber{r: r, got: map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if hold != nil {
			<-hold
		}
		for n := 1; ; n++ {
			pk, ok := r.Read(5 * time.Second)
			if !ok {
				return // nothing more within 5 s (or the connection ended)
			}
			if pk.FixedHeader.Type != packets.Publish {
				continue
			}
			s.mu.Lock()
			if s.got[string(pk.Payload)] {
				s.dups++
			}
			s.got[string(pk.Payload)] = true
			s.mu.Unlock()
			if pk.FixedHeader.Qos > 0 {
				ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
				if err := r.Send(ack); err != nil {
					return
				}
			}
			if every > 0 && n%every == 0 {
				time.Sleep(pause)
			}
		}
	}()
	return s
}

// distinct is the number of distinct messages received so far.
func (s *slowSubscriber) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// publish sends n QoS 1 messages (payloads "0" … "n-1") as fast as a window of 256
// unacknowledged publishes allows, and returns how many were acknowledged 0x00.
func publish(t *testing.T, addr, token string, n int) int {
	t.Helper()
	r := mqtttest.Connect(t, addr, "t1:pub", token)
	window := make(chan struct{}, 256)
	acked := make(chan int)
	go func() {
		ok := 0
		for ok < n {
			pk, alive := r.Read(30 * time.Second)
			if !alive {
				break
			}
			if pk.FixedHeader.Type == packets.Puback {
				if pk.ReasonCode == 0 {
					ok++
				}
				<-window
			}
		}
		acked <- ok
	}()
	for i := 0; i < n; i++ {
		window <- struct{}{}
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: uint16(i%60000 + 1),
			TopicName: deliveryTopic, Payload: []byte(strconv.Itoa(i))}
		if err := r.Send(pk); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	return <-acked
}

// waitDistinct waits until s has want distinct messages or nothing arrives for a
// while, and returns how many it has.
func waitDistinct(s *slowSubscriber, want int, within time.Duration) int {
	deadline := time.After(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if s.distinct() >= want {
				return s.distinct()
			}
		case <-s.done:
			return s.distinct()
		case <-deadline:
			return s.distinct()
		}
	}
}

// dropped sums imb_deliveries_dropped_total over its reasons; -1 if it is not
// registered.
func dropped(t *testing.T, b *Broker) float64 {
	t.Helper()
	mfs, err := b.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "imb_deliveries_dropped_total" {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return -1
}

// TestSlowSubscriberLosesNothing: with the default settings every message the
// publisher had acknowledged reaches a subscriber that reads slower than the
// publisher publishes; the publisher is slowed instead.
func TestSlowSubscriberLosesNothing(t *testing.T) {
	tests := []struct {
		name           string
		n              int
		receiveMaximum uint16 // the subscriber's, 0: not sent (65,535)
		every          int
		pause          time.Duration
	}{
		// the subscriber's queue and in-flight store fill: mochi dropped with
		// "client store quota reached"
		{name: "slow reader", n: 20000, every: 50, pause: time.Millisecond},
		// the subscriber takes 8 at a time: mochi sent each queued message once
		// without keeping it, lost its quota and stalled the subscriber
		{name: "receive maximum 8", n: 1000, receiveMaximum: 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, token := deliveryBroker(t, nil)
			sub := subscribe(t, b.Addr("tcp"), token, tc.receiveMaximum, nil, tc.every, tc.pause)
			acked := publish(t, b.Addr("tcp"), token, tc.n)
			if acked != tc.n {
				t.Fatalf("publisher: %d of %d publishes acknowledged 0x00", acked, tc.n)
			}
			if got := waitDistinct(sub, tc.n, 60*time.Second); got != tc.n {
				t.Errorf("subscriber received %d distinct of %d acknowledged messages", got, tc.n)
			}
			if d := dropped(t, b); d != 0 {
				t.Errorf("imb_deliveries_dropped_total = %v, want 0", d)
			}
		})
	}
}

// TestDeliveryOverflowIsCounted: a subscriber that stops reading, with small
// bounds and a short delivery wait. The publisher is held for the wait, then what
// does not fit is dropped, counted by reason and logged; every other message
// arrives once the subscriber reads again, so delivered + dropped = sent.
func TestDeliveryOverflowIsCounted(t *testing.T) {
	tests := []struct {
		name          string
		maxInflight   uint16
		writesPending int32
		n             int
		reason        string
	}{
		// 64 unacknowledged messages fill the in-flight store long before the
		// socket's buffers fill
		{name: "in-flight store full", maxInflight: 64, writesPending: 16, n: 2000, reason: "inflight_full"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			b, token := deliveryBroker(t, func(c *Config) {
				c.MaxInflight = tc.maxInflight
				c.WritesPending = tc.writesPending
				c.DeliveryWait = 200 * time.Millisecond
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			hold := make(chan struct{})
			sub := subscribe(t, b.Addr("tcp"), token, 0, hold, 0, 0)
			start := time.Now()
			if acked := publish(t, b.Addr("tcp"), token, tc.n); acked != tc.n {
				t.Fatalf("publisher: %d of %d publishes acknowledged 0x00", acked, tc.n)
			}
			if took := time.Since(start); took < 200*time.Millisecond {
				t.Errorf("publisher took %v: it was not held for the delivery wait", took)
			}
			close(hold)
			<-sub.done // it reads until nothing more comes for 5 s
			// read after the last delivery: PUBACK goes to the publisher before it
			d := dropped(t, b)
			if d <= 0 {
				t.Fatalf("imb_deliveries_dropped_total = %v, want drops counted", d)
			}
			if got := sub.distinct(); got+int(d) != tc.n {
				t.Errorf("delivered %d + dropped %v != %d sent", got, d, tc.n)
			}
			if !strings.Contains(logs.String(), "delivery dropped") || !strings.Contains(logs.String(), "reason="+tc.reason) {
				t.Errorf("no drop logged with reason %s:\n%.2000s", tc.reason, logs.String())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
