package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestDialConnectVersion checks what CONNECT the harness's clients send, decoded
// by mochi: --mqtt picks the version, a 3.1.1-only target gets 3.1.1 whatever
// --mqtt says, and a 3.1.1 CONNECT carries the subject as username with the token.
func TestDialConnectVersion(t *testing.T) {
	tests := []struct {
		mqtt, target string
		version      byte
		username     string
	}{
		{mqtt5, targetJWT, 5, ""},
		{mqtt311, targetJWT, 4, "lt-d0"},
		{mqtt311, targetMosquitto, 4, "lt-d0"},
		{mqtt5, targetRabbitMQ, 4, "lt-d0"},
	}
	for _, tt := range tests {
		t.Run(tt.mqtt+" "+tt.target, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan packets.Packet, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				r := bufio.NewReader(nc)
				hb, _ := r.ReadByte()
				n, _, err := packets.DecodeLength(r)
				if err != nil {
					return
				}
				body := make([]byte, n)
				if _, err := io.ReadFull(r, body); err != nil {
					return
				}
				pk := packets.Packet{}
				if err := pk.FixedHeader.Decode(hb); err != nil || pk.ConnectDecode(body) != nil {
					close(got)
					return
				}
				got <- pk
				ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: pk.ProtocolVersion}
				var buf bytes.Buffer
				_ = ack.ConnackEncode(&buf)
				_, _ = nc.Write(buf.Bytes())
				_, _ = r.ReadByte()
			}()
			e := &runEnv{target: tt.target, addr: ln.Addr().String(), tokens: map[string]string{"lt-d0": "tok"},
				o: Options{MQTT: tt.mqtt}, errs: &errorCounts{}}
			c, err := e.dialConnect(context.Background(), "lt-d0", 0, 512)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pk, ok := <-got
			if !ok {
				t.Fatal("mochi could not decode the CONNECT")
			}
			if pk.ProtocolVersion != tt.version || string(pk.Connect.Username) != tt.username || string(pk.Connect.Password) != "tok" ||
				pk.Connect.ClientIdentifier != "lt-d0" {
				t.Errorf("CONNECT version %d user %q password %q client %q; want version %d user %q", pk.ProtocolVersion,
					pk.Connect.Username, pk.Connect.Password, pk.Connect.ClientIdentifier, tt.version, tt.username)
			}
		})
	}
}
