package mqtt

import (
	"net"

	"github.com/gorilla/websocket"
)

// NewWebSocketConn lets the tests' broker side carry MQTT over WebSocket the same way the dialer does.
func NewWebSocketConn(ws *websocket.Conn) net.Conn { return &wsConn{Conn: ws} }
