// Package freeport picks loopback TCP ports that are free at the moment of
// asking, for tests and the load test, which must name a port before a node or a
// child process binds it. Another process may take the port in between: whoever
// starts on it retries with a new one when it is told "address already in use".
package freeport

import (
	"fmt"
	"net"
	"strconv"
	"testing"
)

// Addrs returns n distinct 127.0.0.1:PORT addresses free a moment ago. All n are
// held open together while picked, so that none is picked twice.
func Addrs(n int) ([]string, error) {
	out := make([]string, 0, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// Port returns one loopback port free a moment ago.
func Port() (int, error) {
	a, err := Addrs(1)
	if err != nil {
		return 0, err
	}
	_, p, _ := net.SplitHostPort(a[0])
	return strconv.Atoi(p)
}

// MustAddrs is Addrs for a test, which fails if the kernel has no port to give.
func MustAddrs(t testing.TB, n int) []string {
	t.Helper()
	a, err := Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// MustPort is Port for a test.
func MustPort(t testing.TB) int {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
