package wire

import (
	"encoding/binary"
	"errors"
)

// ErrMalformed is returned for a packet that cannot be parsed.
var ErrMalformed = errors.New("malformed packet")

// AppendPublish appends an MQTT 5 PUBLISH (no properties) to dst.
func AppendPublish(dst []byte, topic string, qos byte, id uint16, payload []byte) []byte {
	return appendPublish(dst, V5, topic, qos, id, payload)
}

// AppendPublish311 appends an MQTT 3.1.1 PUBLISH to dst: the MQTT 5 layout
// without the properties length.
func AppendPublish311(dst []byte, topic string, qos byte, id uint16, payload []byte) []byte {
	return appendPublish(dst, V311, topic, qos, id, payload)
}

func appendPublish(dst []byte, version byte, topic string, qos byte, id uint16, payload []byte) []byte {
	n := 2 + len(topic) + len(payload) // topic length, topic, payload
	if version == V5 {
		n++ // properties length (0)
	}
	if qos > 0 {
		n += 2
	}
	dst = append(dst, TypePublish<<4|qos<<1)
	dst = appendLength(dst, n)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(topic)))
	dst = append(dst, topic...)
	if qos > 0 {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	if version == V5 {
		dst = append(dst, 0)
	}
	return append(dst, payload...)
}

// AppendPuback appends a successful PUBACK for packet id to dst.
func AppendPuback(dst []byte, id uint16) []byte {
	return append(dst, TypePuback<<4, 2, byte(id>>8), byte(id))
}

func appendLength(dst []byte, n int) []byte {
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

// Publish is a parsed PUBLISH; its slices alias the frame body.
type Publish struct {
	Topic   []byte
	QoS     byte
	ID      uint16
	Payload []byte
}

// ParsePublish parses an MQTT 5 PUBLISH frame (flags and body).
func ParsePublish(flags byte, body []byte) (Publish, error) {
	return parsePublish(V5, flags, body)
}

// ParsePublish311 parses an MQTT 3.1.1 PUBLISH frame (no properties).
func ParsePublish311(flags byte, body []byte) (Publish, error) {
	return parsePublish(V311, flags, body)
}

// ParsePublish parses a PUBLISH frame in the connection's protocol version.
func (c *Conn) ParsePublish(f Frame) (Publish, error) {
	return parsePublish(c.version, f.Flags, f.Body)
}

func parsePublish(version byte, flags byte, body []byte) (Publish, error) {
	p := Publish{QoS: (flags >> 1) & 3}
	if p.QoS > 2 || len(body) < 2 {
		return p, ErrMalformed
	}
	tl := int(binary.BigEndian.Uint16(body))
	off := 2 + tl
	if off > len(body) {
		return p, ErrMalformed
	}
	p.Topic = body[2:off]
	if p.QoS > 0 {
		if off+2 > len(body) {
			return p, ErrMalformed
		}
		p.ID = binary.BigEndian.Uint16(body[off:])
		off += 2
	}
	if version != V5 {
		p.Payload = body[off:]
		return p, nil
	}
	pl, n, ok := uvarint(body[off:])
	if !ok || off+n+pl > len(body) {
		return p, ErrMalformed
	}
	p.Payload = body[off+n+pl:]
	return p, nil
}

// ParsePuback returns a PUBACK's packet id and reason code.
func ParsePuback(body []byte) (uint16, byte, error) {
	if len(body) < 2 {
		return 0, 0, ErrMalformed
	}
	id := binary.BigEndian.Uint16(body)
	if len(body) == 2 {
		return id, 0, nil
	}
	return id, body[2], nil
}

// uvarint decodes an MQTT variable byte integer (at most 4 bytes).
func uvarint(b []byte) (val, n int, ok bool) {
	mult := 1
	for i := 0; i < 4 && i < len(b); i++ {
		val += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return val, i + 1, true
		}
		mult *= 128
	}
	return 0, 0, false
}

// Write appends raw packet bytes to the output buffer (flushed by Flush or when the
// buffer fills).
func (c *Conn) Write(b []byte) error {
	_, err := c.w.Write(b)
	return err
}

// WritePublish buffers one PUBLISH.
func (c *Conn) WritePublish(topic string, qos byte, id uint16, payload []byte) error {
	c.out = appendPublish(c.out[:0], c.version, topic, qos, id, payload)
	_, err := c.w.Write(c.out)
	return err
}
