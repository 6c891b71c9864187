package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait for something a client or server should do; it is
// generous because the machine running the suite may be loaded (a node process on
// a busy 2-core machine can take seconds to answer).
const waitTimeout = 20 * time.Second

// startTimeout bounds the start of an interpreter (node, python) and its libraries,
// which on a loaded machine takes far longer than any MQTT exchange.
const startTimeout = 30 * time.Second

// processTimeout bounds the life of every subprocess a test starts.
const processTimeout = 90 * time.Second

// event is one line a client driver (mqttjs_driver.mjs, paho_driver.py) wrote: what
// the client library reported, in its own codes and texts.
type event struct {
	Ev             string `json:"ev"` // ready connack error suback puback message disconnect close auth ended
	Code           int    `json:"code"`
	Text           string `json:"text"`
	Granted        []int  `json:"granted"`
	Topic          string `json:"topic"`
	Payload        string `json:"payload"`
	QoS            int    `json:"qos"`
	Retain         bool   `json:"retain"`
	SessionPresent bool   `json:"sessionPresent"`
	Method         string `json:"method"`
	Library        string `json:"library"`
	Version        string `json:"version"`
}

func (e event) String() string {
	b, _ := json.Marshal(e)
	return string(b)
}

// driver is one client library running as a subprocess, commanded by JSON lines on
// its stdin.
type driver struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event
	seen   []event // received, not yet expected; used by the test goroutine only
	stderr *syncBuffer
	exited chan struct{}
	info   event // the ready event: library and version
}

// startDriver runs argv in dir and waits for its ready line.
func startDriver(t *testing.T, name, dir string, argv ...string) *driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	d := &driver{t: t, name: name, cmd: cmd, events: make(chan event, 1000), stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = d.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(d.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = event{Ev: "garbage", Text: sc.Text()}
			}
			d.events <- ev
		}
	}()
	go func() {
		<-read // Wait closes stdout: read it to the end first
		_ = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		_ = d.stdin.Close() // the drivers exit when stdin closes
		select {
		case <-d.exited:
		case <-time.After(waitTimeout):
			cancel() // kills this child by its pid
			<-d.exited
		}
		cancel()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, d.stderr.String())
		}
	})
	d.info = d.expectWithin("ready", startTimeout)
	t.Logf("%s: %s %s", name, d.info.Library, d.info.Version)
	return d
}

// send writes one command.
func (d *driver) send(cmd map[string]any) {
	d.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.stdin.Write(append(b, '\n')); err != nil {
		d.t.Fatalf("%s: send %s: %v", d.name, b, err)
	}
}

// next returns the first event named one of evs, waiting for it up to within.
// Events of other names stay for later expectations.
func (d *driver) next(within time.Duration, evs ...string) (event, bool) {
	deadline := time.After(within)
	for {
		for i, e := range d.seen {
			if slices.Contains(evs, e.Ev) {
				d.seen = append(d.seen[:i], d.seen[i+1:]...)
				return e, true
			}
		}
		select {
		case e, ok := <-d.events:
			if !ok {
				return event{}, false
			}
			d.seen = append(d.seen, e)
		case <-deadline:
			return event{}, false
		}
	}
}

// expect returns the next event named ev or fails the test.
func (d *driver) expect(ev string) event {
	d.t.Helper()
	return d.expectWithin(ev, waitTimeout)
}

// expectWithin returns the next event named ev, waiting up to within, or fails the
// test.
func (d *driver) expectWithin(ev string, within time.Duration) event {
	d.t.Helper()
	return d.expectOneOf(within, ev)
}

// expectOneOf returns the first event named one of evs, waiting up to within, or
// fails the test.
func (d *driver) expectOneOf(within time.Duration, evs ...string) event {
	d.t.Helper()
	e, ok := d.next(within, evs...)
	if !ok {
		d.t.Fatalf("%s: no %q event within %s; unconsumed events: %v", d.name, evs, within, d.seen)
	}
	return e
}

// expectMsg waits for a message on topic.
func (d *driver) expectMsg(topic string) event {
	d.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		for i, e := range d.seen {
			if e.Ev == "message" && e.Topic == topic {
				d.seen = append(d.seen[:i], d.seen[i+1:]...)
				return e
			}
		}
		select {
		case e, ok := <-d.events:
			if !ok {
				d.t.Fatalf("%s: exited before a message on %s arrived; events: %v", d.name, topic, d.seen)
			}
			d.seen = append(d.seen, e)
		case <-deadline:
			d.t.Fatalf("%s: no message on %s within %s; events: %v", d.name, topic, waitTimeout, d.seen)
		}
	}
}

// noMsg asserts that no message on topic has arrived. Call it after a barrier
// message published later on the same path, so that "nothing" does not depend on
// timing.
func (d *driver) noMsg(topic string) {
	d.t.Helper()
	d.noMatch("message on "+topic, func(e event) bool { return e.Ev == "message" && e.Topic == topic })
}

// noMatch asserts that no event received so far matches.
func (d *driver) noMatch(what string, match func(event) bool) {
	d.t.Helper()
	for drained := false; !drained; {
		select {
		case e, ok := <-d.events:
			if !ok {
				drained = true
				break
			}
			d.seen = append(d.seen, e)
		default:
			drained = true
		}
	}
	for _, e := range d.seen {
		if match(e) {
			d.t.Fatalf("%s: unexpected %s: %v", d.name, what, e)
		}
	}
}

// kill ends the client process without letting the library say goodbye: the broker
// sees the connection drop, as when a device loses power.
func (d *driver) kill() {
	d.t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		d.t.Fatalf("%s: kill: %v", d.name, err)
	}
	<-d.exited
}

// connectCmd is a connect command for the drivers.
type connectCmd struct {
	url, clientID, username, password, authData string
	version                                     int
	will                                        *willCmd
}

type willCmd struct {
	topic, payload string
	qos            int
	retain         bool
}

func (c connectCmd) cmd() map[string]any {
	m := map[string]any{"op": "connect", "url": c.url, "version": c.version, "clientId": c.clientID}
	if c.username != "" {
		m["username"] = c.username
	}
	if c.password != "" {
		m["password"] = c.password
	}
	if c.authData != "" {
		m["authData"] = c.authData
	}
	if c.will != nil {
		m["will"] = map[string]any{"topic": c.will.topic, "payload": c.will.payload, "qos": c.will.qos, "retain": c.will.retain}
	}
	return m
}

func subscribeCmd(topic string, qos int) map[string]any {
	return map[string]any{"op": "subscribe", "topic": topic, "qos": qos}
}

func publishCmd(topic, payload string, qos int, retain bool) map[string]any {
	return map[string]any{"op": "publish", "topic": topic, "payload": payload, "qos": qos, "retain": retain}
}

// syncBuffer is a bytes.Buffer safe for a subprocess's writes and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// nodeModule skips the test unless node is on PATH and every pinned npm package
// the test drives is installed in tests/interop/node_modules; the skip names the
// missing ones.
func nodeModule(t *testing.T, pkgs ...string) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed (Node.js 20 or later is needed): skipping " + strings.Join(pkgs, ", ") + " interop")
	}
	var missing []string
	for _, pkg := range pkgs {
		if _, err := os.Stat("node_modules/" + pkg + "/package.json"); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		t.Skipf("npm package %s not installed: run `npm ci --prefix tests/interop` from the repository root", strings.Join(missing, ", "))
	}
}

// pahoPython returns a Python interpreter that can import paho.mqtt, or skips.
// IMB_PYTHON names one explicitly; otherwise Debian's /usr/bin/python3 (where
// python3-paho-mqtt installs) and python3 on PATH are tried.
func pahoPython(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("IMB_PYTHON"), "/usr/bin/python3", "python3"}
	var tried []string
	for _, py := range candidates {
		if py == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		err := exec.CommandContext(ctx, py, "-c", "import paho.mqtt.client").Run()
		cancel()
		if err == nil {
			return py
		}
		tried = append(tried, py)
	}
	t.Skipf("no Python with paho-mqtt (tried %s): install it with `apt-get install python3-paho-mqtt`", strings.Join(tried, ", "))
	return ""
}

// need skips the test unless every named program is on PATH.
func need(t *testing.T, install string, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed: install it with `%s`", p, install)
		}
	}
}

// execNode prepares node running script in this directory, bounded by ctx.
func execNode(ctx context.Context, script string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
