package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"imb/internal/wsconn"
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
		return wsconn.New(ws), nil
	}
	return nil, fmt.Errorf("broker URL %q: unsupported scheme %q", rawURL, u.Scheme)
}
