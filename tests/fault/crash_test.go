package fault

import (
	"io"
	"testing"
	"time"

	"imb/internal/freeport"
	"imb/internal/issuer"
)

// TestMalformedPacketsDoNotKillTheBroker sends, after a valid CONNECT, packets that
// fuzzing found to crash the packet decoder, to `imb serve` running as a process: a
// panic there would end the whole broker for every client, so it is observed from
// outside. The broker must close that one connection and keep serving.
func TestMalformedPacketsDoNotKillTheBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the imb binary")
	}
	bin := buildIMB(t)
	iss := startIssuer(t)
	policy := writePolicy(t, t.TempDir())
	token := iss.Mint(issuer.Claims{"sub": "t1", "scope": []string{"publish", "subscribe"}}, time.Hour)
	cases := []struct {
		name   string
		packet []byte
	}{
		// FuzzAfterConnect: remaining length 7 ends inside the topic filter's
		// subscription options; mochi v2.7.9 packets.SubscribeDecode indexes past the
		// end (index out of range [7] with length 7).
		{"SUBSCRIBE without the options byte of its last filter", []byte("\x82\x07\x00\x01\x00\x00\x02#\x01")},
		{"SUBSCRIBE whose 21-byte filter ends the packet", []byte("\x82\x1a00\x00\x00\x1500006000000000000000$")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := freeport.MustAddrs(t, 1)[0]
			proc := startServe(t, bin, "--mqtt-addr", addr, "--admin-addr", "", "--policy", policy,
				"--issuer", iss.URL(), "--audience", "imb", "--log-level", "error")
			conn, err := rawConnect(addr, "t1", token)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.ReadFull(conn, make([]byte, 2)); err != nil {
				t.Fatalf("CONNACK: %v", err)
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write(c.packet)
			_, _ = io.Copy(io.Discard, conn) // until the broker closes it, or 5 s
			select {
			case <-proc.exited:
				t.Fatalf("imb serve died on %x:\n%s", c.packet, tail(proc.stderr.String(), 2000))
			case <-time.After(500 * time.Millisecond):
			}
			if r := dial(t, addr, "t1", token, true, 0); r.code() != 0 {
				t.Fatalf("broker not serving after %x: CONNACK %d (%v)", c.packet, r.code(), r.err)
			}
		})
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
