package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Messages cross the engine as MQTT 5 PUBLISH packets, encoded and decoded by
// mochi's own codec, so that every property (user properties, content type,
// response topic, correlation data, payload format, message expiry) arrives as it
// was published, with no format of our own to keep in step.

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encode writes pk as a v5 PUBLISH. A topic alias means nothing on another node,
// and the message expiry becomes what is left of it now.
func encode(pk packets.Packet, now time.Time) ([]byte, error) {
	return encodeID(pk, now, 1) // the codec requires an id at QoS > 0; nobody acknowledges it
}

// encodeWithID is encode keeping the packet id: a message queued for a session,
// which its subscriber acknowledges by that id.
func encodeWithID(pk packets.Packet, now time.Time) ([]byte, error) {
	return encodeID(pk, now, pk.PacketID)
}

func encodeID(pk packets.Packet, now time.Time, id uint16) ([]byte, error) {
	out := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain},
		TopicName:       pk.TopicName,
		Payload:         pk.Payload,
		Properties:      pk.Properties,
		ProtocolVersion: 5,
	}
	out.Mods.AllowResponseInfo = true // else mochi's codec leaves out the response topic
	out.Properties.TopicAlias = 0
	out.Properties.TopicAliasFlag = false
	out.Properties.SubscriptionIdentifier = nil
	if out.FixedHeader.Qos > 0 {
		out.PacketID = id
	}
	if pk.Expiry > 0 {
		left := pk.Expiry - now.Unix()
		if left < 1 {
			left = 1
		}
		out.Properties.MessageExpiryInterval = uint32(left)
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if err := out.PublishEncode(buf); err != nil {
		return nil, fmt.Errorf("cluster: encode publish to %q: %w", pk.TopicName, err)
	}
	return bytes.Clone(buf.Bytes()), nil
}

// errNotPublish is a message from the engine that is not a PUBLISH packet.
var errNotPublish = errors.New("cluster: not a PUBLISH packet")

// decode reads a packet encode wrote. It trusts nothing: a malformed message is an
// error, never a panic.
func decode(b []byte) (pk packets.Packet, err error) {
	if len(b) < 2 {
		return pk, errNotPublish
	}
	if err := pk.FixedHeader.Decode(b[0]); err != nil {
		return pk, fmt.Errorf("cluster: decode: %w", err)
	}
	if pk.FixedHeader.Type != packets.Publish {
		return pk, errNotPublish
	}
	r := bytes.NewReader(b[1:])
	n, used, err := packets.DecodeLength(r)
	if err != nil {
		return pk, fmt.Errorf("cluster: decode length: %w", err)
	}
	rest := b[1+used:]
	if n != len(rest) {
		return pk, fmt.Errorf("cluster: decode: length %d, have %d bytes", n, len(rest))
	}
	pk.FixedHeader.Remaining = n
	pk.ProtocolVersion = 5
	if err := pk.PublishDecode(rest); err != nil {
		return pk, fmt.Errorf("cluster: decode publish: %w", err)
	}
	if pk.TopicName == "" {
		return pk, errors.New("cluster: decode: publish without a topic")
	}
	return pk, nil
}
