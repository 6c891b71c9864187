package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"imb/internal/freeport"
)

// RabbitMQ as a target: Debian's rabbitmq-server (3.10) with its MQTT plugin and
// the OAuth2 backend, a broker that validates the same ES256 JWTs imb does. The
// harness runs its own node: everything it writes lives in a scratch directory,
// every listener is on loopback on ports the kernel picked, and only the processes
// the harness started are stopped.
const (
	targetRabbitMQ = "rabbitmq-oauth2"

	rabbitmqLib = "/usr/lib/rabbitmq/lib"
	epmdPath    = "/usr/bin/epmd"

	// rabbitmqResource is the OAuth2 resource server id: the tokens' audience,
	// which RabbitMQ checks, and the prefix of the scopes it reads.
	rabbitmqResource = "imb"

	// rabbitmqStartTimeout bounds a node's boot; it takes 5–20 s on a busy
	// 2-core machine.
	rabbitmqStartTimeout = 120 * time.Second
)

// rabbitmqServer is the node start script itself: Debian's /usr/sbin wrapper
// would switch to the rabbitmq user and the system's configuration. A variable so
// that a test can make RabbitMQ absent.
var rabbitmqServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// rabbitmqScopes grant an identity the vhost, exchange and queue rights the MQTT
// plugin needs (RabbitMQ's permission model: read, write, configure on
// vhost/resource: publishing into amq.topic, declaring and consuming a
// subscription's queue).
var rabbitmqScopes = []string{
	rabbitmqResource + ".read:*/*",
	rabbitmqResource + ".write:*/*",
	rabbitmqResource + ".configure:*/*",
}

// rabbitmqTopicScopes are the topic rights that mirror imb's rules for a subject
// (the harness's policy), in RabbitMQ's form action:vhost/exchange/routing-key
// (MQTT's / becomes .): a thing may write its own telemetry and read its own
// commands (imb: things/{sub}/telemetry/#, things/{sub}/commands/#), a fleet
// reader may read everyone's telemetry and state (things/+/telemetry/#,
// things/+/state). The MQTT plugin checks every SUBSCRIBE's and PUBLISH's topic
// against them, so RabbitMQ authorizes per topic as imb does, from the same token.
func rabbitmqTopicScopes(sub string, fleet bool) []string {
	if fleet {
		return []string{rabbitmqResource + ".read:*/*/things.*.telemetry.*", rabbitmqResource + ".read:*/*/things.*.state"}
	}
	return []string{rabbitmqResource + ".write:*/*/things." + sub + ".telemetry.*", rabbitmqResource + ".read:*/*/things." + sub + ".commands.*"}
}

// rabbitmqVersion is the installed RabbitMQ's version ("" when absent), read from
// its library directory so that no node needs to run.
func rabbitmqVersion() string {
	if _, err := os.Stat(rabbitmqServer); err != nil {
		return ""
	}
	dirs, _ := filepath.Glob(filepath.Join(rabbitmqLib, "rabbitmq_server-*"))
	if len(dirs) == 0 {
		return "installed"
	}
	return "RabbitMQ " + strings.TrimPrefix(filepath.Base(dirs[0]), "rabbitmq_server-")
}

// signingKey is the issuer's one key of the run, as every target is told: its
// kid, its JWKS URL (imb fetches it) and its public key as PEM (RabbitMQ reads a
// file).
type signingKey struct {
	KID string
	PEM []byte
}

// fetchSigningKey reads the issuer's JWKS and returns its key. The harness's
// issuer signs with one key for the whole run; more than one would mean tokens a
// target configured with one key could not check, so it is refused.
func fetchSigningKey(ctx context.Context, jwksURL string) (signingKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return signingKey{}, fmt.Errorf("jwks: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return signingKey{}, fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return signingKey{}, fmt.Errorf("jwks: HTTP %d", resp.StatusCode)
	}
	var set struct {
		Keys []struct {
			Kty, Crv, Kid, X, Y string
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return signingKey{}, fmt.Errorf("jwks: %w", err)
	}
	if len(set.Keys) != 1 {
		return signingKey{}, fmt.Errorf("jwks: %d keys, want the run's one key", len(set.Keys))
	}
	k := set.Keys[0]
	if k.Kty != "EC" || k.Crv != "P-256" || k.Kid == "" {
		return signingKey{}, fmt.Errorf("jwks: key %q is %s/%s, want an EC P-256 key with a kid", k.Kid, k.Kty, k.Crv)
	}
	x, err1 := base64.RawURLEncoding.DecodeString(k.X)
	y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
	if err1 != nil || err2 != nil {
		return signingKey{}, errors.New("jwks: bad coordinates")
	}
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return signingKey{}, fmt.Errorf("jwks: %w", err)
	}
	return signingKey{KID: k.Kid, PEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}, nil
}

// rabbitmqConf is the node's rabbitmq.conf. The OAuth2 backend alone
// authenticates (the full module name: 3.10 does not take the short alias);
// anonymous MQTT is off. TCP_NODELAY and the backlog match imb's listener; logs
// at warning level, as imb logs no line per connect either.
const rabbitmqConf = `listeners.tcp.1 = 127.0.0.1:%d
mqtt.listeners.tcp.1 = 127.0.0.1:%d
mqtt.allow_anonymous = false
mqtt.tcp_listen_options.nodelay = true
mqtt.tcp_listen_options.backlog = 4096
auth_backends.1 = rabbit_auth_backend_oauth2
auth_oauth2.resource_server_id = %s
auth_oauth2.default_key = %s
auth_oauth2.signing_keys.%s = %s
auth_oauth2.algorithms.1 = ES256
log.file = false
log.console = true
log.console.level = warning
`

// rabbitmqNode is what stopping a node needs.
type rabbitmqNode struct {
	scratch string
	beam    int       // beam.smp's pid: the broker's CPU and memory
	epmd    *exec.Cmd // the node's own port mapper
	exited  chan struct{}
}

// startRabbitMQ writes the node's files into a fresh scratch directory, starts an
// epmd of its own and then the node, and waits until the MQTT listener accepts.
func (p *brokerProc) startRabbitMQ(ctx context.Context, key signingKey, nodeSeq int) error {
	scratch, err := os.MkdirTemp("", "loadtest-rabbitmq-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	n := &rabbitmqNode{scratch: scratch, exited: make(chan struct{})}
	p.rabbit = n
	ports := make([]int, 4) // AMQP, MQTT, distribution, epmd
	for i := range ports {
		if ports[i], err = freeport.Port(); err != nil {
			return err
		}
	}
	keyFile := filepath.Join(scratch, "signing-key.pem")
	conf := filepath.Join(scratch, "rabbitmq.conf")
	plugins := filepath.Join(scratch, "enabled_plugins")
	files := []struct {
		path string
		data string
	}{
		{keyFile, string(key.PEM)},
		{conf, fmt.Sprintf(rabbitmqConf, ports[0], ports[1], rabbitmqResource, key.KID, key.KID, keyFile)},
		{plugins, "[rabbitmq_mqtt,rabbitmq_auth_backend_oauth2].\n"},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, []byte(f.data), 0o600); err != nil {
			return fmt.Errorf("rabbitmq files: %w", err)
		}
	}
	epmdPort := strconv.Itoa(ports[3])
	// The node's own epmd, in the foreground so that it stays the harness's child:
	// the node finds it on ERL_EPMD_PORT and starts none of its own.
	n.epmd = exec.Command(epmdPath, "-address", "127.0.0.1", "-port", epmdPort)
	n.epmd.Stdout, n.epmd.Stderr = p.logFile, p.logFile
	if err := n.epmd.Start(); err != nil {
		return fmt.Errorf("epmd: %w", err)
	}
	if err := waitListening(ctx, "127.0.0.1:"+epmdPort, 10*time.Second, nil); err != nil {
		return fmt.Errorf("epmd: %w", err)
	}
	node := fmt.Sprintf("loadtest-%d-%d@localhost", os.Getpid(), nodeSeq)
	cmd := exec.Command(rabbitmqServer)
	cmd.Env = append(os.Environ(),
		"HOME="+scratch, // the Erlang cookie
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_CONFIG_FILE="+conf,
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(scratch, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(scratch, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+plugins,
		"RABBITMQ_MNESIA_BASE="+filepath.Join(scratch, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(scratch, "log"),
		"RABBITMQ_LOGS=-",
		"RABBITMQ_PID_FILE="+filepath.Join(scratch, "node.pid"),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[2]),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_EPMD_PORT="+epmdPort,
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
	)
	cmd.Stdout, cmd.Stderr = p.logFile, p.logFile
	// Its own process group, so that a terminal's interrupt reaches the harness
	// alone and the harness stops the node in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait(); close(n.exited) }()
	p.addr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	if err := waitListening(ctx, p.addr, rabbitmqStartTimeout, n.exited); err != nil {
		return fmt.Errorf("rabbitmq node: %w", err)
	}
	// The MQTT listener opens when its plugin starts, which may be before the
	// OAuth2 backend's: CONNECTs then find no one to check their token and are
	// closed. The node is ready once RabbitMQ says it has booted.
	actx, cancel := context.WithTimeout(ctx, rabbitmqStartTimeout)
	defer cancel()
	await := exec.CommandContext(actx, filepath.Join(filepath.Dir(rabbitmqServer), "rabbitmqctl"), "await_startup")
	await.Env = cmd.Env
	await.Stdout, await.Stderr = p.logFile, p.logFile
	if err := await.Run(); err != nil {
		return fmt.Errorf("rabbitmq node: rabbitmqctl await_startup: %w", err)
	}
	if n.beam = findDescendant(cmd.Process.Pid, "beam.smp"); n.beam == 0 {
		return errors.New("rabbitmq node: no beam.smp process under the start script")
	}
	return nil
}

// errExitedAtStart: the child ended before it listened. With free ports picked
// before the child binds them, another process on the machine (a parallel test
// package) can take one in between; starting again with new ports is the cure.
var errExitedAtStart = errors.New("exited at start")

// waitListening dials addr until it accepts, the process behind it exits, ctx
// ends or timeout passes.
func waitListening(ctx context.Context, addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errExitedAtStart
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not listening on %s within %s", addr, timeout)
}

// findDescendant returns the pid of the first process named comm among root's
// descendants (0: none). The start script runs the Erlang VM as its child.
func findDescendant(root int, comm string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	names := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		open, closing := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(string(stat[closing+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		parent[pid], names[pid] = ppid, string(stat[open+1:closing])
	}
	for pid, name := range names {
		if name != comm {
			continue
		}
		for a := parent[pid]; a > 1; a = parent[a] {
			if a == root {
				return pid
			}
		}
	}
	return 0
}

// stopRabbitMQ stops the node the harness started: SIGTERM to its Erlang VM
// (which shuts the node down in order), SIGKILL to the VM and the start script
// after 30 s, then the node's epmd; the scratch directory goes last.
func (p *brokerProc) stopRabbitMQ() {
	n := p.rabbit
	if p.cmd != nil && p.cmd.Process != nil {
		if n.beam != 0 {
			_ = syscall.Kill(n.beam, syscall.SIGTERM)
		} else {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-n.exited:
		case <-time.After(30 * time.Second):
			if n.beam != 0 {
				_ = syscall.Kill(n.beam, syscall.SIGKILL)
			}
			_ = p.cmd.Process.Kill()
			<-n.exited
		}
	}
	if n.epmd != nil && n.epmd.Process != nil {
		_ = n.epmd.Process.Kill()
		_ = n.epmd.Wait()
	}
	_ = os.RemoveAll(n.scratch)
}
