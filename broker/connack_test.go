package broker

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func connack(t testing.TB, props packets.Properties) []byte {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: 5, Properties: props}
	var buf bytes.Buffer
	if err := pk.ConnackEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWithAuthMethod(t *testing.T) {
	for name, props := range map[string]packets.Properties{
		"no properties":   {},
		"receive maximum": {ReceiveMaximum: 1024},
		"long properties": {ReceiveMaximum: 1024, AssignedClientID: string(bytes.Repeat([]byte("x"), 200))},
	} {
		t.Run(name, func(t *testing.T) {
			out := withConnackProps(connack(t, props), "OAUTH2-JWT", 0, 0)
			if out == nil {
				t.Fatal("not amended")
			}
			pk, ok := decodeConnack(out)
			if !ok {
				t.Fatalf("amended CONNACK does not decode: %x", out)
			}
			if pk.Properties.AuthenticationMethod != "OAUTH2-JWT" || pk.Properties.ReceiveMaximum != props.ReceiveMaximum ||
				pk.Properties.AssignedClientID != props.AssignedClientID {
				t.Fatalf("decoded %+v", pk.Properties)
			}
		})
	}
	for name, p := range map[string][]byte{
		"failure connack": {0x20, 0x03, 0x00, 0x86, 0x00},
		"publish":         {0x30, 0x02, 0x00, 0x00},
		"two packets":     append(connack(t, packets.Properties{}), 0xd0, 0x00),
		"truncated":       {0x20, 0x05, 0x00},
		"empty":           {},
	} {
		if withConnackProps(p, "OAUTH2-JWT", 0, 0) != nil {
			t.Errorf("%s: amended", name)
		}
	}
}

func FuzzWithAuthMethod(f *testing.F) {
	f.Add(connack(f, packets.Properties{ReceiveMaximum: 10}))
	f.Add([]byte{0x20, 0x03, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, p []byte) {
		out := withConnackProps(p, "OAUTH2-JWT", 0, 0)
		if out == nil {
			return
		}
		if pk, ok := decodeConnack(out); !ok || pk.Properties.AuthenticationMethod != "OAUTH2-JWT" {
			t.Fatalf("%x -> %x", p, out)
		}
	})
}
