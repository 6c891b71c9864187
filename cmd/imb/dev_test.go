package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"imb/amdev"
)

// syncBuffer collects a command's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDev runs imb dev in memory on free loopback ports and waits for its guide.
func startDev(t *testing.T, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- devMain(ctx, append([]string{"--in-memory", "--am-listen", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
			"--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--policy", "../../topics.yaml"}, extra...), out, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("imb dev did not stop")
		}
	})
	deadline := time.Now().Add(60 * time.Second) // a cluster's nodes wait for JetStream's quorum
	for !strings.Contains(out.String(), "Stop with Ctrl-C.") {
		select {
		case code := <-done:
			t.Fatalf("imb dev exited with %d:\n%s", code, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("imb dev not ready:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out.String()
}

// guideLine returns the printed command line that contains marker.
func guideLine(t *testing.T, guide, marker string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(guide))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.Contains(l, marker) {
			return l
		}
	}
	t.Fatalf("no line with %q in:\n%s", marker, guide)
	return ""
}

var (
	flagP = regexp.MustCompile(`-P '([^']+)'`)
	flagH = regexp.MustCompile(`-h (\S+) -p (\S+)`)
)

func TestDevPrintsWorkingTokens(t *testing.T) {
	guide := startDev(t)
	pub := guideLine(t, guide, "telemetry/temperature -m 21.5")
	token := flagP.FindStringSubmatch(pub)[1]
	hp := flagH.FindStringSubmatch(pub)
	addr := hp[1] + ":" + hp[2]

	// A real MQTT 3.1.1 client with the printed token: its own telemetry passes,
	// another thing's topic closes the connection.
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("demo-thermostat").
		SetUsername("demo-thermostat").SetPassword(token).SetAutoReconnect(false)
	c := mqtt3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect with the printed token: %v", tok.Error())
	}
	if tok := c.Publish("things/demo-thermostat/telemetry/temperature", 1, false, "21.5"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("allowed publish: %v", tok.Error())
	}
	c.Disconnect(100)
}

func TestDevGuideWithMosquittoClients(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub not installed (Debian package mosquitto-clients); .ci/run installs it")
	}
	guide := startDev(t)
	sub := guideLine(t, guide, "mosquitto_sub")
	subCmd := exec.Command("sh", "-c", sub+" -C 1 -W 20")
	subOut := &syncBuffer{}
	subCmd.Stdout, subCmd.Stderr = subOut, subOut
	if err := subCmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the subscription settle; the publish below repeats anyway

	allowed := guideLine(t, guide, "telemetry/temperature -m 21.5")
	denied := guideLine(t, guide, "other-thing/telemetry")
	var allowedOut []byte
	for i := 0; i < 5 && !strings.Contains(subOut.String(), "21.5"); i++ {
		var err error
		allowedOut, err = exec.Command("sh", "-c", allowed).CombinedOutput()
		if err != nil {
			t.Fatalf("allowed publish: %v %s", err, allowedOut)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if strings.Contains(string(allowedOut), "failed") {
		t.Fatalf("allowed publish reported failure: %s", allowedOut)
	}
	deniedOut, _ := exec.Command("sh", "-c", denied).CombinedOutput()
	if !strings.Contains(string(deniedOut), "Not authorized") {
		t.Fatalf("publishing into another thing's topic: mosquitto_pub said %q, want Not authorized", deniedOut)
	}
	_ = subCmd.Wait()
	if got := subOut.String(); !strings.Contains(got, "things/demo-thermostat/telemetry/temperature 21.5") {
		t.Fatalf("the cloud application's mosquitto_sub saw %q", got)
	}
}

var nodeLine = regexp.MustCompile(`node (n\d)\s+mqtt://(\S+)\s+ws://\S+\s+admin http://(\S+)`)

// TestDevNodes: imb dev --nodes 3 prints three nodes, each ready and joined,
// and a message the demo thing publishes on node 1 reaches the cloud
// application subscribed on node 3, with the guide's own tokens.
func TestDevNodes(t *testing.T) {
	guide := startDev(t, "--nodes", "3")
	nodes := nodeLine.FindAllStringSubmatch(guide, -1)
	if len(nodes) != 3 || nodes[0][1] != "n1" || nodes[2][1] != "n3" {
		t.Fatalf("want three node lines n1..n3 in:\n%s", guide)
	}
	for _, n := range nodes {
		resp, err := http.Get("http://" + n[3] + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("node %s /readyz: %d %s", n[1], resp.StatusCode, body)
		}
	}
	appToken := flagP.FindStringSubmatch(guideLine(t, guide, "mosquitto_sub"))[1]
	thingToken := flagP.FindStringSubmatch(guideLine(t, guide, "telemetry/temperature -m 21.5"))[1]
	got := make(chan string, 4)
	sub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + nodes[2][2]).SetClientID("cloud-app").
		SetUsername("cloud-app").SetPassword(appToken).SetAutoReconnect(false))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("cloud application on node 3: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe("things/+/telemetry/#", 1, func(_ mqtt3.Client, m mqtt3.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe on node 3: %v", tok.Error())
	}
	pub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + nodes[0][2]).SetClientID("demo-thermostat").
		SetUsername("demo-thermostat").SetPassword(thingToken).SetAutoReconnect(false))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("demo thing on node 1: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	if tok := pub.Publish("things/demo-thermostat/telemetry/temperature", 1, false, "21.5"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish on node 1: %v", tok.Error())
	}
	select {
	case p := <-got:
		if p != "21.5" {
			t.Fatalf("node 3 delivered %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the publish on node 1 did not reach the subscriber on node 3")
	}
}

func TestDevNodesUsage(t *testing.T) {
	for _, n := range []string{"0", "10", "-1"} {
		var stderr strings.Builder
		if code := devMain(context.Background(), []string{"--nodes", n}, io.Discard, &stderr); code != exitUsage {
			t.Errorf("--nodes %s: exit %d, want %d (%s)", n, code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), "--nodes "+n) {
			t.Errorf("--nodes %s: %q does not name the flag", n, stderr.String())
		}
	}
}

// The printed curl line publishes through the HTTP door with the demo thing's token, as printed.
func TestDevPrintsWorkingCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	guide := startDev(t)
	line := guideLine(t, guide, "curl -sS -H 'Authorization: Bearer ")
	out, err := exec.Command("sh", "-c", line).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"confirmed":true`) {
		t.Fatalf("%s\n%v: %s", line, err, out)
	}
}

// TestDevRevokeAtAmdevDisconnects: in imb dev --nodes 2 the broker trusts amdev's SSF transmitter and node 1
// is its receiver: revoking the demo thing's printed token at amdev's /oauth2/token/revoke closes the thing's
// connection on node 2 at once.
func TestDevRevokeAtAmdevDisconnects(t *testing.T) {
	guide := startDev(t, "--nodes", "2")
	nodes := nodeLine.FindAllStringSubmatch(guide, -1)
	if len(nodes) != 2 {
		t.Fatalf("want two node lines in:\n%s", guide)
	}
	amURL := strings.Fields(guideLine(t, guide, "AM-compatible identity server"))[3]
	thingToken := flagP.FindStringSubmatch(guideLine(t, guide, "telemetry/temperature -m 21.5"))[1]
	lost := make(chan error, 1)
	c := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + nodes[1][2]).SetClientID("demo-thermostat").
		SetUsername("demo-thermostat").SetPassword(thingToken).SetAutoReconnect(false).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) { lost <- err }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("demo thing on node 2: %v", tok.Error())
	}
	defer c.Disconnect(100)
	req, _ := http.NewRequest(http.MethodPost, amURL+"/oauth2/token/revoke", strings.NewReader("token="+thingToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(amdev.DefaultClientID, amdev.DefaultClientSecret)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke at amdev: %v %v", err, resp)
	}
	_ = resp.Body.Close()
	select {
	case <-lost:
		t.Logf("revoked at amdev to the connection closed on node 2: %s", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("the demo thing on node 2 is still connected a second after its token was revoked at amdev")
	}
}
