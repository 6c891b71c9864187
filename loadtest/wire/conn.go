// Package wire is a lean MQTT 5 and 3.1.1 client for load generation: one TCP connection,
// a buffered reader and writer, and hand-written PUBLISH/PUBACK framing on the hot
// path. CONNECT and SUBSCRIBE use mochi's packets codec, the same encoder the broker
// under test decodes with. It allocates nothing per message once warmed up, so a
// 2-core machine spends its cycles on the broker, not on the generator.
package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Packet types of the MQTT fixed header (high nibble).
const (
	TypeConnack    = packets.Connack
	TypePublish    = packets.Publish
	TypePuback     = packets.Puback
	TypeSuback     = packets.Suback
	TypePingresp   = packets.Pingresp
	TypeDisconnect = packets.Disconnect
)

// maxPacket bounds what the client accepts from a broker: a broker that announces a
// larger packet is misbehaving, and the client must not allocate on its word.
const maxPacket = 1 << 20

// ErrPacketTooLarge is returned for a packet above the client's limit.
var ErrPacketTooLarge = errors.New("packet larger than 1 MiB")

// Protocol versions as CONNECT's protocol level carries them.
const (
	V311 byte = 4 // MQTT 3.1.1
	V5   byte = 5 // MQTT 5
)

// Conn is one MQTT connection of either version. Reads and writes may run in
// different goroutines; each side is used by one goroutine at a time.
type Conn struct {
	nc      net.Conn
	version byte
	r       *bufio.Reader
	w       *bufio.Writer
	body    []byte
	out     []byte
}

// Options size a connection's buffers.
type Options struct {
	ReadBuffer, WriteBuffer int    // bufio sizes (default 4096 each)
	LocalAddr               net.IP // source address to dial from (spreads ports over 127.0.0.0/8)
	// Version is the protocol spoken: V5 (the default when 0) or V311. Brokers
	// that speak only 3.1.1 are loaded with the same client.
	Version byte
}

// Dial opens a TCP connection to addr.
func Dial(ctx context.Context, addr string, o Options) (*Conn, error) {
	d := net.Dialer{}
	if o.LocalAddr != nil {
		d.LocalAddr = &net.TCPAddr{IP: o.LocalAddr}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return New(nc, o), nil
}

// New wraps an established connection.
func New(nc net.Conn, o Options) *Conn {
	if o.ReadBuffer <= 0 {
		o.ReadBuffer = 4096
	}
	if o.WriteBuffer <= 0 {
		o.WriteBuffer = 4096
	}
	if o.Version == 0 {
		o.Version = V5
	}
	return &Conn{nc: nc, version: o.Version, r: bufio.NewReaderSize(nc, o.ReadBuffer), w: bufio.NewWriterSize(nc, o.WriteBuffer)}
}

// Version is the protocol version the connection speaks (V5 or V311).
func (c *Conn) Version() byte { return c.version }

// NetConn is the underlying connection (deadlines, close).
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Frame is one packet read from the broker. Body aliases the connection's read
// buffer: it is valid until the next ReadFrame.
type Frame struct {
	Type  byte
	Flags byte
	Body  []byte
}

// ReadFrame reads the next packet.
func (c *Conn) ReadFrame() (Frame, error) {
	return readFrame(c.r, &c.body)
}

func readFrame(r *bufio.Reader, body *[]byte) (Frame, error) {
	hb, err := r.ReadByte()
	if err != nil {
		return Frame{}, err
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		return Frame{}, fmt.Errorf("read length: %w", err)
	}
	if n > maxPacket || n < 0 {
		return Frame{}, ErrPacketTooLarge
	}
	if cap(*body) < n {
		*body = make([]byte, n, max(n, 512))
	}
	b := (*body)[:n]
	if _, err := io.ReadFull(r, b); err != nil {
		return Frame{}, fmt.Errorf("read body: %w", err)
	}
	return Frame{Type: hb >> 4, Flags: hb & 0x0f, Body: b}, nil
}

// Buffered reports whether more input is already buffered (the caller may defer
// flushing acknowledgements until it is not).
func (c *Conn) Buffered() bool { return c.r.Buffered() > 0 }

// Flush writes buffered output.
func (c *Conn) Flush() error { return c.w.Flush() }

// ConnectOptions is the content of a CONNECT.
type ConnectOptions struct {
	ClientID string
	Username string
	Password string // the access token; empty: none
	// KeepAlive in seconds; 0 disables the broker's keep-alive timer.
	KeepAlive uint16
}

// ErrPasswordWithoutUsername refuses a 3.1.1 CONNECT that would carry a password
// but no username, which MQTT 3.1.1 (3.1.2.9) forbids and brokers reject.
var ErrPasswordWithoutUsername = errors.New("connect: MQTT 3.1.1 needs a username to carry a password")

// Connect sends CONNECT and waits for CONNACK until ctx ends. It returns the
// CONNACK reason code (MQTT 5) or return code (3.1.1); 0 is success in both.
func (c *Conn) Connect(ctx context.Context, o ConnectOptions) (byte, error) {
	if c.version == V311 && o.Password != "" && o.Username == "" {
		return 0, ErrPasswordWithoutUsername
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: c.version,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            true,
			Keepalive:        o.KeepAlive,
			ClientIdentifier: o.ClientID,
		},
	}
	if o.Username != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(o.Username)
	}
	if o.Password != "" {
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(o.Password)
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		return 0, fmt.Errorf("encode connect: %w", err)
	}
	f, err := c.roundTrip(ctx, buf.Bytes(), TypeConnack)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	if len(f.Body) < 2 {
		return 0, errors.New("connect: short CONNACK")
	}
	return f.Body[1], nil
}

// Subscribe sends one SUBSCRIBE and waits for its SUBACK; it returns the reason
// code (granted QoS, or >= 0x80 when refused).
func (c *Conn) Subscribe(ctx context.Context, filter string, qos byte) (byte, error) {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		ProtocolVersion: c.version,
		PacketID:        1,
		Filters:         packets.Subscriptions{{Filter: filter, Qos: qos}},
	}
	var buf bytes.Buffer
	if err := pk.SubscribeEncode(&buf); err != nil {
		return 0, fmt.Errorf("encode subscribe: %w", err)
	}
	f, err := c.roundTrip(ctx, buf.Bytes(), TypeSuback)
	if err != nil {
		return 0, fmt.Errorf("subscribe %s: %w", filter, err)
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: c.version}
	if err := ack.SubackDecode(f.Body); err != nil || len(ack.ReasonCodes) != 1 {
		return 0, fmt.Errorf("subscribe %s: malformed SUBACK", filter)
	}
	return ack.ReasonCodes[0], nil
}

// roundTrip writes a packet and reads until a packet of type want arrives (a
// DISCONNECT from the broker ends it with an error carrying the reason code).
func (c *Conn) roundTrip(ctx context.Context, pkt []byte, want byte) (Frame, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(dl)
		defer c.nc.SetDeadline(time.Time{})
	}
	if _, err := c.w.Write(pkt); err != nil {
		return Frame{}, err
	}
	if err := c.w.Flush(); err != nil {
		return Frame{}, err
	}
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return Frame{}, err
		}
		switch f.Type {
		case want:
			return f, nil
		case TypeDisconnect:
			return Frame{}, &DisconnectError{Code: DisconnectCode(f.Body)}
		}
	}
}

// DisconnectError is a DISCONNECT received from the broker.
type DisconnectError struct{ Code byte }

func (e *DisconnectError) Error() string {
	return fmt.Sprintf("disconnected by broker, reason 0x%02x", e.Code)
}

// DisconnectCode is the reason code of a DISCONNECT body (0 when absent).
func DisconnectCode(body []byte) byte {
	if len(body) == 0 {
		return 0
	}
	return body[0]
}

// Disconnect sends a normal DISCONNECT and waits (until ctx ends) for the broker to
// close the connection, so that the closing side's TIME_WAIT lands on the broker's
// port rather than using up the generator's ephemeral ports.
func (c *Conn) Disconnect(ctx context.Context) error {
	if _, err := c.w.Write([]byte{packets.Disconnect << 4, 0}); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetReadDeadline(dl)
	}
	for {
		if _, err := c.ReadFrame(); err != nil {
			_ = c.nc.Close()
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errors.New("disconnect: broker did not close the connection")
			}
			return nil // a reset after DISCONNECT is a close too
		}
	}
}

// Ping sends PINGREQ and waits for PINGRESP until ctx ends: proof that the broker
// still holds the session.
func (c *Conn) Ping(ctx context.Context) error {
	_, err := c.roundTrip(ctx, []byte{packets.Pingreq << 4, 0}, TypePingresp)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}
