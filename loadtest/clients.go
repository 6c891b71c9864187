package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"imb/loadtest/wire"
)

// runEnv is what a scenario run needs.
type runEnv struct {
	target string
	addr   string
	tokens map[string]string // by subject; nil: anonymous clients
	o      Options
	proc   *brokerProc // nil when the broker is not the harness's child
	errs   *errorCounts
	// upstream counts introspection requests the token issuer received (nil:
	// none to count).
	upstream func() int64
	progress io.Writer
	label    string
	base     time.Time // payload timestamps are nanoseconds since base (monotonic)
	// A cluster run (cluster.go): every node's address and process, and the node
	// client i dials.
	addrs   []string
	nodeOf  func(i int) int
	pidList []int
}

func (e *runEnv) pid() int {
	if e.proc == nil {
		return 0
	}
	return e.proc.Pid()
}

// pids are the broker processes whose CPU and memory the run adds up.
func (e *runEnv) pids() []int {
	if e.pidList != nil {
		return e.pidList
	}
	if p := e.pid(); p > 0 {
		return []int{p}
	}
	return nil
}

func (e *runEnv) upstreamCalls() int64 {
	if e.upstream == nil {
		return 0
	}
	return e.upstream()
}

// connectTimeout bounds one CONNECT/CONNACK exchange; introspection queues under
// a storm can take seconds, and slowness is measured, not failed.
const connectTimeout = 60 * time.Second

// errConnack is a refused CONNECT.
type errConnack byte

func (e errConnack) Error() string { return fmt.Sprintf("connack 0x%02x", byte(e)) }

// dialConnect opens one client connection for subject id and completes CONNECT.
// i spreads source addresses.
func (e *runEnv) dialConnect(ctx context.Context, id string, i int, bufSize int) (*wire.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	v := e.o.mqttVersion(e.target)
	addr := e.addr
	if e.nodeOf != nil {
		addr = e.addrs[e.nodeOf(i)]
	}
	c, err := wire.Dial(ctx, addr, wire.Options{ReadBuffer: bufSize, WriteBuffer: bufSize, LocalAddr: sourceIP(addr, i), Version: v})
	if err != nil {
		return nil, err
	}
	co := wire.ConnectOptions{ClientID: id, Password: e.tokens[id]}
	if v == wire.V311 && co.Password != "" {
		// 3.1.1 carries a password only with a username: the subject, which is
		// what imb's optional username binding wants and the others ignore.
		co.Username = id
	}
	code, err := c.Connect(ctx, co)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	if code != 0 {
		_ = c.Close()
		return nil, errConnack(code)
	}
	return c, nil
}

// classify names an error for the error counts, without addresses or token
// material, so that equal failures add up.
func classify(err error) string {
	var ca errConnack
	var de *wire.DisconnectError
	var ne net.Error
	switch {
	case errors.As(err, &ca):
		return ca.Error()
	case errors.As(err, &de):
		return fmt.Sprintf("disconnect 0x%02x", de.Code)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "out of file descriptors"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by broker"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrPacketTooLarge):
		return "malformed packet"
	default:
		return "other: " + err.Error()
	}
}
