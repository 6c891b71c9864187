package fault

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"imb/broker"
	"imb/internal/issuer"
)

// rawConnect opens a connection and sends an MQTT 5 clean-start CONNECT; it does
// not wait for the CONNACK.
func rawConnect(addr, clientID, token string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
			ClientIdentifier: clientID, PasswordFlag: true, Password: []byte(token)},
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(buf.Bytes()); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// TestShutdownWhileClientsDisconnect stops the broker while clients connect and
// disconnect: Close must return. In mochi v2.7.9, Server.Close → listener Close →
// closeListenerClients → Clients.GetByListener takes the clients read lock and
// calls Clients.Len, which takes it again; a client ending at that moment queues
// Clients.Delete for the write lock in between, and the three wait on each other
// forever.
func TestShutdownWhileClientsDisconnect(t *testing.T) {
	iss := startIssuer(t)
	token := iss.Mint(issuer.Claims{"sub": "churn", "scope": []string{"publish"}}, time.Hour)
	const rounds, clients = 60, 150
	for round := 0; round < rounds; round++ {
		b := startBrokerNoCleanup(t, iss, func(c *broker.Config) { c.ClientIDBinding = []string{"*"} })
		conns := make([]net.Conn, 0, clients)
		for i := 0; i < clients; i++ {
			c, err := rawConnect(b.Addr("tcp"), fmt.Sprintf("c-%d", i), token)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 2)); err != nil { // CONNACK
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Every client ends abruptly while the broker shuts down.
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_ = c.Close()
			}()
		}
		closed := make(chan error, 1)
		go func() {
			<-start
			closed <- b.Close()
		}()
		close(start)
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Broker.Close did not return within 10 s while %d clients disconnected; stuck goroutines:\n%s",
				round, clients, stuckIn("(*Clients).GetByListener"))
		}
		wg.Wait()
	}
}

// startBrokerNoCleanup is startBroker for a test that closes the broker itself.
func startBrokerNoCleanup(t *testing.T, iss *issuer.Issuer, mod ...func(*broker.Config)) *broker.Broker {
	t.Helper()
	mod = append(mod, func(c *broker.Config) { c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", "" })
	return startBrokerWith(t, iss, false, mod...)
}

// stuckIn returns the stacks of the goroutines whose stack mentions fn, and how many
// goroutines wait in Clients.Delete for the write lock.
func stuckIn(fn string) string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	deletes := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			out = append(out, g)
		}
		if strings.Contains(g, "(*Clients).Delete") {
			deletes++
		}
	}
	return strings.Join(out, "\n\n") + fmt.Sprintf("\n\n(%d goroutines wait in Clients.Delete)", deletes)
}
