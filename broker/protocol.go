package broker

import (
	"context"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// protocolHook sets what the MQTT 5 CONNACK promises that mochi does not set from
// its options: the Server Keep Alive, and (through the connection, which it tells
// which client it carries) the Maximum Packet Size and its enforcement with
// DISCONNECT 0x95. It is registered after the identity hook, so it sees only the
// connections that hook accepted.
type protocolHook struct {
	mqtt.HookBase
	keepAlive uint16 // seconds; 0: the client's own keep-alive stands
}

// ID names the hook in mochi's logs.
func (h *protocolHook) ID() string { return "imb-protocol" }

// Provides reports the one event the hook handles.
func (h *protocolHook) Provides(b byte) bool { return b == mqtt.OnConnect }

// OnConnect runs before mochi arms the keep-alive deadline and writes the CONNACK.
// A 3.1.1 client cannot be told a keep-alive of the server's choosing, so it keeps
// its own.
func (h *protocolHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if sc, ok := cl.Net.Conn.(*servedConn); ok {
		sc.client.Store(cl)
	}
	if h.keepAlive > 0 && cl.Properties.ProtocolVersion == 5 {
		cl.State.Keepalive = h.keepAlive
		cl.State.ServerKeepalive = true // mochi then sends it in CONNACK [MQTT-3.2.2-21]
	}
	return nil
}

// packetLimit is the broker's Maximum Packet Size and what a connection needs to
// answer a packet above it.
type packetLimit struct {
	max    uint32
	server *mqtt.Server
	audit  *slog.Logger
}

// packetMeter follows packet boundaries in the bytes a client sends, reading only
// fixed headers and skipping bodies by count, so that an oversized packet is seen
// from its header before mochi reads it. mochi itself only drops the connection.
type packetMeter struct {
	off   bool // stopped: a violation was found or the stream is malformed
	skip  int  // body bytes of the current packet still to come
	inLen bool // inside a fixed header's Remaining Length
	start int  // offset in the current chunk where that header began; -1: an earlier chunk
	n     int  // Remaining Length so far
	mult  int
	nlen  int // bytes of Remaining Length read
}

// feed consumes one chunk. over reports a packet of size bytes (fixed header
// included) above max, whose header starts at offset start of b (-1: in an
// earlier chunk).
func (m *packetMeter) feed(b []byte, max uint32) (start, size int, over bool) {
	m.start = -1
	for i := 0; i < len(b); {
		if m.skip > 0 {
			k := min(m.skip, len(b)-i)
			m.skip -= k
			i += k
			continue
		}
		if !m.inLen {
			m.inLen, m.start, m.n, m.mult, m.nlen = true, i, 0, 1, 0
			i++
			continue
		}
		d := b[i]
		i++
		m.n += int(d&127) * m.mult
		m.mult *= 128
		m.nlen++
		if d&128 != 0 {
			if m.nlen == 4 {
				m.off = true // malformed: mochi refuses it itself
				return 0, 0, false
			}
			continue
		}
		m.inLen = false
		if size := 1 + m.nlen + m.n; size > int(max) {
			m.off = true
			return m.start, size, true
		}
		m.skip = m.n
	}
	return 0, 0, false
}

// Read hands mochi the client's bytes up to, never including, a packet above the
// limit. When such a packet's header arrives behind other packets in the same
// chunk, Read returns those packets and answers the oversized one only at the next
// call, when mochi has read (and, reading packet by packet, handled) everything
// before it. From then on Read fails, so mochi ends the connection without seeing
// any of the oversized packet (its own check, on the Remaining Length alone, would
// let a packet a few bytes over through).
func (c *servedConn) Read(p []byte) (int, error) {
	if c.refused {
		if c.tooBig > 0 {
			c.packetTooLarge(c.tooBig)
			c.tooBig = 0
		}
		return 0, packets.ErrPacketTooLarge
	}
	n, err := c.Conn.Read(p)
	if c.limit == nil || c.meter.off || n == 0 {
		return n, err
	}
	start, size, over := c.meter.feed(p[:n], c.limit.max)
	if !over {
		return n, err
	}
	c.refused = true
	if start > 0 {
		c.tooBig = size
		return start, nil
	}
	c.packetTooLarge(size)
	return 0, packets.ErrPacketTooLarge
}

// packetTooLarge records a packet above the limit and answers an MQTT 5 client
// with DISCONNECT 0x95 [MQTT-3.2.2-15]; mochi then fails the read and ends the
// connection. A 3.1.1 client (or a CONNECT too large to be read) has no DISCONNECT
// to receive.
func (c *servedConn) packetTooLarge(size int) {
	cl := c.client.Load()
	attrs := []any{
		slog.String("event", "packet_too_large"),
		slog.String("remote", c.RemoteAddr().String()),
		slog.Int("size", size),
		slog.Int("limit", int(c.limit.max)),
	}
	if cl != nil {
		attrs = append(attrs, slog.String("client_id", cl.ID), slog.String("thing_id", string(cl.Properties.Username)))
	}
	c.limit.audit.Warn("packet too large", attrs...)
	if cl != nil && cl.Properties.ProtocolVersion == 5 {
		_ = c.limit.server.DisconnectClient(cl, packets.ErrPacketTooLarge)
	}
}

// mochiLogs is the handler of mochi's logger. It demotes to Debug the warning mochi
// writes for every CONNECT with a keep-alive of 5 s or less (0, "no keep-alive",
// included): legal, common among devices, and otherwise a large share of the log.
type mochiLogs struct{ slog.Handler }

// mochiLogger returns the logger mochi is given.
func mochiLogger(l *slog.Logger) *slog.Logger {
	return slog.New(mochiLogs{l.Handler()}).With("component", "mqtt")
}

// Handle passes r on, the keep-alive warning at Debug.
func (h mochiLogs) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && r.Message == mqtt.ErrMinimumKeepalive.Error() {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the demotion on derived loggers.
func (h mochiLogs) WithAttrs(as []slog.Attr) slog.Handler { return mochiLogs{h.Handler.WithAttrs(as)} }

// WithGroup keeps the demotion on derived loggers.
func (h mochiLogs) WithGroup(name string) slog.Handler { return mochiLogs{h.Handler.WithGroup(name)} }
