package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"imb/loadtest/hist"
	"imb/loadtest/wire"
)

// subscriber is one receiving client of a traffic scenario. Its reader goroutine
// alone records into lat; the counters are read by the monitor.
type subscriber struct {
	conn      *wire.Conn
	delivered atomic.Int64
	last      atomic.Int64 // ns since base of the latest delivery
	lat       hist.Histogram
	done      chan struct{}
}

// publisher is one sending client: a writer (publish) and a reader of PUBACKs
// that frees slots of its QoS 1 window.
type publisher struct {
	conn    *wire.Conn
	topic   string
	sent    atomic.Int64
	acked   atomic.Int64
	lastAck atomic.Int64
	window  chan struct{}
	done    chan struct{}
	// offset delays a paced publisher's first message, so that many publishers
	// at one rate do not all send in the same instant.
	offset time.Duration
}

// read consumes deliveries: records latency from the payload's timestamp and
// acknowledges QoS 1, flushing acknowledgements when no more input is buffered.
func (s *subscriber) read(e *runEnv, qos byte, closing *atomic.Bool) {
	defer close(s.done)
	var ack []byte
	for {
		f, err := s.conn.ReadFrame()
		if err != nil {
			if !closing.Load() {
				e.errs.add("subscriber: " + classify(err))
			}
			return
		}
		switch f.Type {
		case wire.TypePublish:
			p, err := s.conn.ParsePublish(f)
			if err != nil {
				e.errs.add("subscriber: malformed publish")
				continue
			}
			now := time.Since(e.base)
			if len(p.Payload) >= 8 {
				s.lat.Record(now - time.Duration(binary.BigEndian.Uint64(p.Payload)))
			}
			s.delivered.Add(1)
			s.last.Store(int64(now))
			if p.QoS > 0 {
				ack = wire.AppendPuback(ack[:0], p.ID)
				if err := s.conn.Write(ack); err != nil {
					return
				}
			}
		case wire.TypeDisconnect:
			e.errs.add(fmt.Sprintf("subscriber: disconnect 0x%02x", wire.DisconnectCode(f.Body)))
			return
		}
		if !s.conn.Buffered() {
			if err := s.conn.Flush(); err != nil {
				return
			}
		}
	}
}

// read consumes PUBACKs, freeing window slots.
func (p *publisher) read(e *runEnv, closing *atomic.Bool) {
	defer close(p.done)
	for {
		f, err := p.conn.ReadFrame()
		if err != nil {
			if !closing.Load() {
				e.errs.add("publisher: " + classify(err))
			}
			return
		}
		switch f.Type {
		case wire.TypePuback:
			_, code, err := wire.ParsePuback(f.Body)
			switch {
			case err != nil:
				e.errs.add("publisher: malformed puback")
			case code >= 0x80:
				e.errs.add(fmt.Sprintf("puback 0x%02x", code))
			default:
				p.acked.Add(1)
				p.lastAck.Store(int64(time.Since(e.base)))
			}
			select {
			case <-p.window:
			default:
			}
		case wire.TypeDisconnect:
			e.errs.add(fmt.Sprintf("publisher: disconnect 0x%02x", wire.DisconnectCode(f.Body)))
			return
		}
	}
}

// publish sends until ctx ends or the message budget is spent. At QoS 1 at most
// o.Inflight publishes are unacknowledged; rate (messages/s, 0: unpaced) paces
// the publisher.
func (p *publisher) publish(ctx context.Context, e *runEnv, qos byte, rate float64) {
	o := e.o
	payload := make([]byte, o.Payload)
	for i := 8; i < len(payload); i++ {
		payload[i] = 'x'
	}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	next := time.Now().Add(p.offset)
	if interval > 0 && p.offset > 0 {
		next = next.Add(-interval) // the loop adds one interval before the first message
	}
	var id uint16
	defer func() { _ = p.conn.Flush() }()
	for n := 0; o.Messages == 0 || n < o.Messages; n++ {
		if ctx.Err() != nil {
			return
		}
		if qos > 0 {
			select {
			case p.window <- struct{}{}:
			default:
				if p.conn.Flush() != nil {
					return
				}
				select {
				case p.window <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				if p.conn.Flush() != nil {
					return
				}
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
		}
		id++
		if id == 0 {
			id = 1
		}
		binary.BigEndian.PutUint64(payload, uint64(time.Since(e.base)))
		if err := p.conn.WritePublish(p.topic, qos, id, payload); err != nil {
			e.errs.add("publisher: " + classify(err))
			return
		}
		p.sent.Add(1)
	}
}
