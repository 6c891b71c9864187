package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"

	"imb/internal/wsconn"
)

// listener serves MQTT connections from any net.Listener. It replaces mochi's own
// listeners for two reasons: every accepted connection gets a deadline for its
// CONNECT (mochi sets none, so an idle socket would hold two goroutines forever),
// and a refused connection is logged at Debug, not as an empty Warn line per attempt.
type listener struct {
	id       string
	protocol string
	ln       net.Listener
	deadline time.Duration
	log      *slog.Logger
	once     sync.Once
	// recovered cleans up after a connection whose handling panicked inside mochi
	// (its packet decoders index past the end of some malformed packets).
	recovered func(conn net.Conn, cause any)
	// closeClients disconnects this listener's clients on Close.
	closeClients func(listenerID string)
	// limit is the Maximum Packet Size its connections enforce.
	limit *packetLimit
	// gate bounds the connections waiting for their CONNACK (shared by all
	// listeners); nil: no bound.
	gate *pendingGate

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // connections being served
	wg     sync.WaitGroup        // their goroutines
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id, protocol string, ln net.Listener, deadline time.Duration, limit *packetLimit, gate *pendingGate, recovered func(net.Conn, any), closeClients func(string)) *listener {
	return &listener{id: id, protocol: protocol, ln: ln, deadline: deadline, limit: limit, gate: gate, recovered: recovered,
		closeClients: closeClients, conns: map[net.Conn]struct{}{}}
}

func (l *listener) ID() string       { return l.id }
func (l *listener) Address() string  { return l.ln.Addr().String() }
func (l *listener) Protocol() string { return l.protocol }

func (l *listener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

// Serve accepts until the listener is closed. mochi replaces the deadline set here
// with its keep-alive deadline once CONNECT has been read.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var delay time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return
		}
		delay = 0
		var release func()
		if l.gate != nil {
			var limit string
			if release, limit = l.gate.acquire(conn.RemoteAddr()); limit != "" {
				// Closed before any byte is read: the cheapest answer to a flood.
				l.log.Debug("connection refused: too many waiting for CONNACK", "listener", l.id,
					"remote", conn.RemoteAddr().String(), "limit", limit)
				_ = conn.Close()
				continue
			}
		}
		if l.deadline > 0 {
			_ = conn.SetDeadline(time.Now().Add(l.deadline))
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = conn.Close()
			if release != nil {
				release()
			}
			return
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer func() {
				l.mu.Lock()
				delete(l.conns, conn)
				l.mu.Unlock()
				l.wg.Done()
			}()
			if err := serveConn(establish, l.id, conn, l.limit, release, l.log, l.recovered); err != nil {
				l.log.Debug("connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

// Close stops accepting and disconnects the listener's clients. mochi's own
// closeListenerClients is not used: it takes the clients' read lock twice
// (GetByListener, then Len inside it), which deadlocks against a client
// disconnecting at the same moment.
// serveConn runs one connection through mochi. One client's malformed packet must
// not take the broker down for all: mochi handles the whole connection in this
// goroutine, so a panic in its packet decoders is recovered here, the connection
// closed and recovered called to finish the session's bookkeeping.
func serveConn(establish listeners.EstablishFn, id string, conn net.Conn, limit *packetLimit, release func(), log *slog.Logger, recovered func(net.Conn, any)) (err error) {
	sc := newServedConn(conn, limit, release)
	conn = sc
	defer close(sc.ended) // runs last: after mochi's handler and any recovery
	defer sc.answered()   // a connection that ends without a CONNACK is no longer pending
	defer func() {
		if r := recover(); r != nil {
			_ = conn.Close()
			log.Error("connection handler panicked; connection closed", "listener", id,
				"remote", conn.RemoteAddr().String(), "panic", fmt.Sprint(r))
			if recovered != nil {
				recovered(conn, r)
			}
			err = fmt.Errorf("connection handler panicked: %v", r)
		}
	}()
	return establish(id, conn)
}

// Close returns only when every connection it accepted has been handled to its
// end, so that no new client registers with mochi (ClientsWg.Add) while mochi's
// Close already waits on that group (a data race, and a client missed).
func (l *listener) Close(mochiClose listeners.CloseFn) {
	l.once.Do(func() {
		_ = l.ln.Close()
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		if l.closeClients != nil {
			l.closeClients(l.id)
		} else {
			mochiClose(l.id)
		}
		// Connections still before or inside CONNECT have no client to disconnect.
		l.mu.Lock()
		for c := range l.conns {
			_ = c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
}

// wsListener turns WebSocket connections (subprotocol "mqtt", binary frames) into a
// net.Listener, so that the same listener type serves them. Tokens over WebSocket
// travel in CONNECT like on TCP: HTTP headers are not consulted.
type wsListener struct {
	ln     net.Listener
	srv    *http.Server
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newWSListener(ln net.Listener, tlsConfig *tls.Config, allowedOrigins []string, deadline time.Duration) *wsListener {
	w := &wsListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	up := websocket.Upgrader{
		Subprotocols:    []string{"mqtt"},
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		CheckOrigin: func(r *http.Request) bool {
			origin := r.Header.Get("Origin")
			if origin == "" || len(allowedOrigins) == 0 {
				return true // not a browser, or no browser restriction configured
			}
			for _, o := range allowedOrigins {
				if o == "*" || o == origin {
					return true
				}
			}
			return false
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(rw, r, nil)
		if err != nil {
			return // the upgrader has answered with an HTTP error
		}
		conn := wsconn.New(c)
		select {
		case w.conns <- conn:
		case <-w.done:
			_ = conn.Close()
		}
	})
	w.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: deadline,
		TLSConfig:         tlsConfig,
	}
	go func() {
		if tlsConfig != nil {
			_ = w.srv.Serve(tls.NewListener(ln, tlsConfig))
			return
		}
		_ = w.srv.Serve(ln)
	}()
	return w
}

func (w *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-w.conns:
		return c, nil
	case <-w.done:
		return nil, net.ErrClosed
	}
}

func (w *wsListener) Close() error {
	w.closed.Do(func() {
		close(w.done)
		_ = w.srv.Close()
	})
	return nil
}

func (w *wsListener) Addr() net.Addr { return w.ln.Addr() }
