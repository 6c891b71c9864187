// Package wsconn turns a WebSocket connection into the MQTT byte stream (MQTT §6):
// binary messages, one per Write, read across message boundaries. The broker's
// WebSocket listener and the SDK's dialer both use it.
package wsconn

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// New wraps an established WebSocket connection (subprotocol "mqtt").
func New(ws *websocket.Conn) *Conn { return &Conn{Conn: ws} }

// Conn carries the MQTT byte stream in binary WebSocket messages (MQTT §6): each Write is one
// message, and Read continues across message boundaries. It is a sync.Locker: paho.golang writes one
// packet in several Writes and holds that lock around them, so packets of concurrent writers do not
// interleave.
type Conn struct {
	*websocket.Conn
	rmu    sync.Mutex
	r      io.Reader
	wmu    sync.Mutex // one gorilla writer at a time
	packet sync.Mutex // one MQTT packet at a time
}

// Lock reserves the connection for one whole MQTT packet.
func (c *Conn) Lock() { c.packet.Lock() }

// Unlock ends the packet started by Lock.
func (c *Conn) Unlock() { c.packet.Unlock() }

// Read continues the MQTT stream across WebSocket messages; text messages are refused.
func (c *Conn) Read(p []byte) (int, error) {
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
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetDeadline sets both deadlines; the write deadline is taken under the write lock because gorilla's
// connection allows one writer at a time, deadline included.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetWriteDeadline sets the write deadline under the write lock.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}
