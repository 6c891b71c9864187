package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"imb/sdk"
)

// quiesce is how long a renewal's DISCONNECT waits for in-flight work, in milliseconds.
const quiesce = 250

// Conn311 is an MQTT 3.1.1 connection to imb. MQTT 3.1.1 has no re-authentication, so before the token
// expires the connection disconnects cleanly and connects again with a fresh token. With a persistent
// session (Dialer.Persistent) the broker keeps subscriptions and queues QoS 1 messages for the gap.
// Conn311 is safe for concurrent use.
type Conn311 struct {
	// Client is the paho.mqtt.golang client of this connection.
	Client pahov3.Client

	d      *Dialer
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	tokenState
	// renewing excludes Publish from the short disconnected gap of a renewal.
	renewing sync.RWMutex
	// renewals counts the reconnects of renewals, so that Publish can tell a publish
	// a renewal cut off (paho fails it when its PUBACK was not in before the
	// disconnect) from a connection that was really lost.
	renewals atomic.Uint64
}

// DialV311 connects to broker with MQTT 3.1.1, the token as password and Dialer.Username as user name.
// opts (nil for defaults) supplies the application's handlers; the dialer sets broker, client id
// (Dialer.ClientID, else Username), credentials, TLS, keep-alive, timeouts and clean session
// (!Dialer.Persistent). A refused CONNECT returns a *ReasonError.
func (d *Dialer) DialV311(ctx context.Context, broker string, opts *pahov3.ClientOptions) (*Conn311, error) {
	tok, err := d.token(ctx)
	if err != nil {
		return nil, fmt.Errorf("mqtt: dial %s: token: %w", broker, err)
	}
	if opts == nil {
		opts = pahov3.NewClientOptions()
	}
	c := &Conn311{d: d, done: make(chan struct{})}
	c.use(tok)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	clientID := d.ClientID
	if clientID == "" {
		clientID = d.Username
	}
	opts.Servers = nil
	opts.AddBroker(broker).
		SetProtocolVersion(4).
		SetClientID(clientID).
		SetCleanSession(!d.Persistent).
		SetKeepAlive(time.Duration(d.keepAlive()) * time.Second).
		SetConnectTimeout(d.connectTimeout()).
		SetCredentialsProvider(c.credentials)
	if d.TLSConfig != nil {
		opts.SetTLSConfig(d.TLSConfig)
	}
	c.Client = pahov3.NewClient(opts)
	if err := c.connect(ctx); err != nil {
		c.cancel()
		return nil, fmt.Errorf("mqtt: connect %s: %w", broker, err)
	}
	d.logger().DebugContext(ctx, "mqtt 3.1.1 connected", "broker", broker, "token", sdk.Fingerprint(tok.AccessToken))
	go c.keep()
	return c, nil
}

// credentials hands paho the current token, also when it reconnects by itself after a network loss;
// a token already due for renewal is replaced first when the source can give a new one.
func (c *Conn311) credentials() (string, string) {
	tok, issued := c.current()
	if at := c.d.renewAt(tok, issued); !at.IsZero() && time.Now().After(at) {
		if fresh, err := c.d.token(c.ctx); err == nil {
			c.use(fresh)
			tok = fresh
		}
	}
	return c.d.Username, tok.AccessToken
}

func (c *Conn311) connect(ctx context.Context) error {
	t := c.Client.Connect()
	select {
	case <-t.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := t.Error(); err != nil {
		if ct, ok := t.(*pahov3.ConnectToken); ok && ct.ReturnCode() != 0 {
			return &ReasonError{Packet: "CONNACK", Version: 4, Code: ct.ReturnCode(), Reason: err.Error()}
		}
		return err
	}
	return nil
}

// Done is closed when the connection has ended for good (Close, or a failed renewal).
func (c *Conn311) Done() <-chan struct{} { return c.done }

// Publish publishes and waits for completion (PUBACK for QoS 1). It waits out a renewal in progress,
// so a message is not refused just because the connection is being renewed.
func (c *Conn311) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	for {
		c.renewing.RLock()
		gen := c.renewals.Load()
		t := c.Client.Publish(topic, qos, retained, payload)
		c.renewing.RUnlock()
		select {
		case <-t.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		err := t.Error()
		if err == nil || qos == 0 {
			return err
		}
		// A renewal's reconnect ended the connection before the PUBACK came: send it
		// again on the new connection (QoS 1 allows the duplicate this may make).
		c.renewing.RLock()
		renewed := c.renewals.Load() != gen
		c.renewing.RUnlock()
		if !renewed {
			return err
		}
	}
}

// Renew pulls a token now and reconnects with it.
func (c *Conn311) Renew(ctx context.Context) error {
	tok, err := c.d.token(ctx)
	if err != nil {
		return fmt.Errorf("mqtt: renew: token: %w", err)
	}
	return c.reconnect(ctx, tok)
}

func (c *Conn311) reconnect(ctx context.Context, tok *sdk.Token) error {
	c.renewing.Lock()
	defer c.renewing.Unlock()
	if err := ctx.Err(); err != nil {
		return err // closed meanwhile: do not connect again
	}
	c.use(tok)
	c.Client.Disconnect(quiesce)
	var err error
	for attempt := 1; attempt <= reconnectAttempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.d.connectTimeout())
		err = c.connect(actx)
		cancel()
		var refused *ReasonError
		if err == nil || errors.As(err, &refused) || ctx.Err() != nil {
			break
		}
		c.d.logger().DebugContext(ctx, "mqtt 3.1.1 reconnect failed; retrying", "attempt", attempt, "err", err)
		t := time.NewTimer(reconnectBackoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err != nil {
		return fmt.Errorf("mqtt: reconnect with renewed token: %w", err)
	}
	c.renewals.Add(1)
	c.d.logger().DebugContext(ctx, "mqtt 3.1.1 reconnected with a renewed token", "token", sdk.Fingerprint(tok.AccessToken))
	return nil
}

// A renewal's reconnect is retried this often, this far apart, unless the broker refuses the token.
const (
	reconnectAttempts = 3
	reconnectBackoff  = time.Second
)

// keep reconnects with a renewed token before each expiry until the connection is closed.
func (c *Conn311) keep() {
	defer close(c.done)
	for {
		fresh, err := c.d.nextToken(c.ctx, &c.tokenState)
		if err == nil {
			err = c.reconnect(c.ctx, fresh)
		}
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			c.setErr(err)
			c.d.logger().Warn("mqtt 3.1.1 token renewal failed", "err", err)
			c.Client.Disconnect(0)
			return
		}
	}
}

// Close disconnects and stops renewing.
func (c *Conn311) Close(ctx context.Context) error {
	c.cancel()
	c.renewing.Lock()
	c.Client.Disconnect(quiesce)
	c.renewing.Unlock()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: close: %w", ctx.Err())
	}
}
