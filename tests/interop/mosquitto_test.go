package interop

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const installMosquitto = "apt-get install mosquitto-clients"

// mosquittoRun runs a Mosquitto client to completion and returns what it printed
// (stdout and stderr together) and its exit code.
func mosquittoRun(t *testing.T, prog string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("%s %s: %v\n%s", prog, redact(args), err, out)
		return "", -1
	}
}

// redact hides the token after -P in a command line shown in a failure message.
func redact(args []string) string {
	out := append([]string(nil), args...)
	for i := range out {
		if i > 0 && out[i-1] == "-P" {
			out[i] = "<token>"
		}
	}
	return strings.Join(out, " ")
}

// mosqArgs are the connection arguments of a Mosquitto client for the broker.
func (e *env) mosqArgs(version, clientID, token string) []string {
	host, port := e.hostPort()
	args := []string{"-h", host, "-p", port, "-V", version, "-i", clientID}
	if token != "" {
		// MQTT 3.1.1 allows a password only with a user name; the thing id is the
		// natural one.
		args = append(args, "-u", clientID, "-P", token)
	}
	return args
}

// subscriber is a running mosquitto_sub printing one line per message as
// "MSG <retain> <qos> <topic> <payload>", with -d debug lines in between.
type subscriber struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string
	seen   []string
	exited chan struct{}
}

// startSub starts mosquitto_sub with args and waits for its SUBACK; it returns the
// granted codes line ("Subscribed (mid: 1): 1, 1").
func startSub(t *testing.T, args ...string) (*subscriber, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
	// mosquitto_sub does not flush its debug lines; stdbuf makes its stdout
	// line-buffered so that the SUBACK line arrives when the SUBACK does.
	args = append([]string{"-oL", "mosquitto_sub", "-d", "-F", "MSG %r %q %t %p"}, args...)
	cmd := exec.CommandContext(ctx, "stdbuf", args...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &subscriber{t: t, cmd: cmd, lines: make(chan string, 1000), exited: make(chan struct{})}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(s.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	go func() {
		<-read // Wait closes stdout: read it to the end first
		_ = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		cancel() // kills this mosquitto_sub by its pid
		<-s.exited
	})
	return s, s.expectLine("Subscribed (mid: 1):")
}

// expectLine waits for a line starting with prefix.
func (s *subscriber) expectLine(prefix string) string {
	s.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		for i, l := range s.seen {
			if strings.HasPrefix(l, prefix) {
				s.seen = append(s.seen[:i], s.seen[i+1:]...)
				return l
			}
		}
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("mosquitto_sub exited before printing %q; output: %q", prefix, s.seen)
			}
			s.seen = append(s.seen, l)
		case <-deadline:
			s.t.Fatalf("mosquitto_sub printed no %q within %s; output: %q", prefix, waitTimeout, s.seen)
		}
	}
}

// messages returns the MSG lines printed so far (without waiting).
func (s *subscriber) messages() []string {
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				return s.msgLines()
			}
			s.seen = append(s.seen, l)
			continue
		default:
		}
		return s.msgLines()
	}
}

func (s *subscriber) msgLines() []string {
	var out []string
	for _, l := range s.seen {
		if strings.HasPrefix(l, "MSG ") {
			out = append(out, l)
		}
	}
	return out
}

// kill ends mosquitto_sub without a DISCONNECT, so the broker sends its will.
func (s *subscriber) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatal(err)
	}
	<-s.exited
}

func TestMosquittoConnectRefused(t *testing.T) {
	need(t, installMosquitto, "mosquitto_pub")
	e := newEnv(t)
	good := e.thingToken(thing1, time.Hour)
	foreignWill := []string{"--will-topic", "things/" + thing2 + "/state", "--will-payload", "x"}
	cases := []struct {
		name, version, clientID, token string
		extra                          []string
		wantCode                       int
		wantOut                        string
	}{
		{"v5 garbage token", "mqttv5", thing1, "not-a-token", nil, 134, "Connection error: Bad User Name or Password"},
		{"v5 expired token", "mqttv5", thing1, e.expiredToken(thing1), nil, 134, "Connection error: Bad User Name or Password"},
		{"v5 no token", "mqttv5", thing1, "", nil, 134, "Connection error: Bad User Name or Password"},
		{"v5 client id of another thing", "mqttv5", thing2, good, nil, 135, "Connection error: Not authorized"},
		{"v5 will to a foreign topic", "mqttv5", thing1, good, foreignWill, 135, "Connection error: Not authorized"},
		{"v5 retained will where retain is not allowed", "mqttv5", thing1, good,
			[]string{"--will-topic", "things/" + thing1 + "/telemetry/last", "--will-payload", "x", "--will-retain"}, 135,
			"Connection error: Not authorized"},
		{"v5 unknown authentication method", "mqttv5", thing1, "",
			[]string{"-D", "connect", "authentication-method", "SCRAM-SHA-1", "-D", "connect", "authentication-data", good}, 140,
			"Connection error: Bad authentication method"},
		{"v5 OAUTH2-JWT authentication data not a token", "mqttv5", thing1, "",
			[]string{"-D", "connect", "authentication-method", "OAUTH2-JWT", "-D", "connect", "authentication-data", "not-a-token"}, 134,
			"Connection error: Bad User Name or Password"},
		{"v3.1.1 garbage token", "mqttv311", thing1, "not-a-token", nil, 4, "Connection error: Connection Refused: bad user name or password."},
		{"v3.1.1 expired token", "mqttv311", thing1, e.expiredToken(thing1), nil, 4, "Connection error: Connection Refused: bad user name or password."},
		{"v3.1.1 no token", "mqttv311", thing1, "", nil, 4, "Connection error: Connection Refused: bad user name or password."},
		{"v3.1.1 client id of another thing", "mqttv311", thing2, good, nil, 5, "Connection error: Connection Refused: not authorised."},
		{"v3.1.1 will to a foreign topic", "mqttv311", thing1, good, foreignWill, 5, "Connection error: Connection Refused: not authorised."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(e.mosqArgs(tc.version, tc.clientID, tc.token), tc.extra...)
			args = append(args, "-q", "1", "-t", "things/"+thing1+"/telemetry/t", "-m", "x")
			out, code := mosquittoRun(t, "mosquitto_pub", args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Fatalf("mosquitto_pub exit %d, output %q; want exit %d and %q", code, out, tc.wantCode, tc.wantOut)
			}
		})
	}
}

func TestMosquittoPublish(t *testing.T) {
	need(t, installMosquitto, "mosquitto_pub", "mosquitto_sub", "stdbuf")
	e := newEnv(t)
	token := e.thingToken(thing1, time.Hour)
	sub, granted := startSub(t, append(e.mosqArgs("mqttv5", cloudApp, e.cloudToken()),
		"-q", "1", "-t", "things/+/telemetry/#", "-t", "things/+/state")...)
	if granted != "Subscribed (mid: 1): 1, 1" {
		t.Fatalf("cloud subscription: %q, want both filters granted QoS 1", granted)
	}
	own := "things/" + thing1 + "/telemetry/temp"
	foreign := "things/" + thing2 + "/telemetry/temp"
	denied := "Warning: Publish 1 failed: Not authorized."
	cases := []struct {
		name, version, topic string
		qos                  string
		retain               bool
		authData             bool // token as MQTT 5 Authentication Data (method OAUTH2-JWT), not password
		wantCode             int
		wantOut              []string // each must appear; none: the output must be empty
		delivered            bool
	}{
		{"v5 qos1 own telemetry", "mqttv5", own, "1", false, false, 0, nil, true},
		{"v5 qos1 own telemetry, token as OAUTH2-JWT authentication data", "mqttv5", own, "1", false, true, 0, nil, true},
		{"v5 qos0 own telemetry", "mqttv5", own, "0", false, false, 0, nil, true},
		{"v5 qos1 another thing's telemetry", "mqttv5", foreign, "1", false, false, 0, []string{denied, "no rule grants it"}, false},
		{"v5 qos2 above max_qos 1", "mqttv5", own, "2", false, false, 0, []string{denied}, false},
		{"v5 qos1 firmware (deny rule)", "mqttv5", "things/" + thing1 + "/firmware/x", "1", false, false, 0, []string{denied}, false},
		{"v5 qos1 retained telemetry (retain not allowed)", "mqttv5", own, "1", true, false, 0, []string{denied, "retain not allowed"}, false},
		{"v5 qos0 another thing's telemetry (dropped silently)", "mqttv5", foreign, "0", false, false, 0, nil, false},
		{"v3.1.1 qos1 own telemetry", "mqttv311", own, "1", false, false, 0, nil, true},
		{"v3.1.1 qos0 another thing's telemetry (dropped silently)", "mqttv311", foreign, "0", false, false, 0, nil, false},
		// MQTT 3.1.1 has no negative PUBACK and no server DISCONNECT: the broker
		// closes the connection.
		{"v3.1.1 qos1 another thing's telemetry (connection closed)", "mqttv311", foreign, "1", false, false, 7,
			[]string{"Error: The connection was lost."}, false},
	}
	var want, unwanted []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			payload := strings.ReplaceAll(tc.name, " ", "_")
			args := append(e.mosqArgs(tc.version, thing1, token), "-q", tc.qos, "-t", tc.topic, "-m", payload)
			if tc.authData {
				args = append(e.mosqArgs(tc.version, thing1, ""), "-q", tc.qos, "-t", tc.topic, "-m", payload,
					"-D", "connect", "authentication-method", "OAUTH2-JWT", "-D", "connect", "authentication-data", token)
			}
			if tc.retain {
				args = append(args, "-r")
			}
			out, code := mosquittoRun(t, "mosquitto_pub", args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; output %q", code, tc.wantCode, out)
			}
			if len(tc.wantOut) == 0 && out != "" {
				t.Errorf("output %q, want none", out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
			line := "MSG 0 1 " + tc.topic + " " + payload
			if tc.qos == "0" {
				line = "MSG 0 0 " + tc.topic + " " + payload
			}
			if tc.delivered {
				want = append(want, line)
				sub.expectLine(line)
			} else {
				unwanted = append(unwanted, tc.topic+" "+payload)
			}
		})
	}
	// Barrier: a message published after all the others has arrived, so anything
	// refused above would have arrived before it.
	out, code := mosquittoRun(t, "mosquitto_pub", append(e.mosqArgs("mqttv5", thing1, token), "-q", "1", "-t", own, "-m", "barrier")...)
	if code != 0 {
		t.Fatalf("barrier publish: exit %d %q", code, out)
	}
	sub.expectLine("MSG 0 1 " + own + " barrier")
	for _, m := range sub.messages() {
		for _, u := range unwanted {
			if strings.HasSuffix(m, u) {
				t.Errorf("refused publish was delivered: %q", m)
			}
		}
	}
}

func TestMosquittoSubscribe(t *testing.T) {
	need(t, installMosquitto, "mosquitto_pub", "mosquitto_sub", "stdbuf")
	e := newEnv(t)
	token := e.thingToken(thing1, time.Hour)
	allDenied := "All subscription requests were denied."
	denied := []struct {
		name, version, filter, wantAck string
	}{
		{"v5 another thing's commands", "mqttv5", "things/" + thing2 + "/commands/#", "Subscribed (mid: 1): 135"},
		{"v5 every thing's commands", "mqttv5", "things/+/commands/#", "Subscribed (mid: 1): 135"},
		{"v5 everything", "mqttv5", "#", "Subscribed (mid: 1): 135"},
		{"v5 $SYS", "mqttv5", "$SYS/#", "Subscribed (mid: 1): 135"},
		{"v5 own telemetry (publish-only grant)", "mqttv5", "things/" + thing1 + "/telemetry/#", "Subscribed (mid: 1): 135"},
		{"v3.1.1 another thing's commands", "mqttv311", "things/" + thing2 + "/commands/#", "Subscribed (mid: 1): 128"},
		{"v3.1.1 everything", "mqttv311", "#", "Subscribed (mid: 1): 128"},
	}
	for _, tc := range denied {
		t.Run("denied "+tc.name, func(t *testing.T) {
			args := append(e.mosqArgs(tc.version, thing1, token), "-d", "-q", "1", "-t", tc.filter, "-W", "20")
			out, code := mosquittoRun(t, "mosquitto_sub", args...)
			if !strings.Contains(out, tc.wantAck+"\n") || !strings.Contains(out, allDenied) || code != 0 {
				t.Fatalf("mosquitto_sub exit %d, output %q; want exit 0, %q and %q", code, out, tc.wantAck, allDenied)
			}
		})
	}
	allowed := []struct {
		name, version, qos, wantAck string
	}{
		{"v5 own commands qos1", "mqttv5", "1", "Subscribed (mid: 1): 1"},
		{"v5 own commands qos2 granted 1 (max_qos)", "mqttv5", "2", "Subscribed (mid: 1): 1"},
		{"v3.1.1 own commands qos1", "mqttv311", "1", "Subscribed (mid: 1): 1"},
	}
	for _, tc := range allowed {
		t.Run("allowed "+tc.name, func(t *testing.T) {
			sub, ack := startSub(t, append(e.mosqArgs(tc.version, thing1, token),
				"-q", tc.qos, "-t", "things/"+thing1+"/commands/#")...)
			if ack != tc.wantAck {
				t.Fatalf("SUBACK %q, want %q", ack, tc.wantAck)
			}
			topic := "things/" + thing1 + "/commands/setpoint"
			out, code := mosquittoRun(t, "mosquitto_pub", append(e.mosqArgs("mqttv5", cloudApp, e.cloudToken()),
				"-q", "1", "-t", topic, "-m", "21")...)
			if code != 0 || out != "" {
				t.Fatalf("cloud command: exit %d %q", code, out)
			}
			sub.expectLine("MSG 0 1 " + topic + " 21")
		})
	}
}

func TestMosquittoRetained(t *testing.T) {
	need(t, installMosquitto, "mosquitto_pub", "mosquitto_sub", "stdbuf")
	e := newEnv(t)
	token := e.thingToken(thing1, time.Hour)
	state := "things/" + thing1 + "/state"
	telemetry := "things/" + thing1 + "/telemetry/temp"
	out, code := mosquittoRun(t, "mosquitto_pub", append(e.mosqArgs("mqttv5", thing1, token), "-q", "1", "-r", "-t", state, "-m", "on")...)
	if code != 0 || out != "" {
		t.Fatalf("retained state: exit %d %q", code, out)
	}
	out, code = mosquittoRun(t, "mosquitto_pub", append(e.mosqArgs("mqttv311", thing1, token), "-q", "0", "-r", "-t", telemetry, "-m", "leak")...)
	if code != 0 {
		t.Fatalf("retained telemetry at qos 0: exit %d %q", code, out)
	}
	// A later subscriber gets the state as retained (retain flag 1). The telemetry
	// filter comes first in its SUBSCRIBE, so a retained telemetry message would
	// arrive before the state.
	sub, ack := startSub(t, append(e.mosqArgs("mqttv5", cloudApp, e.cloudToken()),
		"-q", "1", "-t", "things/+/telemetry/#", "-t", "things/+/state")...)
	if ack != "Subscribed (mid: 1): 1, 1" {
		t.Fatalf("SUBACK %q", ack)
	}
	sub.expectLine("MSG 1 1 " + state + " on")
	for _, m := range sub.messages() {
		if strings.Contains(m, telemetry) {
			t.Fatalf("retained telemetry stored although retain is not allowed there: %q", m)
		}
	}
}

func TestMosquittoWill(t *testing.T) {
	need(t, installMosquitto, "mosquitto_pub", "mosquitto_sub", "stdbuf")
	e := newEnv(t)
	token := e.thingToken(thing1, time.Hour)
	state := "things/" + thing1 + "/state"
	cloud, _ := startSub(t, append(e.mosqArgs("mqttv5", cloudApp, e.cloudToken()), "-q", "1", "-t", "things/+/state", "-t", "things/+/telemetry/#")...)

	// A graceful DISCONNECT suppresses the will.
	out, code := mosquittoRun(t, "mosquitto_pub", append(e.mosqArgs("mqttv5", thing1, token), "-q", "1",
		"--will-topic", state, "--will-payload", "gone-graceful", "--will-qos", "1",
		"-t", "things/"+thing1+"/telemetry/temp", "-m", "1")...)
	if code != 0 || out != "" {
		t.Fatalf("publish with will: exit %d %q", code, out)
	}

	// A dropped connection sends it, retained.
	for _, version := range []string{"mqttv5", "mqttv311"} {
		payload := "offline-" + version
		thing, ack := startSub(t, append(e.mosqArgs(version, thing1, token), "-q", "1",
			"--will-topic", state, "--will-payload", payload, "--will-qos", "1", "--will-retain",
			"-t", "things/"+thing1+"/commands/#")...)
		if ack != "Subscribed (mid: 1): 1" {
			t.Fatalf("%s: SUBACK %q", version, ack)
		}
		thing.kill()
		cloud.expectLine("MSG 0 1 " + state + " " + payload)
	}
	for _, m := range cloud.messages() {
		if strings.Contains(m, "gone-graceful") {
			t.Fatalf("will sent after a graceful disconnect: %q", m)
		}
	}
	late, _ := startSub(t, append(e.mosqArgs("mqttv5", cloudApp, e.cloudToken()), "-q", "1", "-t", "things/+/state")...)
	late.expectLine("MSG 1 1 " + state + " offline-mqttv311")
}
