package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/sdk"
)

// Conn5 is an MQTT 5 connection to imb. Publish, subscribe and receive through Client; the connection
// renews its token in the session before it expires (with Dialer.AuthMethod set). Conn5 is safe for
// concurrent use.
type Conn5 struct {
	// Client is the paho.golang client of this connection.
	Client *paho.Client

	d      *Dialer
	ctx    context.Context // ends with the connection; bounds token renewals
	cancel context.CancelFunc

	// ended is signalled once the reason the connection ended is known (paho reports a server
	// DISCONNECT or an error in a goroutine after it has already shut down); done closes after it.
	ended   chan struct{}
	endOnce sync.Once
	done    chan struct{}
	tokenState

	method string   // the authentication method of CONNECT, and so of every re-authentication; "": password
	pop    *PoPAuth // the IMB-POP handler when method is IMB-POP
}

// DialV5 connects to broker (tcp://, tls://, ws://, wss:// …) with MQTT 5. cfg supplies the
// application's callbacks (OnPublishReceived, Session, …); its Conn and ClientID are set by the
// dialer, and its OnServerDisconnect and OnClientError are wrapped so that Err can tell why the
// connection ended. A refused CONNECT returns a *ReasonError.
func (d *Dialer) DialV5(ctx context.Context, broker string, cfg paho.ClientConfig) (*Conn5, error) {
	tok, err := d.token(ctx)
	if err != nil {
		return nil, fmt.Errorf("mqtt: dial %s: token: %w", broker, err)
	}
	dctx, cancel := context.WithTimeout(ctx, d.connectTimeout())
	defer cancel()
	conn, err := dialBroker(dctx, broker, d.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	c := &Conn5{d: d, ended: make(chan struct{}), done: make(chan struct{})}
	c.use(tok)
	userDisconnect, userError := cfg.OnServerDisconnect, cfg.OnClientError
	cfg.OnServerDisconnect = func(p *paho.Disconnect) {
		c.setErr(disconnectError(p))
		c.markEnded()
		if userDisconnect != nil {
			userDisconnect(p)
		}
	}
	cfg.OnClientError = func(err error) {
		c.setErr(err)
		c.markEnded()
		if userError != nil {
			userError(err)
		}
	}
	cfg.Conn = conn
	cfg.ClientID = d.ClientID
	c.method = d.AuthMethod
	if k, asked := d.boundKey(); provesKey(tok, k, asked) {
		// A bound token is no bearer secret: the broker takes it only with a proof of the key.
		c.method = sdk.PoPMethod
		c.pop = NewPoPAuth(k, d.ClientID, d.popAudience(tok))
		if cfg.AuthHandler == nil {
			cfg.AuthHandler = c.pop
		}
	}
	if c.method != "" && cfg.AuthHandler == nil {
		// A broker that honours MQTT 5 names the method in CONNACK, and paho then
		// calls the handler (v0.23 dereferences a nil one).
		cfg.AuthHandler = singleStepAuth{method: c.method}
	}
	if cfg.PacketTimeout == 0 {
		cfg.PacketTimeout = d.connectTimeout()
	}
	c.Client = paho.NewClient(cfg)

	cp := &paho.Connect{ClientID: d.ClientID, KeepAlive: d.keepAlive(), CleanStart: !d.Persistent,
		Properties: &paho.ConnectProperties{}}
	if d.Persistent {
		expiry := uint32(persistentSessionExpiry / time.Second)
		cp.Properties.SessionExpiryInterval = &expiry
	}
	if c.method != "" {
		cp.Properties.AuthMethod, cp.Properties.AuthData = c.method, []byte(tok.AccessToken)
		if d.Username != "" {
			cp.Username, cp.UsernameFlag = d.Username, true
		}
	} else {
		cp.Username, cp.UsernameFlag = d.Username, d.Username != ""
		cp.Password, cp.PasswordFlag = []byte(tok.AccessToken), true
	}
	connack, err := c.Client.Connect(dctx, cp)
	if connack != nil && connack.ReasonCode >= 0x80 {
		re := &ReasonError{Packet: "CONNACK", Version: 5, Code: connack.ReasonCode}
		if connack.Properties != nil {
			re.Reason = connack.Properties.ReasonString
		}
		return nil, re
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("mqtt: connect %s: %w", broker, err)
	}
	if c.pop != nil && connack.Properties != nil && connack.Properties.AssignedClientID != "" {
		c.pop.SetClientID(connack.Properties.AssignedClientID) // re-authentication proofs name it
	}
	d.logger().DebugContext(ctx, "mqtt 5 connected", "broker", broker, "method", c.method, "token", sdk.Fingerprint(tok.AccessToken))
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.method != "" {
		go c.keep()
	}
	go c.watch()
	return c, nil
}

// persistentSessionExpiry is how long the broker keeps a Persistent MQTT 5 session after a disconnect.
const persistentSessionExpiry = time.Hour

// endGrace bounds the wait for paho's report of why a connection ended.
const endGrace = time.Second

// watch closes done once the client has shut down and the reason is recorded.
func (c *Conn5) watch() {
	<-c.Client.Done()
	c.cancel()
	t := time.NewTimer(endGrace)
	select {
	case <-c.ended:
	case <-t.C:
	}
	t.Stop()
	close(c.done)
}

func (c *Conn5) markEnded() { c.endOnce.Do(func() { close(c.ended) }) }

func disconnectError(p *paho.Disconnect) error {
	if p == nil {
		return nil
	}
	re := &ReasonError{Packet: "DISCONNECT", Version: 5, Code: p.ReasonCode}
	if p.Properties != nil {
		re.Reason = p.Properties.ReasonString
	}
	return re
}

// Done is closed when the connection has ended and Err tells why.
func (c *Conn5) Done() <-chan struct{} { return c.done }

// Reauthenticate pulls a token from the token source now and re-authenticates with it in the session
// (AUTH, reason 0x19). The broker answers AUTH 0x00, or ends the session with DISCONNECT, which is
// returned as a *ReasonError. It needs Dialer.AuthMethod.
func (c *Conn5) Reauthenticate(ctx context.Context) error {
	tok, err := c.d.token(ctx)
	if err != nil {
		return fmt.Errorf("mqtt: re-authenticate: token: %w", err)
	}
	return c.reauth(ctx, tok)
}

func (c *Conn5) reauth(ctx context.Context, tok *sdk.Token) error {
	if c.method == "" {
		return errors.New("mqtt: re-authenticate: connected with a password; set Dialer.AuthMethod")
	}
	ctx, cancel := context.WithTimeout(ctx, c.d.connectTimeout())
	defer cancel()
	resp, err := c.Client.Authenticate(ctx, &paho.Auth{
		ReasonCode: CodeReAuthenticate,
		Properties: &paho.AuthProperties{AuthMethod: c.method, AuthData: []byte(tok.AccessToken)},
	})
	if err != nil {
		return fmt.Errorf("mqtt: re-authenticate: %w", err)
	}
	if !resp.Success {
		re := &ReasonError{Packet: "DISCONNECT", Version: 5, Code: resp.ReasonCode}
		if resp.Properties != nil {
			re.Reason = resp.Properties.ReasonString
		}
		c.setErr(re)
		return re
	}
	c.use(tok)
	c.d.logger().DebugContext(ctx, "mqtt 5 re-authenticated", "token", sdk.Fingerprint(tok.AccessToken))
	return nil
}

// keep renews the token before each expiry and re-authenticates with it, until the connection ends.
func (c *Conn5) keep() {
	for {
		fresh, err := c.d.nextToken(c.ctx, &c.tokenState)
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			c.setErr(fmt.Errorf("mqtt: renew token: %w", err))
			c.d.logger().Warn("token renewal failed; the broker will end the session at expiry", "err", err)
			return
		}
		if err := c.reauth(c.ctx, fresh); err != nil {
			var re *ReasonError
			if !errors.As(err, &re) && c.ctx.Err() == nil {
				// The exchange did not complete: the session's authentication state is unknown.
				c.setErr(err)
				_ = c.Client.Disconnect(&paho.Disconnect{ReasonCode: CodeSuccess})
			}
			return
		}
	}
}

// Close sends DISCONNECT and waits until the connection has ended or ctx is done.
func (c *Conn5) Close(ctx context.Context) error {
	c.cancel()
	c.markEnded()
	// An error here means the connection is already gone, which is what Close wants.
	_ = c.Client.Disconnect(&paho.Disconnect{ReasonCode: CodeSuccess})
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: close: %w", ctx.Err())
	}
}

// singleStepAuth is the enhanced-authentication handler for OAUTH2-JWT, which
// completes in one step: a server asking to continue gets an AUTH without data,
// which it refuses.
type singleStepAuth struct{ method string }

// Authenticate answers a server's AUTH 0x18 (continue), which OAUTH2-JWT never needs.
func (a singleStepAuth) Authenticate(*paho.Auth) *paho.Auth {
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: a.method}}
}

// Authenticated is called when CONNACK arrives.
func (singleStepAuth) Authenticated() {}
