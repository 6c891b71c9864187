// Package asthing acts as a thing (or a cloud application) over an MQTT 5 connection made with
// its own access token as the password. The doors that speak other protocols (the CoAP gateway,
// the HTTP door) use it so that the broker's own validation, identity binding, grants and limits
// decide every request they relay, in one place, and its MQTT 5 reason codes come back to them.
package asthing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/hooks"
)

// Dial opens a connection to the broker: TCP for the gateway, an in-process pipe for the HTTP door.
type Dial func(ctx context.Context) (net.Conn, error)

// Reason codes a door needs to tell apart (MQTT 5 §2.4).
const (
	CodeServerUnavailable byte = 0x88 // the broker cannot serve: also used when it cannot be reached
	CodeNormal            byte = 0x00
)

// Step names where a request to the broker ended.
type Step string

// Steps of Publish and Subscribe, in order.
const (
	StepDial      Step = "dial"
	StepConnect   Step = "connect"
	StepPublish   Step = "publish"
	StepSubscribe Step = "subscribe"
	StepDelivery  Step = "delivery" // a live subscription ended
)

// Outcome is how one request to the broker ended: the broker's MQTT 5 reason code and reason
// string, or Err when no answer came (unreachable, timed out, connection lost).
type Outcome struct {
	Step   Step
	Code   byte
	Reason string
	Err    error
}

// Failed reports whether the request did not succeed.
func (o Outcome) Failed() bool { return o.Err != nil || o.Code >= 0x80 }

// String is the outcome for an error message: "connect: reason 0x86 bad token".
func (o Outcome) String() string {
	if o.Err != nil {
		return fmt.Sprintf("broker: %s: %v", o.Step, o.Err)
	}
	s := fmt.Sprintf("%s: reason 0x%02x", o.Step, o.Code)
	if o.Reason != "" {
		s += " " + o.Reason
	}
	return s
}

// TimedOut reports whether the request ran out of time waiting for the broker.
func (o Outcome) TimedOut() bool { return errors.Is(o.Err, context.DeadlineExceeded) }

// keepAlive is the keep-alive of the relayed connections, in seconds.
const keepAlive = 30

// connect dials and sends CONNECT with an empty client id (the broker assigns one) and token as
// MQTT 5 Authentication Data under the identity hook's method, which the broker reads whatever its
// token_field says.
//
// receiveMax is the client's Receive Maximum: the QoS 1 messages the broker may have in flight to
// it. It also sizes paho's queue of incoming messages, which without it is 65,535 entries (512 KiB
// allocated per connection, most of the cost of one relayed publish).
func connect(ctx context.Context, dial Dial, token string, receiveMax uint16, cfg paho.ClientConfig) (*paho.Client, net.Conn, Outcome) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, nil, Outcome{Step: StepDial, Code: CodeServerUnavailable, Err: err}
	}
	conn = &packetConn{Conn: conn}
	cfg.Conn = conn
	cfg.AuthHandler = oneShot{}
	c := paho.NewClient(cfg)
	ack, err := c.Connect(ctx, &paho.Connect{KeepAlive: keepAlive, CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: hooks.AuthMethod, AuthData: []byte(token), ReceiveMaximum: &receiveMax,
			RequestProblemInfo: true}}) // the broker's reason strings, for the caller
	if ack != nil && ack.ReasonCode >= 0x80 {
		_ = conn.Close()
		o := Outcome{Step: StepConnect, Code: ack.ReasonCode}
		if ack.Properties != nil {
			o.Reason = ack.Properties.ReasonString
		}
		return nil, nil, o
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, Outcome{Step: StepConnect, Code: CodeServerUnavailable, Err: err}
	}
	return c, conn, Outcome{Step: StepConnect}
}

// packetConn makes paho write each packet whole. paho writes a packet as several buffers
// (net.Buffers), one Write each unless the connection is a sync.Locker; on TCP the kernel's writev
// keeps them together, but on an in-process net.Pipe two goroutines' packets (a PUBLISH and a
// PINGREQ or DISCONNECT) would interleave and the broker would read a malformed packet.
type packetConn struct {
	net.Conn
	sync.Mutex
}

// oneShot is the client side of the hook's authentication method: the token goes in CONNECT and
// the broker answers with CONNACK, never with an AUTH challenge.
type oneShot struct{}

func (oneShot) Authenticate(*paho.Auth) *paho.Auth {
	return &paho.Auth{ReasonCode: 0x00, Properties: &paho.AuthProperties{AuthMethod: hooks.AuthMethod}}
}
func (oneShot) Authenticated() {}

// Publish connects with token, publishes m and disconnects. At QoS 0 the broker answers nothing,
// so success means only that the message was handed over (a denied QoS 0 publish is dropped).
func Publish(ctx context.Context, dial Dial, token string, m *paho.Publish) Outcome {
	c, conn, o := connect(ctx, dial, token, 1, paho.ClientConfig{}) // a publisher receives nothing
	if o.Failed() {
		return o
	}
	defer func() { _ = conn.Close() }()
	resp, err := c.Publish(ctx, m)
	if resp != nil && resp.ReasonCode >= 0x80 {
		o := Outcome{Step: StepPublish, Code: resp.ReasonCode}
		if resp.Properties != nil {
			o.Reason = resp.Properties.ReasonString
		}
		disconnect(c, conn)
		return o
	}
	if err != nil {
		return Outcome{Step: StepPublish, Code: CodeServerUnavailable, Err: err}
	}
	// DISCONNECT 0x00 after the PUBACK (or after a QoS 0 PUBLISH, which the broker reads
	// first): the message is the broker's before the connection ends.
	disconnect(c, conn)
	return Outcome{Step: StepPublish, Code: respCode(resp)}
}

// disconnectWait bounds the DISCONNECT write: an in-process pipe blocks a write until the broker
// reads, and a broker that stopped reading must not hold the door.
const disconnectWait = time.Second

// disconnect sends DISCONNECT 0x00 and closes the connection.
func disconnect(c *paho.Client, conn net.Conn) {
	_ = conn.SetWriteDeadline(time.Now().Add(disconnectWait))
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: CodeNormal})
	_ = conn.Close()
}

func respCode(r *paho.PublishResponse) byte {
	if r == nil {
		return 0
	}
	return r.ReasonCode
}

// Subscription is a live MQTT subscription made with a thing's token. Messages delivers what the
// broker sends (each has passed its receive check); it is closed when the subscription ends, and
// End then says why.
type Subscription struct {
	// Messages are the delivered messages, in order.
	Messages <-chan *paho.Publish

	msgs     chan *paho.Publish
	stopping chan struct{}
	mu       sync.RWMutex // senders hold it for reading; closing msgs takes it for writing
	closed   bool
	once     sync.Once
	end      Outcome

	connMu sync.Mutex // guards client and conn, set after CONNACK while callbacks may run
	client *paho.Client
	conn   net.Conn
}

// subscriptionWindow is how many delivered messages wait for a slow reader, and the Receive
// Maximum of a subscription: beyond it the broker holds further QoS 1 messages for this reader.
const subscriptionWindow = 16

// Subscribe connects with token and subscribes to filter at QoS 1. A failed Outcome means there is
// no subscription. The subscription lives until the broker ends it (token expiry, revocation,
// takeover, shutdown), the connection fails, or Close; ctx bounds the setup only.
func Subscribe(ctx context.Context, dial Dial, token, filter string) (*Subscription, Outcome) {
	s := &Subscription{msgs: make(chan *paho.Publish, subscriptionWindow), stopping: make(chan struct{})}
	s.Messages = s.msgs
	cfg := paho.ClientConfig{
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.deliver(pr.Packet)
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			o := Outcome{Step: StepDelivery, Code: d.ReasonCode}
			if d.Properties != nil {
				o.Reason = d.Properties.ReasonString
			}
			s.finish(o)
		},
		OnClientError: func(err error) {
			s.finish(Outcome{Step: StepDelivery, Code: CodeServerUnavailable, Err: err})
		},
	}
	c, conn, o := connect(ctx, dial, token, subscriptionWindow, cfg)
	if o.Failed() {
		return nil, o
	}
	s.connMu.Lock()
	s.client, s.conn = c, conn
	s.connMu.Unlock()
	suback, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if suback != nil && len(suback.Reasons) > 0 && suback.Reasons[0] >= 0x80 {
		o := Outcome{Step: StepSubscribe, Code: suback.Reasons[0]}
		if suback.Properties != nil {
			o.Reason = suback.Properties.ReasonString
		}
		s.finish(Outcome{Step: StepSubscribe})
		return nil, o
	}
	if err != nil {
		s.finish(Outcome{Step: StepSubscribe})
		return nil, Outcome{Step: StepSubscribe, Code: CodeServerUnavailable, Err: err}
	}
	return s, Outcome{Step: StepSubscribe}
}

// deliver hands one message on, waiting for the reader (the broker holds further QoS 1 messages
// meanwhile) until the subscription ends.
func (s *Subscription) deliver(p *paho.Publish) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	select {
	case s.msgs <- p:
	case <-s.stopping:
	}
}

// finish ends the subscription once, recording why, and closes Messages.
func (s *Subscription) finish(o Outcome) {
	s.once.Do(func() {
		s.end = o
		close(s.stopping) // releases a deliver waiting for the reader
		s.connMu.Lock()
		c, conn := s.client, s.conn
		s.connMu.Unlock()
		if c != nil {
			disconnect(c, conn)
		}
		s.mu.Lock()
		s.closed = true
		close(s.msgs)
		s.mu.Unlock()
	})
}

// Close ends the subscription from this side (the reader went away).
func (s *Subscription) Close() { s.finish(Outcome{Step: StepDelivery}) }

// End is why the subscription ended; valid once Messages is closed.
func (s *Subscription) End() Outcome {
	<-s.stopping
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.end
}
