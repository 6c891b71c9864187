package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPicksDistinctBindablePorts: the addresses are distinct and each can be
// bound right after.
func TestPicksDistinctBindablePorts(t *testing.T) {
	addrs := MustAddrs(t, 8)
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s picked twice in %v", a, addrs)
		}
		seen[a] = true
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("bind %s: %v", a, err)
		}
		_ = ln.Close()
	}
	p := MustPort(t)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil || p == 0 {
		t.Fatalf("port %d: %v", p, err)
	}
	_ = ln.Close()
}
