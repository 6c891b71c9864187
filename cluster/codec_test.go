package cluster

import (
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestCodecRoundTripKeepsWhatSubscribersSee(t *testing.T) {
	in := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName:   "things/t1/state",
		Payload:     []byte("on"),
		Expiry:      time.Now().Unix() + 60,
		Properties: packets.Properties{ContentType: "text/plain", ResponseTopic: "r", CorrelationData: []byte{1, 2},
			User: []packets.UserProperty{{Key: "k", Val: "v"}}, TopicAlias: 3, TopicAliasFlag: true},
	}
	b, err := encode(in, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.TopicName != in.TopicName || string(out.Payload) != "on" || !out.FixedHeader.Retain || out.FixedHeader.Qos != 1 ||
		out.Properties.ContentType != "text/plain" || out.Properties.ResponseTopic != "r" || len(out.Properties.User) != 1 ||
		out.Properties.TopicAlias != 0 || out.Properties.MessageExpiryInterval < 59 {
		t.Fatalf("round trip changed the message: %+v", out)
	}
	srv := mqtt.New(nil)
	srv.Topics.RetainMessage(out)
	if got := srv.Topics.Messages("things/t1/state"); len(got) != 1 {
		t.Fatalf("retained after decode: %d messages", len(got))
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", Payload: []byte("x")}, time.Now())
	f.Add(b)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		pk, err := decode(data)
		if err == nil && pk.TopicName == "" {
			t.Fatal("decoded a publish without a topic")
		}
	})
}
