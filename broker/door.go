package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"imb/hooks"
	"imb/httpdoor"
)

// The HTTP door (http_addr, https_addr; docs/http.md) relays each request as the caller over an
// MQTT 5 connection made in this process: a net.Pipe whose broker end is accepted by an inline
// listener ("http") like any MQTT listener's connection, so that the CONNECT deadline, the
// pending-CONNECT bounds (by the HTTP client's address), the packet limit and the identity hook
// all apply to it unchanged.

// door is the HTTP door's listener and servers.
type door struct {
	pipes   *pipeListener
	servers []*http.Server
	wg      sync.WaitGroup
}

// pipeListener is a net.Listener of in-process connections.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept implements net.Listener.
func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (p *pipeListener) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

// Addr implements net.Listener.
func (p *pipeListener) Addr() net.Addr { return pipeAddr("http-door") }

// dial hands the broker one end of a new pipe and returns the other. remote, the HTTP client's
// address, becomes the broker end's RemoteAddr.
func (p *pipeListener) dial(ctx context.Context, remote string) (net.Conn, error) {
	client, server := net.Pipe()
	var addr net.Addr = pipeAddr(remote)
	if ap, err := net.ResolveTCPAddr("tcp", remote); err == nil {
		addr = ap
	}
	select {
	case p.conns <- remoteConn{Conn: server, remote: addr, proven: hooks.ProvenFrom(ctx)}:
		return client, nil
	case <-ctx.Done():
	case <-p.done:
	}
	_ = client.Close()
	_ = server.Close()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("http door: %w", ctx.Err())
	}
	return nil, fmt.Errorf("http door: %w", net.ErrClosed)
}

// pipeAddr is the address of an in-process connection end.
type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

// remoteConn is the broker's end of a door connection, with the HTTP client's address.
type remoteConn struct {
	net.Conn
	remote net.Addr
	proven hooks.Proven // what the HTTP request proved: DPoP key, client certificate
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

// listenDoor starts the HTTP door when http_addr or https_addr is configured.
func (b *Broker) listenDoor(gate *pendingGate, tlsConf *tls.Config) error {
	httpLn, httpsLn := b.bound["http"], b.bound["https"]
	if httpLn == nil && httpsLn == nil {
		return nil
	}
	delete(b.bound, "http")
	delete(b.bound, "https")
	d := &door{pipes: newPipeListener()}
	if err := b.server.AddListener(newListener(hooks.DoorListener, "http", d.pipes, b.cfg.ConnectDeadline, b.packetLimit(), gate, b.recovered, b.closeClients)); err != nil {
		return fmt.Errorf("http door: %w", err)
	}
	h, err := httpdoor.New(httpdoor.Config{
		Dial:          d.pipes.dial,
		MaxPacketSize: int(b.cfg.MaxPacketSize),
		Timeout:       b.cfg.ValidateTimeout + 5*time.Second, // validation, then the PUBACK
		Logger:        b.log.With("component", "httpdoor"),
	})
	if err != nil {
		return err
	}
	serve := func(id string, ln net.Listener, conf *tls.Config) {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: b.cfg.ConnectDeadline,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			TLSConfig:         conf,
			// TLS handshake failures and the like: per client noise, not operational errors.
			ErrorLog: slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		}
		d.servers = append(d.servers, srv)
		b.addrs[id] = ln.Addr().String()
		if conf != nil {
			ln = tls.NewListener(ln, conf)
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				b.log.Error("http door stopped", "listener", id, "error", err)
			}
		}()
	}
	if httpLn != nil {
		serve("http", httpLn, nil)
	}
	if httpsLn != nil {
		serve("https", httpsLn, tlsConf)
	}
	b.door = d
	return nil
}

// closeDoor stops the HTTP servers; the door's MQTT connections end with the broker's clients.
func (b *Broker) closeDoor() {
	if b.door == nil {
		return
	}
	for _, s := range b.door.servers {
		_ = s.Close()
	}
	b.door.wg.Wait()
}
