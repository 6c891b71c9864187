package attack

import (
	"imb/internal/mqtttest"

	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// fuzzBroker is a broker with the identity hook, fed connections in memory: each
// input is one client connection through mochi's real read loop and imb's hook.
type fuzzBroker struct {
	e     *env
	token string // valid token of t1 (publish, subscribe)
	obs   *v5    // observer subscribed to "#"
}

// newFuzzBroker starts the broker and the observer for the life of the fuzz target.
func newFuzzBroker(f *testing.F) *fuzzBroker {
	f.Helper()
	p := newIDP(f)
	// JWT validation alone: every token is judged locally, so an input never waits on
	// an introspection round trip and the fuzzer keeps its pace.
	e := newEnv(f, p, jwtOnly)
	return &fuzzBroker{e: e, token: p.token("t1", "publish", "subscribe"), obs: e.observer(f)}
}

// FuzzConnect feeds arbitrary bytes as the first packet of a connection. Nothing may
// crash or hang, and the broker may accept (CONNACK 0x00) only a CONNECT that carries
// the valid token.
func FuzzConnect(f *testing.F) {
	fb := newFuzzBroker(f)
	good := mqtttest.ConnectPacket("t1", fb.token)
	f.Add(mqtttest.Encode(f, good))
	auth := good
	auth.Connect.PasswordFlag, auth.Connect.Password = false, nil
	auth.Properties.AuthenticationMethod, auth.Properties.AuthenticationData = "OAUTH2-JWT", []byte(fb.token)
	f.Add(mqtttest.Encode(f, auth))
	will := good
	will.Connect.WillFlag, will.Connect.WillTopic, will.Connect.WillPayload = true, "things/t2/state", []byte("w")
	f.Add(mqtttest.Encode(f, will))
	f.Add(mqtttest.Encode(f, mqtttest.ConnectPacket("t2", fb.token)))
	f.Add(mqtttest.Encode(f, mqtttest.ConnectPacket("t1", "forged")))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, input []byte) {
		out := fb.feed(t, input)
		if connackCode(out) == 0 && !bytes.Contains(input, []byte(fb.token)) {
			t.Fatalf("CONNECT without the valid token accepted: input %x", input)
		}
		fb.checkObserver(t)
	})
}

// FuzzAfterConnect feeds arbitrary bytes after a valid CONNECT of t1: whatever the
// packets, nothing crashes or hangs and nothing outside t1's grants is delivered.
func FuzzAfterConnect(f *testing.F) {
	fb := newFuzzBroker(f)
	for _, s := range seedPackets(f, fb.token) {
		f.Add(s)
	}
	// A SUBSCRIBE whose options byte is missing: mochi v2.7.9's decoder indexes past
	// its end; the broker recovers per connection (it used to crash the process).
	f.Add([]byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x02, 0x23, 0x01})
	connect := mqtttest.Encode(f, mqtttest.ConnectPacket("t1", fb.token))
	f.Fuzz(func(t *testing.T, input []byte) {
		fb.feed(t, append(append([]byte{}, connect...), input...))
		fb.checkObserver(t)
	})
}

// feed writes input on a fresh in-memory connection, closes it, and returns what
// the broker wrote back. The broker must finish with the connection within 5 s.
func (fb *fuzzBroker) feed(t *testing.T, input []byte) []byte {
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- fb.e.b.ServeConn(server) }()
	out := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, io.LimitReader(client, 1<<20))
		out <- buf.Bytes()
	}()
	_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = client.Write(input)
	// Give the broker a moment to act on complete packets before the close.
	time.Sleep(time.Millisecond)
	_ = client.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("broker still holds the connection 5 s after it closed (input %x)", input)
	}
	return <-out
}

// connackCode reads the reason code of a CONNACK at the start of out, or -1.
func connackCode(out []byte) int {
	if len(out) < 4 || out[0] != 0x20 || out[1] < 2 || out[1] > 127 {
		return -1
	}
	return int(out[3])
}

// checkObserver fails on any delivered message outside what t1 may publish.
func (fb *fuzzBroker) checkObserver(t *testing.T) {
	t.Helper()
	fb.obs.inbox.mu.Lock()
	defer fb.obs.inbox.mu.Unlock()
	for _, m := range fb.obs.inbox.msgs {
		if !strings.HasPrefix(m.topic, "things/t1/telemetry/") && m.topic != "things/t1/state" && m.topic != "things/t1/status" {
			t.Fatalf("ESCAPE: a fuzzed connection got %q delivered", m.topic)
		}
	}
}

// seedPackets are valid packets to start mutating from.
func seedPackets(t testing.TB, token string) [][]byte {
	pub := func(topic string, qos byte, retain bool, alias uint16) []byte {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
			TopicName: topic, Payload: []byte("p")}
		if qos > 0 {
			pk.PacketID = 1
		}
		if alias > 0 {
			pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = alias, true
		}
		return mqtttest.Encode(t, pk)
	}
	sub := func(filter string) []byte {
		return mqtttest.Encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 2,
			Filters: packets.Subscriptions{{Filter: filter, Qos: 1}}})
	}
	return [][]byte{
		pub("things/t1/telemetry/a", 1, false, 0),
		pub("things/t2/telemetry/a", 0, false, 0),
		pub("things/t1/state", 1, true, 0),
		pub("things/t1/commands/x", 2, false, 0),
		pub("things/t1/telemetry/a", 1, false, 1),
		pub("", 0, false, 1),
		sub("things/t1/commands/#"),
		sub("$share/g/#"),
		sub("#"),
		{0xf0, 0x00}, // AUTH, empty
		mqtttest.Encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}),
	}
}
