package fault

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"imb/internal/freeport"
	"imb/internal/issuer"
)

// messages is how many QoS 1 messages cross the SIGKILL.
const messages = 10_000

// buildIMB compiles the imb command into a temporary directory.
func buildIMB(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "imb")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "imb/cmd/imb").CombinedOutput()
	if err != nil {
		t.Fatalf("go build imb/cmd/imb: %v\n%s", err, out)
	}
	return bin
}

// imbProcess is `imb serve` running as a child process.
type imbProcess struct {
	cmd    *exec.Cmd
	stderr *lockedWriter
	exited chan struct{}
}

// startServe runs imb serve and waits for its "mqtt listening" line.
func startServe(t *testing.T, bin string, args ...string) *imbProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &imbProcess{cmd: cmd, stderr: &lockedWriter{w: &strings.Builder{}}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "imb: mqtt listening on") {
				once.Do(func() { close(up) })
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill() })
	select {
	case <-up:
	case <-p.exited:
		t.Fatalf("imb serve exited at start: %s", p.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("imb serve not listening after 20 s: %s", p.stderr.String())
	}
	return p
}

// kill sends SIGKILL to the process (by its pid) and waits for it to be gone.
func (p *imbProcess) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// lockedWriter keeps the first 64 KiB of the child's stderr (its debug log, for a
// failure report) and lets it be read while it is written.
type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 64<<10 - l.w.Len(); room > 0 {
		l.w.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// reconnecting is a client that dials again, same id and token, whenever a call
// fails; gen tells a stale failure from one already handled.
type reconnecting struct {
	t                *testing.T
	addr, id, token  string
	clean            bool
	expiry           uint32
	sink             *sink
	subscribeOnStart string

	mu       sync.Mutex
	c        *client
	gen      int
	resumed  atomic.Int64 // reconnects that found the session present
	restarts atomic.Int64
}

// get returns the current connection, dialling the first one.
func (r *reconnecting) get() (*client, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		r.dialLocked()
	}
	return r.c, r.gen
}

// fail replaces the connection of generation gen, unless that happened already.
func (r *reconnecting) fail(gen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen || r.t.Context().Err() != nil {
		return // handled already, or the test is over
	}
	r.c.close()
	r.restarts.Add(1)
	r.dialLocked()
}

// dialLocked dials until the broker accepts, for up to 30 s.
func (r *reconnecting) dialLocked() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := dialInto(r.t, r.addr, r.id, r.token, r.clean, r.expiry, r.sink)
		if c.err == nil {
			if c.ack.SessionPresent {
				r.resumed.Add(1)
			}
			r.c = c
			r.gen++
			return
		}
		c.close()
		if time.Now().After(deadline) {
			r.t.Errorf("%s: no connection within 30 s: %v", r.id, c.err)
			r.c = c
			r.gen++
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSIGKILLMidStreamLosesNoQoS1Message runs imb serve with --data, streams 10,000
// QoS 1 messages from a thing to a persistent-session subscriber, kills the broker
// with SIGKILL half-way, restarts it on the same port and data directory, and
// requires every acknowledged message to reach the subscriber (duplicates allowed).
func TestSIGKILLMidStreamLosesNoQoS1Message(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the imb binary and streams 10,000 messages")
	}
	bin := buildIMB(t)
	iss := startIssuer(t)
	data := t.TempDir()
	addr := freeport.MustAddrs(t, 1)[0]
	args := []string{"--data", data, "--mqtt-addr", addr, "--admin-addr", "", "--policy", writePolicy(t, t.TempDir()),
		"--issuer", iss.URL(), "--audience", "imb", "--log-level", "debug"}
	broker := startServe(t, bin, args...)
	began := time.Now()

	received := newSink()
	sub := &reconnecting{t: t, addr: addr, id: "cloud-app", expiry: 3600, sink: received,
		token: iss.Mint(issuer.Claims{"sub": "cloud-app", "scope": []string{"fleet:read"}}, time.Hour)}
	c, _ := sub.get()
	if c.err != nil {
		t.Fatal(c.err)
	}
	c.subscribe(t, "things/+/telemetry/#")
	// The subscriber only notices the dead broker when its connection drops.
	go func() {
		for {
			c, gen := sub.get()
			if c.c == nil {
				sub.fail(gen)
				continue
			}
			select {
			case <-c.c.Done():
				if why, ok := c.ended.Load().(error); ok && sub.restarts.Load() < 5 {
					t.Logf("subscriber connection ended: %v", why)
				}
				sub.fail(gen)
			case <-t.Context().Done():
				return
			}
		}
	}()

	pub := &reconnecting{t: t, addr: addr, id: "t1", clean: true, sink: newSink(),
		token: iss.Mint(issuer.Claims{"sub": "t1", "scope": []string{"publish"}}, time.Hour)}
	var acked atomic.Int64
	half := make(chan struct{})
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range next {
				for attempt := 0; ; attempt++ {
					c, gen := pub.get()
					if c.err == nil && c.publish("things/t1/telemetry/seq", fmt.Sprint(n)) {
						break
					}
					if attempt > 100 {
						t.Errorf("message %d: no acknowledgement after 100 attempts", n)
						return
					}
					pub.fail(gen)
				}
				if acked.Add(1) == messages/2 {
					close(half)
				}
			}
		}()
	}
	go func() {
		defer close(next)
		for n := 0; n < messages; n++ {
			select {
			case next <- n:
			case <-t.Context().Done():
				return
			}
		}
	}()
	select {
	case <-half:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d messages acknowledged in 60 s", acked.Load())
	}
	broker.kill()
	killedAt := acked.Load()
	broker = startServe(t, bin, args...)
	wg.Wait()
	if acked.Load() != messages {
		t.Fatalf("%d of %d messages acknowledged", acked.Load(), messages)
	}

	var lost []int
	waitForAll := time.Now().Add(20 * time.Second)
	for {
		lost = lost[:0]
		for n := 0; n < messages; n++ {
			if received.received(fmt.Sprint(n)) == 0 {
				lost = append(lost, n)
			}
		}
		if len(lost) == 0 || time.Now().After(waitForAll) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups := 0
	for n := 0; n < messages; n++ {
		if k := received.received(fmt.Sprint(n)); k > 1 {
			dups += k - 1
		}
	}
	t.Logf("SIGKILL at %d acknowledged messages: %d sent, %d lost, %d duplicates; subscriber reconnected %d time(s), session present %d time(s); publisher reconnected %d time(s); %s",
		killedAt, messages, len(lost), dups, sub.restarts.Load(), sub.resumed.Load(), pub.restarts.Load(), time.Since(began).Round(time.Millisecond))
	if sub.restarts.Load() == 0 || sub.resumed.Load() == 0 {
		t.Errorf("the subscriber did not resume its session after the restart")
	}
	if len(lost) > 0 {
		log := broker.stderr.String()
		if len(log) > 4000 {
			log = log[:4000]
		}
		t.Logf("restarted broker's log (start):\n%s", log)
		show := lost
		if len(show) > 20 {
			show = show[:20]
		}
		t.Fatalf("%d of %d acknowledged QoS 1 messages lost across SIGKILL, e.g. %v", len(lost), messages, show)
	}
}
