package broker

import (
	"bytes"
	"net"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// servedConn is every connection the broker serves. It does three things:
//
//   - it adds to an MQTT 5 client's success CONNACK what mochi's never carries: the
//     Maximum Packet Size, and the Authentication Method, which MQTT 5 requires when
//     the client authenticated with one. Doing it here, on the first write, costs the
//     other writes one atomic load; mochi's OnPacketEncode would cost every outbound
//     packet two copies of the packet struct;
//   - it answers a packet above the Maximum Packet Size with DISCONNECT 0x95 and an
//     audit line, where mochi only drops the connection (see Read);
//   - it says when mochi has finished with the connection (Ended), so that a client
//     reconnecting under the same id waits for the old connection's clean-up, which
//     mochi would otherwise run over the new session (deleting it by client id).
type servedConn struct {
	net.Conn
	method  atomic.Pointer[string]      // set by the identity hook before mochi writes the CONNACK
	recvMax atomic.Uint32               // likewise: the client's Receive Maximum under its inflight limit; 0: mochi's
	client  atomic.Pointer[mqtt.Client] // set by protocolHook once the identity hook accepted the CONNECT
	done    atomic.Bool
	ended   chan struct{} // closed when mochi's handling of the connection returns

	// Read side, used only by mochi's reading goroutine.
	limit   *packetLimit // nil: no limit
	meter   packetMeter
	refused bool // a packet above the limit arrived: no more bytes for mochi
	tooBig  int  // its size, when it is still to be answered at the next Read

	// pending is true until the connection's first write (its CONNACK, or the AUTH
	// of an authentication exchange) or its end; release then frees its place in
	// the pending-connect bounds.
	pending atomic.Bool
	release func()
}

func newServedConn(c net.Conn, limit *packetLimit, release func()) *servedConn {
	sc := &servedConn{Conn: c, limit: limit, ended: make(chan struct{}), release: release}
	sc.pending.Store(release != nil)
	return sc
}

// answered ends the connection's pending state, once.
func (c *servedConn) answered() {
	if c.pending.Load() && c.pending.CompareAndSwap(true, false) {
		c.release()
	}
}

// Ended is closed once mochi has finished with the connection.
func (c *servedConn) Ended() <-chan struct{} { return c.ended }

// AmendConnack asks for method to be added to the CONNACK about to be written.
func (c *servedConn) AmendConnack(method string) { c.method.Store(&method) }

// AmendReceiveMaximum asks for the CONNACK about to be written to announce n as
// the Receive Maximum (the identity's inflight limit) instead of the server's.
func (c *servedConn) AmendReceiveMaximum(n uint16) { c.recvMax.Store(uint32(n)) }

func (c *servedConn) Write(p []byte) (int, error) {
	c.answered()
	if !c.done.Load() && c.client.Load() != nil {
		// The first write after protocolHook has seen the accepted CONNECT: the CONNACK.
		c.done.Store(true)
		if q := c.amendConnack(p); q != nil {
			if _, err := c.Conn.Write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// amendConnack returns the MQTT 5 success CONNACK in p with the Maximum Packet
// Size and any Authentication Method added, or nil when the client is not MQTT 5
// or p is not exactly one such CONNACK.
func (c *servedConn) amendConnack(p []byte) []byte {
	if c.client.Load().Properties.ProtocolVersion != 5 {
		return nil
	}
	var method string
	if m := c.method.Load(); m != nil {
		method = *m
	}
	var limit uint32
	if c.limit != nil {
		limit = c.limit.max
	}
	return withConnackProps(p, method, limit, uint16(c.recvMax.Load()))
}

// withConnackProps returns the MQTT 5 success CONNACK in p with the Authentication
// Method (when not empty) and Maximum Packet Size (when not 0) properties added and
// the Receive Maximum replaced (when not 0), or nil when p is not exactly one such
// CONNACK. mochi's own codec decodes and re-encodes it, so the packet stays what
// mochi would write.
func withConnackProps(p []byte, method string, maxPacket uint32, recvMax uint16) []byte {
	pk, ok := decodeConnack(p)
	if !ok || pk.ReasonCode >= 0x80 || (method == "" && maxPacket == 0 && recvMax == 0) {
		return nil
	}
	pk.Properties.AuthenticationMethod = method
	pk.Properties.MaximumPacketSize = maxPacket
	if recvMax > 0 {
		pk.Properties.ReceiveMaximum = recvMax
	}
	var buf bytes.Buffer
	if err := pk.ConnackEncode(&buf); err != nil {
		return nil
	}
	return buf.Bytes()
}

// decodeConnack decodes p when it holds exactly one MQTT 5 CONNACK.
func decodeConnack(p []byte) (packets.Packet, bool) {
	var pk packets.Packet
	if len(p) < 2 || pk.FixedHeader.Decode(p[0]) != nil || pk.FixedHeader.Type != packets.Connack {
		return pk, false
	}
	r := bytes.NewReader(p[1:])
	n, _, err := packets.DecodeLength(r)
	if err != nil || n != r.Len() {
		return pk, false
	}
	pk.FixedHeader.Remaining = n
	pk.ProtocolVersion = 5
	if err := pk.ConnackDecode(p[len(p)-n:]); err != nil {
		return pk, false
	}
	return pk, true
}
