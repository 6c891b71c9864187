package broker

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"imb/internal/issuer"
	"imb/internal/mqtttest"
)

// connectRaw sends an MQTT 5 CONNECT and returns the broker's CONNACK.
func connectRaw(t *testing.T, b *Broker, iss *issuer.Issuer, keepAlive uint16) (*mqtttest.Raw, packets.Packet) {
	t.Helper()
	r := mqtttest.Dial(t, b.Addr("tcp"))
	c := mqtttest.ConnectPacket("t1", iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour))
	c.Connect.Keepalive = keepAlive
	if err := r.Send(c); err != nil {
		t.Fatal(err)
	}
	ack, ok := r.Read(10 * time.Second)
	if !ok || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK: ok=%v %+v", ok, ack)
	}
	return r, ack
}

func publishPacket(topic string, id uint16, payload []byte) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic, PacketID: id, Payload: payload,
	}
}

// The CONNACK advertises the packet limit the broker enforces, and the Server Keep
// Alive only when one is configured.
func TestConnackProperties(t *testing.T) {
	for _, tc := range []struct {
		name          string
		mod           func(*Config)
		wantMax       uint32
		wantKeepAlive uint16 // 0: no Server Keep Alive property
	}{
		{"defaults", nil, 256 << 10, 0},
		{"configured", func(c *Config) { c.MaxPacketSize = 4096; c.ServerKeepAlive = 20 * time.Second }, 4096, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, iss := startBroker(t, tc.mod)
			_, ack := connectRaw(t, b, iss, 300)
			if ack.Properties.MaximumPacketSize != tc.wantMax {
				t.Errorf("Maximum Packet Size %d, want %d", ack.Properties.MaximumPacketSize, tc.wantMax)
			}
			if ack.Properties.ServerKeepAliveFlag != (tc.wantKeepAlive != 0) || ack.Properties.ServerKeepAlive != tc.wantKeepAlive {
				t.Errorf("Server Keep Alive %v/%d, want %d", ack.Properties.ServerKeepAliveFlag, ack.Properties.ServerKeepAlive, tc.wantKeepAlive)
			}
		})
	}
}

// The Server Keep Alive is also what the broker enforces: a client that asked for
// 300 s and stays silent is disconnected after 1.5 × the server's 1 s.
func TestServerKeepAliveEnforced(t *testing.T) {
	b, iss := startBroker(t, func(c *Config) { c.ServerKeepAlive = time.Second })
	r, _ := connectRaw(t, b, iss, 300)
	if !r.ClosedWithin(5 * time.Second) {
		t.Fatal("a silent client outlived the server keep-alive")
	}
}

// A PUBLISH above the limit gets DISCONNECT 0x95 and an audit line naming the
// client and the size, and reaches no subscriber, even when only its fixed header
// takes it over the limit; the packet before it, in the same write, is handled.
func TestOversizedPublish(t *testing.T) {
	const limit = 256 << 10
	topic := "things/t1/telemetry/a"
	for _, tc := range []struct {
		name    string
		payload int
	}{
		{"far above", 300 << 10},
		// 1 + 3 length bytes + 2 + len(topic) + 2 packet id + 1 properties length +
		// payload = limit + 1 bytes; mochi's own check (Remaining Length + 1) passes it.
		{"one byte above", limit + 1 - (1 + 3 + 2 + len(topic) + 2 + 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var audit syncBuffer
			b, iss := startBroker(t, func(c *Config) {
				c.Audit = slog.New(slog.NewTextHandler(&audit, nil))
				c.ClientIDBinding = []string{"{sub}", "{sub}:*"}
			})
			tok := iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
			sub := mqtttest.Connect(t, b.Addr("tcp"), "t1:sub", tok)
			if err := sub.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
				Filters: packets.Subscriptions{{Filter: "things/t1/telemetry/#"}}}); err != nil {
				t.Fatal(err)
			}
			if ack, ok := sub.Read(5 * time.Second); !ok || ack.FixedHeader.Type != packets.Suback {
				t.Fatalf("SUBACK: %+v", ack.FixedHeader)
			}

			r, _ := connectRaw(t, b, iss, 30)
			small := mqtttest.Encode(t, publishPacket(topic, 1, []byte("ok")))
			big := mqtttest.Encode(t, publishPacket(topic, 2, make([]byte, tc.payload)))
			if len(big) <= limit {
				t.Fatalf("test packet of %d bytes is not above the limit", len(big))
			}
			go func() { _ = r.Write(append(small, big...)) }() // the broker stops reading mid-way

			ack, ok := r.Read(5 * time.Second)
			if !ok || ack.FixedHeader.Type != packets.Puback || ack.PacketID != 1 {
				t.Fatalf("want PUBACK 1 for the packet before the oversized one, got ok=%v %+v", ok, ack.FixedHeader)
			}
			disc, ok := r.Read(5 * time.Second)
			if !ok || disc.FixedHeader.Type != packets.Disconnect || disc.ReasonCode != packets.ErrPacketTooLarge.Code {
				t.Fatalf("want DISCONNECT 0x95, got ok=%v %+v code %#x", ok, disc.FixedHeader, disc.ReasonCode)
			}
			if !r.ClosedWithin(5 * time.Second) {
				t.Fatal("connection still open after DISCONNECT 0x95")
			}
			if m, ok := sub.Read(5 * time.Second); !ok || m.FixedHeader.Type != packets.Publish || string(m.Payload) != "ok" {
				t.Fatalf("subscriber: want the small message, got ok=%v %+v", ok, m.FixedHeader)
			}
			if m, ok := sub.Read(time.Second); ok {
				t.Fatalf("the oversized packet reached a subscriber: %+v, %d bytes", m.FixedHeader, len(m.Payload))
			}
			line := audit.String()
			for _, want := range []string{"event=packet_too_large", "client_id=t1", "thing_id=t1",
				"size=" + strconv.Itoa(len(big)), "limit=262144"} {
				if !strings.Contains(line, want) {
					t.Errorf("audit log lacks %q:\n%s", want, line)
				}
			}
		})
	}
}

// A PUBACK carries none of the PUBLISH's properties: strict clients refuse an
// acknowledgement with user properties they did not expect.
func TestPubackWithoutInheritedProperties(t *testing.T) {
	b, iss := startBroker(t, nil)
	r, _ := connectRaw(t, b, iss, 30)
	pk := publishPacket("things/t1/telemetry/a", 7, []byte("x"))
	pk.Properties.User = []packets.UserProperty{{Key: "trace", Val: "abc"}}
	pk.Properties.ContentType = "text/plain"
	if err := r.Send(pk); err != nil {
		t.Fatal(err)
	}
	ack, ok := r.Read(5 * time.Second)
	if !ok || ack.FixedHeader.Type != packets.Puback || ack.PacketID != 7 {
		t.Fatalf("want PUBACK 7, got ok=%v %+v", ok, ack.FixedHeader)
	}
	if len(ack.Properties.User) != 0 {
		t.Errorf("PUBACK carries the PUBLISH's user properties: %v", ack.Properties.User)
	}
}

// mochi's warning about keep-alives of 5 s or less (0 included) reaches the log at
// Debug, never at Warn.
func TestKeepAliveWarningDemoted(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			var logs syncBuffer
			b, iss := startBroker(t, func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))
			})
			connectRaw(t, b, iss, 0)
			const msg = "client keepalive is below minimum recommended value"
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, msg) && !strings.Contains(l, "level=DEBUG") {
					t.Errorf("keep-alive warning above Debug: %s", l)
				}
			}
			if level == slog.LevelDebug && !strings.Contains(logs.String(), msg) {
				t.Error("keep-alive warning missing at Debug")
			}
		})
	}
}
