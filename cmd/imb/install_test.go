package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"imb/amdev"
)

// installedDev builds imb into a temporary directory, as `go install` would, and
// runs `imb dev --in-memory` in an empty directory: no repository, no
// topics.yaml around. It returns the printed guide and the process's stderr.
func installedDev(t *testing.T) (guide string, stderr *syncBuffer, bin string) {
	t.Helper()
	bin = filepath.Join(t.TempDir(), "imb")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X main.version=v0.0.0-installtest", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "dev", "--in-memory", "--am-listen", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
		"--ws-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Dir = t.TempDir()
	out := &syncBuffer{}
	stderr = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("imb dev did not stop on SIGTERM")
		}
	})
	deadline := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "Stop with Ctrl-C.") {
		select {
		case err := <-done:
			t.Fatalf("imb dev exited (%v):\n%s\n%s", err, out, stderr)
		case <-deadline:
			t.Fatalf("imb dev not ready in 30s:\n%s\n%s", out, stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return out.String(), stderr, bin
}

// shellWords splits a printed command line the way sh does for these lines:
// words separated by spaces, '...' quoting.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// mosquittoLine is what a printed mosquitto_pub or mosquitto_sub line asks for.
type mosquittoLine struct {
	addr, clientID, username, password, topic, message string
	qos                                                byte
}

func parseMosquitto(t *testing.T, line string) mosquittoLine {
	t.Helper()
	w := shellWords(line)
	var m mosquittoLine
	var host, port string
	for i := 1; i+1 < len(w); i++ {
		v := w[i+1]
		switch w[i] {
		case "-h":
			host = v
		case "-p":
			port = v
		case "-i":
			m.clientID = v
		case "-u":
			m.username = v
		case "-P":
			m.password = v
		case "-t":
			m.topic = v
		case "-m":
			m.message = v
		case "-q":
			m.qos = v[0] - '0'
		case "-V":
			if v != "mqttv5" {
				t.Fatalf("%s: protocol %s", line, v)
			}
		default:
			continue
		}
		i++
	}
	m.addr = net.JoinHostPort(host, port)
	return m
}

// connectV5 connects an MQTT 5 client (Eclipse Paho) as the line says.
func connectV5(ctx context.Context, m mosquittoLine, onMessage func(topic, payload string)) (*paho.Client, *paho.Connack, error) {
	conn, err := net.Dial("tcp", m.addr)
	if err != nil {
		return nil, nil, err
	}
	cc := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)}
	if onMessage != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			onMessage(p.Packet.Topic, string(p.Packet.Payload))
			return true, nil
		}}
	}
	c := paho.NewClient(cc)
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: m.clientID, CleanStart: true, KeepAlive: 30,
		Username: m.username, UsernameFlag: m.username != "", Password: []byte(m.password), PasswordFlag: m.password != ""})
	return c, ack, err
}

// TestInstalledDev: the binary alone, in an empty directory, starts the
// development setup with the built-in policy, and the printed mosquitto lines do
// what they say when a real MQTT 5 client follows them.
func TestInstalledDev(t *testing.T) {
	guide, stderr, bin := installedDev(t)
	if out, err := exec.Command(bin, "--version").Output(); err != nil || string(out) != "imb v0.0.0-installtest\n" {
		t.Errorf("imb --version: %q %v", out, err)
	}
	if !strings.Contains(stderr.String(), "imb dev: no --policy and no ./topics.yaml: using the built-in default policy") {
		t.Errorf("imb dev does not say which policy it uses:\n%s", stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	sub := parseMosquitto(t, guideLine(t, guide, "mosquitto_sub"))
	got := make(chan string, 16)
	app, ack, err := connectV5(ctx, sub, func(topic, payload string) { got <- topic + " " + payload })
	if err != nil {
		t.Fatalf("the cloud application's line: connect: %v %+v", err, ack)
	}
	defer app.Disconnect(&paho.Disconnect{})
	if _, err := app.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: sub.topic, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", sub.topic, err)
	}

	allowed := parseMosquitto(t, guideLine(t, guide, "telemetry/temperature -m 21.5"))
	thing, ack, err := connectV5(ctx, allowed, nil)
	if err != nil {
		t.Fatalf("the demo thing's line: connect: %v %+v", err, ack)
	}
	defer thing.Disconnect(&paho.Disconnect{})
	if res, err := thing.Publish(ctx, &paho.Publish{Topic: allowed.topic, QoS: allowed.qos, Payload: []byte(allowed.message)}); err != nil || res.ReasonCode != 0 {
		t.Fatalf("allowed publish: %v %+v", err, res)
	}
	select {
	case m := <-got:
		if m != "things/demo-thermostat/telemetry/temperature 21.5" {
			t.Fatalf("the cloud application received %q", m)
		}
	case <-ctx.Done():
		t.Fatal("the cloud application received nothing")
	}

	denied := parseMosquitto(t, guideLine(t, guide, "other-thing/telemetry"))
	res, err := thing.Publish(ctx, &paho.Publish{Topic: denied.topic, QoS: denied.qos, Payload: []byte(denied.message)})
	var code byte
	if res != nil {
		code = res.ReasonCode
	}
	if code != 0x87 {
		t.Errorf("publishing into another thing's topic: reason %#x (%v), want 0x87 Not authorized", code, err)
	}
	select {
	case m := <-got:
		t.Errorf("the refused message was delivered: %q", m)
	case <-time.After(300 * time.Millisecond):
	}
	// imb dev logs at info: the audit lines of the connections show.
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "event=connect") }, "an event=connect audit line in imb dev's log")
}

// TestDevRefusesOtherAudiences: a token amdev issues to a client that is not a
// thing's or the cloud application's (here the broker's own introspection
// client, whose development secret is public) does not connect to imb dev.
func TestDevRefusesOtherAudiences(t *testing.T) {
	guide := startDev(t)
	amURL := strings.Fields(guideLine(t, guide, "AM-compatible identity server"))[3]
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"am-introspect-all-tokens"}}
	req, _ := http.NewRequest(http.MethodPost, amURL+"/oauth2/access_token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(amdev.BrokerClientID, amdev.BrokerClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token for %s: %s %s", amdev.BrokerClientID, resp.Status, body)
	}
	pub := parseMosquitto(t, guideLine(t, guide, "telemetry/temperature -m 21.5"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	line := mosquittoLine{addr: pub.addr, clientID: amdev.BrokerClientID, username: amdev.BrokerClientID, password: tok.AccessToken}
	c, ack, err := connectV5(ctx, line, nil)
	if err == nil {
		_ = c.Disconnect(&paho.Disconnect{})
		t.Fatalf("a token issued to %s connected (CONNACK %+v): imb dev checks no audience", amdev.BrokerClientID, ack)
	}
	var code byte
	if ack != nil {
		code = ack.ReasonCode
	}
	if code != 0x86 {
		t.Errorf("CONNACK reason %#x (%v), want 0x86 Bad User Name or Password (a token not for this broker)", code, err)
	}
	// The cloud application's own token still connects.
	sub := parseMosquitto(t, guideLine(t, guide, "mosquitto_sub"))
	app, ack, err := connectV5(ctx, sub, nil)
	if err != nil {
		t.Fatalf("the cloud application: %v %+v", err, ack)
	}
	_ = app.Disconnect(&paho.Disconnect{})
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
