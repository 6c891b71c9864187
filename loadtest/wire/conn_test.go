package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// fakeBroker reads the client's packets from nc with mochi's decoder (what imb and
// the baseline read), at the protocol version the CONNECT announces, and answers
// with mochi's encoder at that version: CONNACK, SUBACK, then one PUBLISH.
func fakeBroker(t *testing.T, nc net.Conn, got chan<- packets.Packet) {
	defer nc.Close()
	r := bufio.NewReader(nc)
	var body []byte
	var version byte
	next := func() (packets.Packet, bool) {
		hb, err := r.Peek(1)
		if err != nil {
			return packets.Packet{}, false
		}
		pk := packets.Packet{ProtocolVersion: version}
		if err := pk.FixedHeader.Decode(hb[0]); err != nil {
			t.Errorf("fixed header: %v", err)
			return pk, false
		}
		f, err := readFrame(r, &body)
		if err != nil {
			return pk, false
		}
		switch f.Type {
		case packets.Connect:
			err = pk.ConnectDecode(f.Body)
			version = pk.ProtocolVersion
		case packets.Subscribe:
			err = pk.SubscribeDecode(f.Body)
		}
		if err != nil {
			t.Errorf("mochi cannot decode packet type %d: %v", f.Type, err)
			return pk, false
		}
		return pk, true
	}
	write := func(pk packets.Packet, enc func(*packets.Packet, *bytes.Buffer) error) {
		var buf bytes.Buffer
		pk.ProtocolVersion = version
		if err := enc(&pk, &buf); err != nil {
			t.Errorf("encode: %v", err)
		}
		_, _ = nc.Write(buf.Bytes())
	}
	pk, ok := next()
	if !ok {
		return
	}
	got <- pk
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}}, (*packets.Packet).ConnackEncode)
	if pk, ok = next(); !ok {
		return
	}
	got <- pk
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, PacketID: pk.PacketID, ReasonCodes: []byte{1}},
		(*packets.Packet).SubackEncode)
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", PacketID: 7,
		Payload: []byte("12345678")}, (*packets.Packet).PublishEncode)
	_, _ = r.ReadByte() // until the client closes
}

// TestConnectSubscribeReceiveBothVersions runs a client of each version against
// mochi's codec: the broker must read the version, username and token the client
// meant, and the client must read the broker's CONNACK, SUBACK and PUBLISH.
func TestConnectSubscribeReceiveBothVersions(t *testing.T) {
	for _, v := range []byte{V5, V311} {
		t.Run(map[byte]string{V5: "MQTT 5", V311: "MQTT 3.1.1"}[v], func(t *testing.T) {
			cn, sn := net.Pipe()
			got := make(chan packets.Packet, 2)
			go fakeBroker(t, sn, got)
			c := New(cn, Options{Version: v})
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code, err := c.Connect(ctx, ConnectOptions{ClientID: "d1", Username: "d1", Password: "tok"})
			if err != nil || code != 0 {
				t.Fatalf("connect: code %d, %v", code, err)
			}
			pk := <-got
			if pk.ProtocolVersion != v || string(pk.Connect.ProtocolName) != "MQTT" || pk.Connect.ClientIdentifier != "d1" ||
				string(pk.Connect.Username) != "d1" || string(pk.Connect.Password) != "tok" {
				t.Fatalf("broker read version %d name %q client %q user %q password %q", pk.ProtocolVersion,
					pk.Connect.ProtocolName, pk.Connect.ClientIdentifier, pk.Connect.Username, pk.Connect.Password)
			}
			granted, err := c.Subscribe(ctx, "a/#", 1)
			if err != nil || granted != 1 {
				t.Fatalf("subscribe: granted %d, %v", granted, err)
			}
			if pk := <-got; len(pk.Filters) != 1 || pk.Filters[0].Filter != "a/#" || pk.Filters[0].Qos != 1 {
				t.Fatalf("broker read filters %+v", pk.Filters)
			}
			f, err := c.ReadFrame()
			if err != nil || f.Type != TypePublish {
				t.Fatalf("frame type %d, %v", f.Type, err)
			}
			p, err := c.ParsePublish(f)
			if err != nil || string(p.Topic) != "a/b" || p.ID != 7 || string(p.Payload) != "12345678" {
				t.Fatalf("publish %q id %d payload %q, %v", p.Topic, p.ID, p.Payload, err)
			}
		})
	}
}

// TestConnect311RefusesPasswordWithoutUsername: MQTT 3.1.1 forbids the password
// flag without the username flag; the client says so instead of sending a CONNECT
// every broker would reject.
func TestConnect311RefusesPasswordWithoutUsername(t *testing.T) {
	cn, sn := net.Pipe()
	defer sn.Close()
	c := New(cn, Options{Version: V311})
	defer c.Close()
	if _, err := c.Connect(context.Background(), ConnectOptions{ClientID: "d1", Password: "tok"}); !errors.Is(err, ErrPasswordWithoutUsername) {
		t.Fatalf("err = %v, want ErrPasswordWithoutUsername", err)
	}
}
