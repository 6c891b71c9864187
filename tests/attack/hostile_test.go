package attack

import (
	"imb/internal/mqtttest"

	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"imb/broker"
)

// connectDeadline is the short CONNECT deadline of the hostile-traffic broker.
const connectDeadline = time.Second

// legit is a thing publishing QoS 1 telemetry to the fleet app for the whole
// duration of an attack; it counts what was acknowledged and what arrived.
type legit struct {
	stop      chan struct{}
	done      chan struct{}
	published atomic.Int64
	failed    atomic.Int64
}

func startLegit(t *testing.T, e *env) (*legit, *v5) {
	t.Helper()
	app := e.fleet(t)
	if codes := app.subscribe(t, 1, "things/+/telemetry/#"); codes == nil || codes[0] != 1 {
		t.Fatalf("fleet subscribe: %x", codes)
	}
	t1 := e.thing(t, "t1")
	l := &legit{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if t1.publish(t, "things/t1/telemetry/seq", 1, false, fmt.Sprint(i)) == 0 {
				l.published.Add(1)
			} else {
				l.failed.Add(1)
			}
		}
	}()
	return l, app
}

// finish stops publishing and checks that every acknowledged message arrived.
func (l *legit) finish(t *testing.T, app *v5) {
	t.Helper()
	close(l.stop)
	<-l.done
	if l.failed.Load() > 0 {
		t.Errorf("legitimate publisher: %d publishes failed during the attack", l.failed.Load())
	}
	n := l.published.Load()
	if n == 0 {
		t.Fatal("legitimate publisher published nothing during the attack")
	}
	waitFor(t, fmt.Sprintf("%d legitimate messages at the fleet app", n), func() bool {
		return int64(len(app.inbox.find("things/t1/telemetry/seq"))) >= n
	})
	t.Logf("legitimate client: %d QoS 1 messages published and received during the attack", n)
}

// footprint is the process's live heap and goroutine count after a GC.
func footprint() (heap uint64, goroutines int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, runtime.NumGoroutine()
}

// hostile is one kind of hostile traffic: it opens connections, sends what it
// sends, and returns them for the checks (every one must end within the deadline).
type hostile struct {
	name     string
	property string
	conns    int
	send     func(t *testing.T, e *env, c net.Conn, i int)
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func hostileCases(token string) []hostile {
	connect := func(t *testing.T, keepalive uint16) []byte {
		pk := mqtttest.ConnectPacket("h1", token)
		pk.Connect.Keepalive = keepalive
		return mqtttest.Encode(t, pk)
	}
	write := func(c net.Conn, b []byte) {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(b)
	}
	return []hostile{
		{"random bytes instead of CONNECT", "garbage never becomes a session", 100, func(t *testing.T, _ *env, c net.Conn, i int) {
			write(c, randomBytes(1+mrand.IntN(4096)))
		}},
		{"CONNECT header with random body", "a CONNECT that does not parse is refused", 100, func(t *testing.T, _ *env, c net.Conn, i int) {
			body := randomBytes(20 + mrand.IntN(200))
			write(c, append([]byte{0x10, byte(len(body))}, body...))
		}},
		{"truncated CONNECT, then silence", "a half-sent CONNECT is closed at the connect deadline", 60, func(t *testing.T, _ *env, c net.Conn, i int) {
			full := connect(t, 30)
			write(c, full[:1+i%(len(full)-1)])
		}},
		{"valid CONNECT, truncated PUBLISH, then silence", "keep-alive ends a half-sent packet", 40, func(t *testing.T, _ *env, c net.Conn, i int) {
			pub := mqtttest.Encode(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7,
				TopicName: "things/h1/telemetry/x", Payload: randomBytes(100)})
			write(c, append(connect(t, 1), pub[:1+i%(len(pub)-1)]...))
		}},
		{"valid CONNECT, then random bytes", "garbage after CONNECT ends the connection, not the broker", 60, func(t *testing.T, _ *env, c net.Conn, i int) {
			write(c, append(connect(t, 1), randomBytes(1+mrand.IntN(2048))...))
		}},
		{"CONNECT over the maximum packet size", "an oversize packet is refused from its fixed header", 20, func(t *testing.T, _ *env, c net.Conn, i int) {
			write(c, []byte{0x10, 0xff, 0xff, 0xff, 0x7f}) // remaining length 268,435,455, no body
		}},
		{"PUBLISH over the maximum packet size after CONNECT", "oversize packets end the connection before the body is read", 20, func(t *testing.T, _ *env, c net.Conn, i int) {
			write(c, append(connect(t, 30), 0x30, 0x80, 0x80, 0x80, 0x01)) // 2 MiB declared
		}},
		{"slowloris: CONNECT one byte at a time", "the connect deadline bounds a slow CONNECT", 50, func(t *testing.T, _ *env, c net.Conn, i int) {
			full := connect(t, 30)
			go func() {
				for _, b := range full {
					time.Sleep(300 * time.Millisecond)
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
		}},
		{"slowloris: nothing at all", "an idle socket is closed at the connect deadline", 100, func(*testing.T, *env, net.Conn, int) {}},
		{"flood: 500 connections from one address", "a flood of bad CONNECTs and idle sockets leaves others unaffected", 500, func(t *testing.T, _ *env, c net.Conn, i int) {
			if i%2 == 0 {
				write(c, mqtttest.Encode(t, mqtttest.ConnectPacket(fmt.Sprintf("flood-%d", i), "forged.token.value")))
			}
		}},
	}
}

func TestHostileTraffic(t *testing.T) {
	p := newIDP(t)
	e := newEnv(t, p, func(c *broker.Config) { c.ConnectDeadline = connectDeadline })
	l, app := startLegit(t, e)
	heap0, g0 := footprint()
	tried := 0
	for _, h := range hostileCases(p.token("h1", "publish")) {
		t.Run(h.name, func(t *testing.T) {
			t.Logf("protects: %s", h.property)
			conns := make([]net.Conn, 0, h.conns)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for i := 0; i < h.conns; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
					if err != nil {
						t.Errorf("dial %d: %v", i, err)
						return
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
					h.send(t, e, c, i)
				}(i)
			}
			wg.Wait()
			tried += len(conns)
			// Every connection must be ended by the broker: the connect deadline,
			// keep-alive (1 s × 1.5) or a protocol error, well within 10 s.
			var open atomic.Int64
			var cw sync.WaitGroup
			for _, c := range conns {
				cw.Add(1)
				go func(c net.Conn) {
					defer cw.Done()
					defer c.Close()
					if !closedWithin(c, 10*time.Second) {
						open.Add(1)
					}
				}(c)
			}
			cw.Wait()
			if n := open.Load(); n > 0 {
				t.Fatalf("%d of %d hostile connections still open after 10 s", n, len(conns))
			}
		})
	}
	l.finish(t, app)

	// The broker is still up for newcomers.
	late := e.thing(t, "t3")
	barrier(t, late, app, "things/t3/telemetry/after-attacks")

	// Resources return to the baseline: nothing per hostile connection is kept.
	var heap1 uint64
	var g1 int
	waitFor(t, "goroutines back near the baseline", func() bool {
		heap1, g1 = footprint()
		return g1 <= g0+10
	})
	if heap1 > heap0+64<<20 {
		t.Errorf("heap in use grew from %d to %d bytes after %d hostile connections", heap0, heap1, tried)
	}
	t.Logf("hostile traffic: %d connections over %d kinds; goroutines %d -> %d, heap in use %d KiB -> %d KiB",
		tried, len(hostileCases("")), g0, g1, heap0>>10, heap1>>10)
}

// closedWithin reports whether the peer closes c within d, discarding what it sends.
func closedWithin(c net.Conn, d time.Duration) bool {
	return mqtttest.Wrap(nil, c).ClosedWithin(d)
}
