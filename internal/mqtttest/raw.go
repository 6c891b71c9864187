// Package mqtttest is a raw MQTT 5 connection built on mochi's packet codec, for
// tests that must send what real clients refuse to (topic aliases, malformed or
// hostile packets) and read exactly what the broker answers.
package mqtttest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Raw is one MQTT connection driven packet by packet.
type Raw struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// Dial opens a TCP connection to addr, closed when the test ends.
func Dial(t testing.TB, addr string) *Raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Raw{t: t, c: c, br: bufio.NewReader(c)}
}

// Wrap drives an existing connection (t may be nil when only ClosedWithin is used).
func Wrap(t testing.TB, c net.Conn) *Raw {
	return &Raw{t: t, c: c, br: bufio.NewReader(c)}
}

// Encode returns the bytes of an MQTT 5 packet.
func Encode(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	pk.ProtocolVersion = 5
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Auth:
		err = pk.AuthEncode(&buf)
	default:
		t.Fatalf("no encoder for packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Write sends bytes; an error means the broker closed the connection.
func (r *Raw) Write(b []byte) error {
	_ = r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.c.Write(b)
	return err
}

// Send encodes and sends a packet.
func (r *Raw) Send(pk packets.Packet) error { return r.Write(Encode(r.t, pk)) }

// Read returns the next packet, or ok=false when the connection ends or within passes.
func (r *Raw) Read(within time.Duration) (pk packets.Packet, ok bool) {
	_ = r.c.SetReadDeadline(time.Now().Add(within))
	b, err := r.br.ReadByte()
	if err != nil {
		return pk, false
	}
	var fh packets.FixedHeader
	if err := fh.Decode(b); err != nil {
		return pk, false
	}
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		d, err := r.br.ReadByte()
		if err != nil {
			return pk, false
		}
		n += int(d&127) * mult
		if d&128 == 0 {
			break
		}
		mult *= 128
	}
	fh.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(r.br, body); err != nil {
		return pk, false
	}
	pk = packets.Packet{FixedHeader: fh, ProtocolVersion: 5}
	switch fh.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	}
	return pk, err == nil
}

// ClosedWithin reports whether the broker ends the connection within d, reading and
// discarding whatever it sends until then.
func (r *Raw) ClosedWithin(d time.Duration) bool {
	deadline := time.Now().Add(d)
	buf := make([]byte, 4096)
	for time.Now().Before(deadline) {
		_ = r.c.SetReadDeadline(deadline)
		if _, err := r.br.Read(buf); err != nil {
			var ne net.Error
			return !errors.As(err, &ne) || !ne.Timeout()
		}
	}
	return false
}

// ConnectPacket is an MQTT 5 CONNECT for clientID with token as password.
func ConnectPacket(clientID, token string) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
			ClientIdentifier: clientID, PasswordFlag: true, Password: []byte(token),
		},
	}
}

// Connect dials and connects with MQTT 5, failing the test unless the broker accepts.
func Connect(t testing.TB, addr, clientID, token string) *Raw {
	t.Helper()
	r := Dial(t, addr)
	if err := r.Send(ConnectPacket(clientID, token)); err != nil {
		t.Fatal(err)
	}
	ack, ok := r.Read(10 * time.Second)
	if !ok || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("raw connect %s: %+v", clientID, ack.FixedHeader)
	}
	return r
}
