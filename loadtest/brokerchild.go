package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"imb/broker"
)

// Broker child modes.
const (
	modeAllowAll           = "allow-all"
	modeJWT                = "jwt"
	modeIntrospect         = "introspect"
	modeIntrospectUncached = "introspect-uncached"
)

// harnessPolicy is the policy the imb targets run under unless --policy names
// another: the thing and fleet rules of the default topics.yaml, so that every
// publish, subscription and delivery of the scenarios is checked by real rules
// with placeholders, wildcards and a deny rule in the way.
const harnessPolicy = `version: 1
rules:
  - name: thing-telemetry
    effect: allow
    actions: [publish]
    topics: ["things/{sub}/telemetry/#"]
    scopes: [publish]
    max_qos: 1
  - name: thing-commands
    effect: allow
    actions: [subscribe]
    topics: ["things/{sub}/commands/#"]
    scopes: [subscribe]
    max_qos: 1
  - name: no-device-firmware
    effect: deny
    actions: [publish]
    topics: ["things/+/firmware/#"]
    scopes: [publish, subscribe]
  - name: fleet-read
    effect: allow
    actions: [subscribe]
    topics: ["things/+/telemetry/#", "things/+/state"]
    scopes: ["fleet:read"]
    max_qos: 1
  - name: fleet-command
    effect: allow
    actions: [publish]
    topics: ["things/+/commands/#"]
    scopes: ["fleet:command"]
    max_qos: 1
limits:
  # The noisy-neighbour scenario's flooder (floodID, floodLimit, floodBurst):
  # never disconnected, so that it floods for the whole run. No other
  # identity has a limit.
  - name: flooder
    subjects: [lt-flood]
    publishes: 20
    publish_burst: 20
    flood_grace: 0s
`

// brokerMain is the hidden `broker` subcommand: one imb broker on a loopback port
// for the harness to measure from outside (its /proc entry is the broker alone).
// It prints "mqtt ADDR" when listening, answers "gc" on stdin with "gc ok", and
// shuts down when stdin closes or on SIGTERM.
func brokerMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", modeAllowAll, "allow-all | jwt | introspect | introspect-uncached")
	listen := fs.String("listen", "127.0.0.1:0", "MQTT listen address (loopback)")
	issuer := fs.String("issuer", "", "token issuer URL (jwt)")
	jwksURL := fs.String("jwks-url", "", "key set URL (jwt)")
	introspectURL := fs.String("introspect-url", "", "RFC 7662 endpoint (introspect modes)")
	clientID := fs.String("client-id", "", "introspection client id (secret from IMB_CLIENT_SECRET)")
	policy := fs.String("policy", "", "topics.yaml (default: the harness policy)")
	maxConns := fs.Int("introspect-max-conns", 0, "connections to the introspection endpoint (0: imb's default, 256)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	heapprofile := fs.String("heapprofile", "", "at every gc request, write a heap profile to PREFIX-N.pprof (N = 1, 2, ...)")
	embed := fs.String("cluster-embed", "", "cluster node: embedded NATS route address HOST:PORT")
	routes := fs.String("cluster-routes", "", "cluster node: the other nodes' route URLs, comma-separated")
	natsURLs := fs.String("cluster-nats", "", "cluster node: join the NATS cluster at these URLs, comma-separated")
	nodeName := fs.String("node-name", "", "cluster node: its name")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, cleanup, err := brokerConfig(*mode, *listen, *issuer, *jwksURL, *introspectURL, *clientID, *policy, *maxConns, log)
	if err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 2
	}
	defer cleanup()
	if *embed != "" || *natsURLs != "" {
		cfg.Cluster = broker.ClusterConfig{Embed: *embed, NodeName: *nodeName, LostGrace: broker.Defaults().Cluster.LostGrace}
		if *routes != "" {
			cfg.Cluster.Routes = strings.Split(*routes, ",")
		}
		if *natsURLs != "" {
			cfg.Cluster.NATS = strings.Split(*natsURLs, ",")
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "broker: cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "broker: cpuprofile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 1
	}
	defer b.Close()
	fmt.Fprintf(stdout, "mqtt %s\n", b.Addr("tcp"))
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	heaps := 0
	for {
		select {
		case <-ctx.Done():
			return 0
		case l, ok := <-lines:
			if !ok {
				return 0
			}
			if l == "gc" {
				runtime.GC()
				debug.FreeOSMemory()
				if *heapprofile != "" {
					heaps++
					if err := writeHeapProfile(fmt.Sprintf("%s-%d.pprof", *heapprofile, heaps)); err != nil {
						fmt.Fprintf(stderr, "broker: heapprofile: %v\n", err)
					}
				}
				fmt.Fprintln(stdout, "gc ok")
			}
		}
	}
}

// brokerConfig builds the broker configuration of a mode.
func brokerConfig(mode, listen, issuer, jwksURL, introspectURL, clientID, policy string, maxConns int, log *slog.Logger) (broker.Config, func(), error) {
	cfg := broker.Defaults()
	cfg.MQTTAddr = listen
	cfg.AdminAddr = ""
	cfg.Logger = log
	cfg.Audit = slog.New(slog.DiscardHandler)
	cfg.RevalidateInterval = -1 // revocation checks are not what is measured
	cleanup := func() {}
	if policy == "" {
		dir, err := os.MkdirTemp("", "imb-loadtest-policy-")
		if err != nil {
			return cfg, cleanup, err
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
		policy = dir + "/topics.yaml"
		if err := os.WriteFile(policy, []byte(harnessPolicy), 0o600); err != nil {
			cleanup()
			return cfg, func() {}, err
		}
	}
	cfg.PolicyFile = policy
	// One load generator on loopback stands in for a fleet of addresses, and the runs
	// measure throughput: the per-address and pre-authentication bounds would only
	// measure themselves (0x9F and closed sockets instead of connections).
	cfg.MaxPendingConnects, cfg.MaxPendingConnectsPerAddr = -1, -1
	cfg.MaxUpstreamValidations, cfg.UpstreamValidationRate = -1, -1
	secret := os.Getenv("IMB_CLIENT_SECRET")
	switch mode {
	case modeAllowAll:
		cfg.AllowAll = true
	case modeJWT:
		if issuer == "" || jwksURL == "" {
			return cfg, cleanup, errors.New("mode jwt needs --issuer and --jwks-url")
		}
		cfg.Issuer, cfg.JWKSURL, cfg.Audience = issuer, jwksURL, []string{"imb"}
	case modeIntrospect, modeIntrospectUncached:
		if introspectURL == "" || clientID == "" {
			return cfg, cleanup, errors.New("introspection modes need --introspect-url and --client-id")
		}
		cfg.IntrospectURL, cfg.ClientID, cfg.ClientSecret = introspectURL, clientID, secret
		if mode == modeIntrospectUncached {
			cfg.CacheSize = -1
		}
		if maxConns > 0 {
			cfg.IntrospectMaxConns = maxConns
		}
	default:
		return cfg, cleanup, fmt.Errorf("--mode %q: want allow-all, jwt, introspect or introspect-uncached", mode)
	}
	return cfg, cleanup, nil
}

// writeHeapProfile writes the heap profile (in use and allocated since start) to
// path, and beside it (.txt for .pprof) where the process's memory is: the heap
// profile leaves out goroutine stacks and the runtime's own.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	summary := fmt.Sprintf("goroutines %d\nheap_inuse %d\nheap_idle %d\nheap_released %d\nstack_inuse %d\n"+
		"mspan_inuse %d\nother_sys %d\nsys %d\n", runtime.NumGoroutine(), m.HeapInuse, m.HeapIdle,
		m.HeapReleased, m.StackInuse, m.MSpanInuse, m.OtherSys, m.Sys)
	return os.WriteFile(strings.TrimSuffix(path, ".pprof")+".txt", []byte(summary), 0o600)
}
