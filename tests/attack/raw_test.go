package attack

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

// rawConn speaks MQTT with mochi's packet codec, for what real clients refuse to send.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// encode returns the bytes of an MQTT 5 packet.
func encode(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	pk.ProtocolVersion = 5
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		t.Fatalf("no encoder for packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// write sends bytes; a write error means the broker closed the connection.
func (r *rawConn) write(b []byte) error {
	_ = r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.c.Write(b)
	return err
}

func (r *rawConn) send(pk packets.Packet) error { return r.write(encode(r.t, pk)) }

// read returns the next packet, or ok=false when the connection ends or within passes.
func (r *rawConn) read(within time.Duration) (pk packets.Packet, ok bool) {
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

// closedWithin reports whether the broker ends the connection within d, reading and
// discarding whatever it sends until then.
func (r *rawConn) closedWithin(d time.Duration) bool {
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

// connectPacket is a CONNECT for clientID with token as password.
func connectPacket(clientID, token string) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
			ClientIdentifier: clientID, PasswordFlag: true, Password: []byte(token),
		},
	}
}

// connectRaw connects with MQTT 5 and fails unless the broker accepts.
func connectRaw(t testing.TB, addr, clientID, token string) *rawConn {
	t.Helper()
	r := dialRaw(t, addr)
	if err := r.send(connectPacket(clientID, token)); err != nil {
		t.Fatal(err)
	}
	ack, ok := r.read(10 * time.Second)
	if !ok || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("raw connect %s: %+v", clientID, ack.FixedHeader)
	}
	return r
}
