package wire

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestPublishRoundTripThroughMochi checks the hand-written PUBLISH framing against
// mochi's decoder (what the broker reads) and mochi's encoder against ParsePublish
// (what the client reads).
func TestPublishRoundTripThroughMochi(t *testing.T) {
	tests := []struct {
		name    string
		topic   string
		qos     byte
		id      uint16
		payload []byte
	}{
		{"qos0 small", "things/d1/telemetry/x", 0, 0, []byte("12345678")},
		{"qos1", "things/d1/telemetry/x", 1, 513, []byte("payload with a timestamp")},
		{"qos1 large payload (3-byte length)", "a/b", 1, 65535, bytes.Repeat([]byte{7}, 70000)},
		{"empty payload", "t", 1, 1, nil},
	}
	versions := []struct {
		name    string
		version byte
		append  func(dst []byte, topic string, qos byte, id uint16, payload []byte) []byte
		parse   func(flags byte, body []byte) (Publish, error)
	}{
		{"v5", V5, AppendPublish, ParsePublish},
		{"v3.1.1", V311, AppendPublish311, ParsePublish311},
	}
	for _, ver := range versions {
		for _, tt := range tests {
			t.Run(ver.name+" "+tt.name, func(t *testing.T) {
				roundTripPublish(t, ver.version, ver.append, ver.parse, tt.topic, tt.qos, tt.id, tt.payload)
			})
		}
	}
}

// roundTripPublish checks one PUBLISH both ways through mochi's codec at version.
func roundTripPublish(t *testing.T, version byte, appendPub func([]byte, string, byte, uint16, []byte) []byte,
	parse func(byte, []byte) (Publish, error), topic string, qos byte, id uint16, payload []byte) {
	t.Helper()
	raw := appendPub(nil, topic, qos, id, payload)
	f, err := readFrame(bufio.NewReader(bytes.NewReader(raw)), new([]byte))
	if err != nil {
		t.Fatal(err)
	}
	pk := packets.Packet{ProtocolVersion: version}
	if err := pk.FixedHeader.Decode(raw[0]); err != nil {
		t.Fatal(err)
	}
	if err := pk.PublishDecode(f.Body); err != nil {
		t.Fatalf("mochi cannot decode: %v", err)
	}
	if pk.TopicName != topic || pk.PacketID != id || pk.FixedHeader.Qos != qos || !bytes.Equal(pk.Payload, payload) {
		t.Fatalf("mochi decoded %q qos %d id %d payload %d bytes", pk.TopicName, pk.FixedHeader.Qos, pk.PacketID, len(pk.Payload))
	}

	// And the other way: mochi encodes (with a property under MQTT 5), the
	// parser reads.
	out := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, ProtocolVersion: version,
		TopicName: topic, PacketID: id, Payload: payload, Properties: packets.Properties{ContentType: "x/y"}}
	var buf bytes.Buffer
	if err := out.PublishEncode(&buf); err != nil {
		t.Fatal(err)
	}
	f, err = readFrame(bufio.NewReader(&buf), new([]byte))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parse(f.Flags, f.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Topic) != topic || p.ID != id || p.QoS != qos || !bytes.Equal(p.Payload, payload) {
		t.Fatalf("parsed %q qos %d id %d payload %d bytes", p.Topic, p.QoS, p.ID, len(p.Payload))
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name  string
		flags byte
		body  []byte
	}{
		{"empty", 0, nil},
		{"topic longer than body", 0, []byte{0, 9, 'a'}},
		{"qos1 without packet id", 2, []byte{0, 1, 'a', 0}},
		{"qos3", 6, []byte{0, 1, 'a', 0, 1, 0}},
		{"properties longer than body", 0, []byte{0, 1, 'a', 5, 1}},
		{"unterminated property length", 0, []byte{0, 1, 'a', 0x80, 0x80, 0x80, 0x80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParsePublish(tt.flags, tt.body); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	if _, _, err := ParsePuback([]byte{1}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short PUBACK: err = %v", err)
	}
	if id, code, err := ParsePuback([]byte{1, 2, 0x87}); err != nil || id != 258 || code != 0x87 {
		t.Fatalf("PUBACK 258/0x87 parsed as %d/%#x %v", id, code, err)
	}
}

func TestReadFrameRefusesHugeLength(t *testing.T) {
	// 0x30 then a length of 268,435,455 (the MQTT maximum): refused before allocating.
	r := bufio.NewReader(strings.NewReader("\x30\xff\xff\xff\x7f"))
	if _, err := readFrame(r, new([]byte)); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("err = %v, want ErrPacketTooLarge", err)
	}
}

// FuzzReadAndParse feeds arbitrary broker output through the client's frame reader
// and parsers: they must return errors, never panic or over-read.
func FuzzReadAndParse(f *testing.F) {
	f.Add(AppendPublish(nil, "things/d1/telemetry/x", 1, 7, []byte("12345678")))
	f.Add(AppendPuback(nil, 9))
	f.Add([]byte{0x20, 3, 0, 0, 0})
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var body []byte
		for range 16 {
			fr, err := readFrame(r, &body)
			if err != nil {
				return
			}
			switch fr.Type {
			case TypePublish:
				if p, err := ParsePublish(fr.Flags, fr.Body); err == nil && len(p.Topic)+len(p.Payload) > len(fr.Body) {
					t.Fatalf("parsed more than the body holds")
				}
			case TypePuback:
				_, _, _ = ParsePuback(fr.Body)
			}
		}
	})
}
