package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"imb/internal/freeport"
	"imb/internal/issuer"
)

// Target names, in the order compare runs them.
const (
	targetBaseline           = "baseline"
	targetJWT                = "imb-jwt"
	targetIntrospect         = "imb-introspect"
	targetIntrospectUncached = "imb-introspect-uncached"
	targetMosquitto          = "mosquitto"
)

var allTargets = []string{targetBaseline, targetJWT, targetIntrospect, targetIntrospectUncached, targetMosquitto, targetRabbitMQ}

// defaultTargets are what compare runs without --targets: RabbitMQ is asked for
// by name, as its node takes seconds to boot for every round.
var defaultTargets = []string{targetBaseline, targetJWT, targetIntrospect, targetIntrospectUncached, targetMosquitto}

// targetModes maps imb targets to the broker child's --mode.
var targetModes = map[string]string{
	targetBaseline:           modeAllowAll,
	targetJWT:                modeJWT,
	targetIntrospect:         modeIntrospect,
	targetIntrospectUncached: modeIntrospectUncached,
}

// usesOpaqueTokens reports whether a target's things present opaque tokens (only
// introspection can judge them) instead of ES256 JWTs.
func usesOpaqueTokens(target string) bool {
	return target == targetIntrospect || target == targetIntrospectUncached
}

// mosquittoPath is where Debian's mosquitto package installs the broker.
const mosquittoPath = "/usr/sbin/mosquitto"

// roleEnv makes the harness's own executable run as a broker child (see
// brokerMain); it works for `go run` binaries and test binaries alike.
const roleEnv = "IMB_LOADTEST_ROLE"

// brokerProc is a broker process the harness started.
type brokerProc struct {
	target  string
	addr    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   *bufio.Scanner
	logFile *os.File
	profile string
	conf    string        // mosquitto config file to remove
	rabbit  *rabbitmqNode // RabbitMQ: the node's VM, epmd and scratch directory
}

// Pid is the id of the process that is the broker, whose /proc entries give its
// CPU time and memory: for RabbitMQ the Erlang VM, not the start script.
func (p *brokerProc) Pid() int {
	if p.rabbit != nil {
		return p.rabbit.beam
	}
	return p.cmd.Process.Pid
}

// rabbitmqNodes numbers the RabbitMQ nodes of this process, so that every node
// of a run has a name of its own.
var rabbitmqNodes atomic.Int64

// issuerRef is what a target needs to trust the harness's issuer: imb children
// its URLs, RabbitMQ the signing key itself.
type issuerRef struct {
	URL, JWKSURL, IntrospectURL, ClientID, ClientSecret string
	Key                                                 signingKey
}

// issuerRefOf is iss as the targets see it, with its signing key read back from
// its JWKS as any target would read it.
func issuerRefOf(ctx context.Context, iss *issuer.Issuer) (issuerRef, error) {
	key, err := fetchSigningKey(ctx, iss.JWKSURL())
	if err != nil {
		return issuerRef{}, err
	}
	return issuerRef{URL: iss.URL(), JWKSURL: iss.JWKSURL(), IntrospectURL: iss.IntrospectURL(),
		ClientID: iss.ClientID(), ClientSecret: iss.ClientSecret(), Key: key}, nil
}

// startBroker starts the target as a child process on a loopback port and waits
// until it accepts connections. logPath receives the child's stderr.
func startBroker(ctx context.Context, target string, iss issuerRef, o Options, logPath, profilePath string) (*brokerProc, error) {
	if o.HeapProfile {
		o.heapPrefix = strings.TrimSuffix(logPath, ".log") + ".heap"
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("broker log: %w", err)
	}
	var p *brokerProc
	for attempt := 1; ; attempt++ {
		p = &brokerProc{target: target, logFile: logFile}
		switch target {
		case targetMosquitto:
			err = p.startMosquitto(ctx, filepath.Dir(logPath))
		case targetRabbitMQ:
			if err = p.startRabbitMQ(ctx, iss.Key, int(rabbitmqNodes.Add(1))); err != nil {
				p.stopRabbitMQ() // whatever of the node did start
			}
		default:
			err = p.startImb(ctx, target, iss, o, profilePath)
		}
		if err == nil || !errors.Is(err, errExitedAtStart) || attempt == startAttempts {
			break
		}
		fmt.Fprintf(logFile, "\n--- loadtest: %s %v (attempt %d of %d); starting again with new ports ---\n", target, err, attempt, startAttempts)
	}
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w (log %s ends: %q)", target, err, logPath, logTail(logPath, 1500))
	}
	return p, nil
}

// startAttempts bounds the starts of a child that exits before it listens.
const startAttempts = 3

// logTail returns the last n bytes of a child's log, so that a failed start
// says why where only the error is kept (a CI transcript).
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// brokerGODEBUG is the runtime setting imb's Dockerfile and systemd unit run it
// with (loadtest/RESULTS.md, memory); a GODEBUG of the harness's own environment wins.
const brokerGODEBUG = "adaptivestackstart=0"

func (p *brokerProc) startImb(ctx context.Context, target string, iss issuerRef, o Options, profilePath string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	args := []string{"broker", "--mode", targetModes[target], "--listen", "127.0.0.1:0",
		"--issuer", iss.URL, "--jwks-url", iss.JWKSURL, "--introspect-url", iss.IntrospectURL,
		"--client-id", iss.ClientID}
	if o.Policy != "" {
		args = append(args, "--policy", o.Policy)
	}
	if o.IntrospectMaxConns > 0 {
		args = append(args, "--introspect-max-conns", fmt.Sprint(o.IntrospectMaxConns))
	}
	if profilePath != "" {
		args = append(args, "--cpuprofile", profilePath)
		p.profile = profilePath
	}
	if o.heapPrefix != "" {
		args = append(args, "--heapprofile", o.heapPrefix)
	}
	args = append(args, o.clusterArgs...)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=broker", "IMB_CLIENT_SECRET="+iss.ClientSecret)
	if os.Getenv("GODEBUG") == "" {
		cmd.Env = append(cmd.Env, "GODEBUG="+brokerGODEBUG) // as the image and the unit run imb
	}
	cmd.Stderr = p.logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return err
	}
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		return err
	}
	p.lines = bufio.NewScanner(stdout)
	addr := make(chan string, 1)
	go func() {
		for p.lines.Scan() {
			if a, ok := strings.CutPrefix(p.lines.Text(), "mqtt "); ok {
				addr <- a
				return
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			_ = cmd.Wait()
			return errors.New("broker exited before listening")
		}
		p.addr = a
		return nil
	case <-time.After(90 * time.Second): // a cluster node first waits for JetStream's quorum (up to 60 s)
		p.stop()
		return errors.New("broker did not report its address within 90s")
	case <-ctx.Done():
		p.stop()
		return ctx.Err()
	}
}

// mosquittoConf is the anonymous loopback configuration. The limits match imb's
// (1024 messages in flight and queued per client, TCP_NODELAY as Go sets it) so
// that the brokers are compared with the same buffering, not with different
// defaults.
const mosquittoConf = `listener %d 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1024
max_queued_messages 1024
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
`

func (p *brokerProc) startMosquitto(ctx context.Context, dir string) error {
	port, err := freeport.Port()
	if err != nil {
		return err
	}
	conf, err := os.CreateTemp(dir, "mosquitto-*.conf")
	if err != nil {
		return err
	}
	p.conf = conf.Name()
	if _, err := fmt.Fprintf(conf, mosquittoConf, port); err != nil {
		_ = conf.Close()
		return err
	}
	_ = conf.Close()
	cmd := exec.Command(mosquittoPath, "-c", p.conf)
	cmd.Stderr, cmd.Stdout = p.logFile, p.logFile
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		return err
	}
	p.addr = fmt.Sprintf("127.0.0.1:%d", port)
	exited := make(chan struct{})
	go func() { _, _ = p.cmd.Process.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("mosquitto: %w", errExitedAtStart)
		case <-ctx.Done():
			p.stop()
			return ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
			_ = c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop()
	return errors.New("mosquitto did not listen within 10s")
}

// collectGarbage asks an imb child to run the garbage collector and return freed
// memory to the system, so that RSS reads what is live. mosquitto frees as it
// goes; for it this is a no-op.
func (p *brokerProc) collectGarbage() error {
	if p.stdin == nil {
		return nil
	}
	if _, err := io.WriteString(p.stdin, "gc\n"); err != nil {
		return fmt.Errorf("gc request: %w", err)
	}
	done := make(chan bool, 1)
	go func() { done <- p.lines.Scan() && p.lines.Text() == "gc ok" }()
	select {
	case ok := <-done:
		if !ok {
			return errors.New("gc request: no answer")
		}
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("gc request: no answer within 30s")
	}
}

// stop ends the broker: an imb child shuts down when its stdin closes (and
// writes its CPU profile), mosquitto on SIGTERM; after 15 s it is killed.
// RabbitMQ has its own order (stopRabbitMQ).
func (p *brokerProc) stop() {
	if p.rabbit != nil {
		p.stopRabbitMQ()
		_ = p.logFile.Close()
		return
	}
	if p.stdin != nil {
		_ = p.stdin.Close()
	} else {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		if p.stdin != nil {
			_ = p.cmd.Wait()
		} else {
			for {
				if err := p.cmd.Process.Signal(syscall.Signal(0)); err != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	_ = p.logFile.Close()
	if p.conf != "" {
		_ = os.Remove(p.conf)
	}
}
