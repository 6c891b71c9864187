package broker

import (
	"encoding/binary"
	"net"
	"sync/atomic"
)

// servedConn is every connection the broker serves. It does two things for the
// identity hook:
//
//   - it adds the Authentication Method to a client's success CONNACK, which MQTT 5
//     requires when the client authenticated with one and mochi's CONNACK never
//     carries. Doing it here, on the first write, costs the other writes one atomic
//     load; mochi's OnPacketEncode would cost every outbound packet two copies of the
//     packet struct;
//   - it says when mochi has finished with the connection (Ended), so that a client
//     reconnecting under the same id waits for the old connection's clean-up, which
//     mochi would otherwise run over the new session (deleting it by client id).
type servedConn struct {
	net.Conn
	method atomic.Pointer[string] // set by the hook before mochi writes the CONNACK
	done   atomic.Bool
	ended  chan struct{} // closed when mochi's handling of the connection returns
}

func newServedConn(c net.Conn) *servedConn { return &servedConn{Conn: c, ended: make(chan struct{})} }

// Ended is closed once mochi has finished with the connection.
func (c *servedConn) Ended() <-chan struct{} { return c.ended }

// AmendConnack asks for method to be added to the CONNACK about to be written.
func (c *servedConn) AmendConnack(method string) { c.method.Store(&method) }

func (c *servedConn) Write(p []byte) (int, error) {
	if m := c.method.Load(); m != nil && !c.done.Load() {
		c.done.Store(true)
		if q := withAuthMethod(p, *m); q != nil {
			if _, err := c.Conn.Write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// withAuthMethod returns a copy of the MQTT 5 success CONNACK in p with an
// Authentication Method property (0x15) appended, or nil when p does not start
// with exactly one such CONNACK.
func withAuthMethod(p []byte, method string) []byte {
	if len(p) < 2 || p[0] != 0x20 {
		return nil
	}
	rl, n := uvarint(p[1:])
	if n == 0 || 1+n+rl != len(p) || rl < 3 || p[1+n+1] >= 0x80 {
		return nil
	}
	body := p[1+n:] // flags, reason, property length, properties
	pl, m := uvarint(body[2:])
	if m == 0 || 2+m+pl != len(body) {
		return nil
	}
	prop := make([]byte, 0, 3+len(method))
	prop = append(prop, 0x15)
	prop = binary.BigEndian.AppendUint16(prop, uint16(len(method)))
	prop = append(prop, method...)

	newProps := appendUvarint(nil, pl+len(prop))
	newBody := make([]byte, 0, 2+len(newProps)+pl+len(prop))
	newBody = append(newBody, body[0], body[1])
	newBody = append(newBody, newProps...)
	newBody = append(newBody, body[2+m:]...)
	newBody = append(newBody, prop...)
	out := append([]byte{0x20}, appendUvarint(nil, len(newBody))...)
	return append(out, newBody...)
}

// uvarint decodes an MQTT variable byte integer; n is 0 when b holds none.
func uvarint(b []byte) (v, n int) {
	mult := 1
	for i := 0; i < 4 && i < len(b); i++ {
		v += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
		mult *= 128
	}
	return 0, 0
}

// appendUvarint appends v as an MQTT variable byte integer.
func appendUvarint(b []byte, v int) []byte {
	for {
		d := byte(v % 128)
		v /= 128
		if v > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if v == 0 {
			return b
		}
	}
}
