// Package link gives the MQTT examples one small interface over imb connections made with the SDK's
// dialer, MQTT 5 (re-authenticating in the session) or MQTT 3.1.1 (reconnecting), and a token source
// for OAuth 2.0 client credentials.
package link

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"imb/examples/internal/cli"
	sdkmqtt "imb/sdk/mqtt"
)

// Handler receives every message delivered to the connection. It runs on the MQTT client's goroutine
// and must not block.
type Handler func(topic string, payload []byte)

// Link is a connection to imb. Every message is QoS 1.
type Link interface {
	// Subscribe subscribes to filters; a refused filter is an error.
	Subscribe(ctx context.Context, filters ...string) error
	// Publish publishes and waits for the broker's acknowledgement; a refusal is an error.
	Publish(ctx context.Context, topic string, retain bool, payload []byte) error
	// Done is closed when the connection has ended; Err says why.
	Done() <-chan struct{}
	Err() error
	Close(ctx context.Context) error
}

// BrokerURL turns host:port into tcp://host:port; URLs pass unchanged.
func BrokerURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "tcp://" + addr
}

// Dial connects d to broker with MQTT 5, or MQTT 3.1.1 when v311 is set, delivering messages to h.
// With MQTT 5 the token travels as OAUTH2-JWT authentication data, so that the connection can
// re-authenticate before the token expires.
func Dial(ctx context.Context, d *sdkmqtt.Dialer, broker string, v311 bool, h Handler) (Link, error) {
	if v311 {
		opts := pahov3.NewClientOptions().SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) {
			h(m.Topic(), m.Payload())
		})
		conn, err := d.DialV311(ctx, BrokerURL(broker), opts)
		if err != nil {
			return nil, err
		}
		return v3Link{conn}, nil
	}
	if d.AuthMethod == "" {
		d.AuthMethod = sdkmqtt.AuthMethodJWT
	}
	conn, err := d.DialV5(ctx, BrokerURL(broker), paho.ClientConfig{
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				h(pr.Packet.Topic, pr.Packet.Payload)
				return true, nil
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return v5Link{conn}, nil
}

type v5Link struct{ *sdkmqtt.Conn5 }

func (l v5Link) Subscribe(ctx context.Context, filters ...string) error {
	subs := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		subs[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	if _, err := l.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		return fmt.Errorf("subscribe %v: %w", filters, err)
	}
	return nil
}

func (l v5Link) Publish(ctx context.Context, topic string, retain bool, payload []byte) error {
	if _, err := l.Client.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: payload}); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

type v3Link struct{ *sdkmqtt.Conn311 }

func (l v3Link) Subscribe(ctx context.Context, filters ...string) error {
	want := make(map[string]byte, len(filters))
	for _, f := range filters {
		want[f] = 1
	}
	t := l.Client.SubscribeMultiple(want, nil)
	select {
	case <-t.Done():
	case <-ctx.Done():
		return fmt.Errorf("subscribe %v: %w", filters, ctx.Err())
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("subscribe %v: %w", filters, err)
	}
	if st, ok := t.(*pahov3.SubscribeToken); ok {
		for f, code := range st.Result() {
			if code >= 0x80 {
				return fmt.Errorf("subscribe %s: refused (0x%02X)", f, code)
			}
		}
	}
	return nil
}

func (l v3Link) Publish(ctx context.Context, topic string, retain bool, payload []byte) error {
	if err := l.Conn311.Publish(ctx, topic, 1, retain, payload); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// Connect dials as Dial does, printing "Connecting to imb at URL with MQTT 5... Done" (or 3.1.1).
func Connect(ctx context.Context, w io.Writer, d *sdkmqtt.Dialer, broker string, v311 bool, h Handler) (Link, error) {
	version := "MQTT 5"
	if v311 {
		version = "MQTT 3.1.1"
	}
	var conn Link
	err := cli.Step(w, fmt.Sprintf("Connecting to imb at %s with %s", BrokerURL(broker), version), func() error {
		var err error
		conn, err = Dial(ctx, d, broker, v311, h)
		return err
	})
	return conn, err
}

// CloseSoon disconnects, waiting at most a few seconds for the broker, for use in a defer.
func CloseSoon(l Link) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.Close(ctx)
}
