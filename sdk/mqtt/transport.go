package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"
)

// dialBroker opens the byte stream to the broker named by rawURL: tcp:// or mqtt:// (plain TCP),
// tls://, ssl:// or mqtts:// (TLS), ws:// or wss:// (WebSocket, subprotocol "mqtt").
func dialBroker(ctx context.Context, rawURL string, tlsConfig *tls.Config) (net.Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("broker URL %q: want scheme://host:port", rawURL)
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", u.Host, err)
		}
		return packets.NewThreadSafeConn(conn), nil
	case "tls", "ssl", "mqtts":
		d := tls.Dialer{Config: tlsConfig}
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, fmt.Errorf("dial tls %s: %w", u.Host, err)
		}
		return packets.NewThreadSafeConn(conn), nil
	case "ws", "wss":
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: tlsConfig, HandshakeTimeout: 10 * time.Second}
		ws, resp, err := d.DialContext(ctx, u.String(), nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("dial websocket %s: %w", u.Host, err)
		}
		return &wsConn{Conn: ws}, nil
	}
	return nil, fmt.Errorf("broker URL %q: unsupported scheme %q", rawURL, u.Scheme)
}

// wsConn carries the MQTT byte stream in binary WebSocket messages (MQTT §6): each Write is one
// message, and Read continues across message boundaries. It is a sync.Locker: paho.golang writes one
// packet in several Writes and holds that lock around them, so packets of concurrent writers do not
// interleave.
type wsConn struct {
	*websocket.Conn
	rmu    sync.Mutex
	r      io.Reader
	wmu    sync.Mutex // one gorilla writer at a time
	packet sync.Mutex // one MQTT packet at a time
}

// Lock reserves the connection for one whole MQTT packet.
func (c *wsConn) Lock() { c.packet.Lock() }

// Unlock ends the packet started by Lock.
func (c *wsConn) Unlock() { c.packet.Unlock() }

// Read continues the MQTT stream across WebSocket messages; text messages are refused.
func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			typ, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: message type %d, MQTT needs binary", typ)
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// Write sends p as one binary WebSocket message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetDeadline sets both deadlines; the write deadline is taken under the write lock because gorilla's
// connection allows one writer at a time, deadline included.
func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetWriteDeadline sets the write deadline under the write lock.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}
