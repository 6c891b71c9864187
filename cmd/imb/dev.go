package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"imb/amdev"
	"imb/broker"
)

// Demo identities that imb dev creates and prints connection lines for.
const (
	demoThingID = "demo-thermostat"
	// devSSFAudience is the broker as amdev's SETs name it in aud.
	devSSFAudience = "urn:imb:dev:broker"
)

// devOptions are imb dev's flags.
type devOptions struct {
	dataDir   string
	inMemory  bool
	amListen  string
	mqttAddr  string
	wsAddr    string
	httpAddr  string
	adminAddr string
	policy    string
	amConfig  string
	gateway   bool
	nodes     int
	log       *logFlags
}

// maxDevNodes bounds --nodes: each node is a broker and a JetStream server in
// this one process.
const maxDevNodes = 9

func runDev(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return devMain(ctx, args, stdout, stderr)
}

// devMain runs imb dev until ctx ends.
func devMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o devOptions
	fs := newFlags("imb dev", "imb dev [flags]",
		"Runs the broker and amdev, an AM-compatible development identity server, on loopback, and prints\n"+
			"tokens and commands to try. Logs at info: the event=connect audit lines show each connection.")
	fs.StringVar(&o.dataDir, "data", ".imb-dev", "directory for the dev identity store and the broker's sessions")
	fs.BoolVar(&o.inMemory, "in-memory", false, "keep everything in memory (nothing survives a restart)")
	fs.StringVar(&o.amListen, "am-listen", "127.0.0.1:8080", "listen address of the AM-compatible dev server (base URL http://ADDR/am)")
	fs.StringVar(&o.mqttAddr, "mqtt-addr", "127.0.0.1:1883", "MQTT over TCP listen address")
	fs.StringVar(&o.wsAddr, "ws-addr", "127.0.0.1:8083", "MQTT over WebSocket listen address (empty disables)")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8088", "HTTP door listen address: publish and subscribe with a bearer token (empty disables)")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9100", "admin HTTP address: /healthz, /readyz, /metrics")
	fs.StringVar(&o.policy, "policy", "", "topics.yaml policy `FILE` (default ./topics.yaml, else the built-in default policy)")
	fs.StringVar(&o.amConfig, "am-config", "", "amdev settings file (trees, clients, token lifetimes; docs/amdev.md)")
	fs.BoolVar(&o.gateway, "gateway", false, "also run the IoT Gateway (CoAP over DTLS) on udp 127.0.0.1:5683 and 127.0.0.1:5684")
	fs.IntVar(&o.nodes, "nodes", 1, "broker nodes joined as one cluster through embedded NATS JetStream; node i listens on the\n"+
		"MQTT, WebSocket and admin ports plus i-1 (docs/cluster.md)")
	o.log = addLogFlags(fs.FlagSet, "info")
	if code := fs.parse(args, 0, stdout, stderr); code >= 0 {
		return code
	}
	if o.nodes < 1 || o.nodes > maxDevNodes {
		fmt.Fprintf(stderr, "imb dev: `--nodes %d`: want 1 to %d\n", o.nodes, maxDevNodes)
		return exitUsage
	}
	nodes, err := devNodeAddrs(o)
	if err != nil {
		fmt.Fprintln(stderr, "imb dev:", err)
		return exitUsage
	}
	for _, a := range []struct{ flag, addr string }{{"am-listen", o.amListen}, {"mqtt-addr", o.mqttAddr}, {"ws-addr", o.wsAddr}, {"http-addr", o.httpAddr}, {"admin-addr", o.adminAddr}} {
		if a.addr != "" && !loopback(a.addr) {
			fmt.Fprintf(stderr, "imb dev: `--%s %s` is not a loopback address; imb dev serves this machine only (use imb serve and imb am to expose them)\n", a.flag, a.addr)
			return exitUsage
		}
	}
	log, err := o.log.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "imb dev:", err)
		return exitUsage
	}
	// The identity server starts first and logs; an address in use is checked
	// before, so that its message is the first line (the broker binds for real later).
	for _, n := range nodes {
		for _, a := range []struct{ flag, addr string }{{"--mqtt-addr", n.mqtt}, {"--ws-addr", n.ws}, {"--http-addr", n.http}, {"--admin-addr", n.admin}} {
			if a.addr == "" {
				continue
			}
			ln, err := net.Listen("tcp", a.addr)
			if err != nil {
				return startFailure(stderr, "imb dev", &broker.ListenError{Addr: a.addr, Err: err}, func(string) string { return a.flag })
			}
			_ = ln.Close()
		}
	}

	amCfg := amdev.Config{Listen: o.amListen, InMemory: o.inMemory, Logger: log}
	// The administrator's client imb revoke uses: provisioned in amdev's settings for this run, its secret new.
	settings := amdev.DefaultSettings()
	if o.amConfig != "" {
		if settings, err = amdev.LoadSettings(o.amConfig); err != nil {
			fmt.Fprintln(stderr, "imb dev:", err)
			return exitUsage
		}
	}
	adminClient := newDevAdmin(nodes[0].admin, "")
	settings.Clients[adminClient.ClientID] = &amdev.Client{Secret: adminClient.ClientSecret,
		Scopes: []string{devAdminScope}, DefaultScopes: []string{devAdminScope}, GrantTypes: []string{"client_credentials"}}
	amCfg.Settings = &settings
	if !o.inMemory {
		amCfg.DataDir = filepath.Join(o.dataDir, "am")
	}
	am, err := amdev.Start(ctx, amCfg)
	if err != nil {
		return amStartFailure(stderr, "imb dev", "--am-listen", o.amListen, err)
	}
	defer am.Close()
	brokerClient, ok := am.BrokerClient()
	if !ok {
		fmt.Fprintln(stderr, "imb dev: the identity server has no broker introspection client configured")
		return exitUsage
	}

	cfg := broker.Defaults()
	cfg.PolicyFile = o.policy
	if !usePolicy(&cfg, "imb dev", stderr) {
		return exitUsage
	}
	cfg.Issuer = am.Issuer()
	// The administrator's tokens are judged as every token is: their client is one of the audience (its scope
	// grants nothing in the policy).
	cfg.Audience = append(devAudience(am), adminClient.ClientID)
	cfg.AdminScope = devAdminScope
	cfg.IntrospectURL = am.IntrospectionURL()
	cfg.ClientID, cfg.ClientSecret = brokerClient.ID, brokerClient.Secret
	// amdev transmits revocations as Security Event Tokens to node 1's /ssf/events (the cluster tells the others).
	cfg.SSF = broker.SSFConfig{Issuer: am.SSFIssuer(), JWKSURL: am.SSFJWKSURL(), Audience: devSSFAudience}
	cfgs := make([]broker.Config, len(nodes))
	for i, n := range nodes {
		c := cfg
		c.MQTTAddr, c.WSAddr, c.HTTPAddr, c.AdminAddr = n.mqtt, n.ws, n.http, n.admin
		c.Logger = log.With("component", "broker")
		if !o.inMemory {
			c.DataDir = filepath.Join(o.dataDir, n.dataDir)
		}
		if len(nodes) > 1 {
			c.Cluster = broker.ClusterConfig{Embed: n.route, Routes: n.routes, NodeName: n.name}
		}
		cfgs[i] = c
	}
	bs, err := startDevBrokers(ctx, cfgs)
	for _, b := range bs {
		defer b.Close()
	}
	if err != nil {
		return startFailure(stderr, "imb dev", err, serveFlagOf)
	}
	b := bs[0]
	for _, b := range bs {
		if err := waitReady(ctx, b); err != nil {
			fmt.Fprintln(stderr, "imb dev: broker not ready:", err)
			return exitRuntime
		}
	}
	if err := am.AddSSFReceiver(amdev.SSFReceiver{URL: "http://" + b.Addr("admin") + "/ssf/events", Audience: devSSFAudience}); err != nil {
		fmt.Fprintln(stderr, "imb dev:", err)
		return exitRuntime
	}
	if len(bs) > 1 {
		printNodes(stdout, nodes, bs)
	}
	adminClient.Admin, adminClient.TokenURL = "http://"+b.Addr("admin"), am.TokenURL()
	adminFile := devAdminFile()
	if err := adminClient.write(adminFile); err != nil {
		fmt.Fprintln(stderr, "imb dev:", err)
		return exitRuntime
	}
	defer os.Remove(adminFile) // a later imb revoke must not use this run's client
	fmt.Fprintf(stdout, "  administrator's client for imb revoke: %s (imb revoke --sub %s ends the demo thing's connection)\n",
		adminFile, demoThingID)
	if err := printDevGuide(ctx, stdout, am, b); err != nil {
		fmt.Fprintln(stderr, "imb dev:", err)
		return exitRuntime
	}
	if o.gateway {
		gws, err := startDevGateways(ctx, am, b.Addr("tcp"), log.With("component", "gateway"))
		if err != nil {
			fmt.Fprintln(stderr, "imb dev: gateway:", err)
			return exitRuntime
		}
		for _, gw := range gws {
			defer gw.Close()
		}
		printGatewayGuide(stdout, gws)
	}
	serveUntilSignal(ctx, log, bs...)
	return exitOK
}

// devNode is where one imb dev broker node listens.
type devNode struct {
	name                  string
	mqtt, ws, http, admin string
	route                 string   // the embedded NATS node's route address
	routes                []string // the other nodes' route URLs
	dataDir               string   // under --data
}

// devNodeAddrs lays out --nodes N on loopback: node i (from 1) listens on the
// given MQTT, WebSocket and admin ports plus i-1 (a port 0 stays 0: any free
// port), and its NATS routes on a free port, which nothing outside the process
// needs to know. One node is today's imb dev, with no cluster at all.
func devNodeAddrs(o devOptions) ([]devNode, error) {
	nodes := make([]devNode, o.nodes)
	for i := range nodes {
		n := &nodes[i]
		n.name, n.dataDir = fmt.Sprintf("n%d", i+1), "broker"
		if o.nodes > 1 {
			n.dataDir = "broker-" + n.name
		}
		var err error
		for _, a := range []struct {
			flag, addr string
			dst        *string
		}{{"mqtt-addr", o.mqttAddr, &n.mqtt}, {"ws-addr", o.wsAddr, &n.ws}, {"http-addr", o.httpAddr, &n.http}, {"admin-addr", o.adminAddr, &n.admin}} {
			if *a.dst, err = offsetPort(a.addr, i); err != nil {
				return nil, fmt.Errorf("`--%s %s`: %w", a.flag, a.addr, err)
			}
		}
	}
	if o.nodes == 1 {
		return nodes, nil
	}
	for i := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("a free port for the cluster's routes: %w", err)
		}
		nodes[i].route = ln.Addr().String()
		_ = ln.Close()
	}
	for i := range nodes {
		for j := range nodes {
			if j != i {
				nodes[i].routes = append(nodes[i].routes, "nats://"+nodes[j].route)
			}
		}
	}
	return nodes, nil
}

// offsetPort returns addr with its port plus off; an empty addr (disabled) and
// port 0 (any free port) stay as they are.
func offsetPort(addr string, off int) (string, error) {
	if addr == "" || off == 0 {
		return addr, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p+off > 65535 {
		return "", fmt.Errorf("port %q plus %d is not a port", port, off)
	}
	if p == 0 {
		return addr, nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+off)), nil
}

// startDevBrokers starts the nodes together: a cluster node waits for
// JetStream's quorum, which needs the others. It returns every node that
// started, for the caller to close, and the first error.
func startDevBrokers(ctx context.Context, cfgs []broker.Config) ([]*broker.Broker, error) {
	bs := make([]*broker.Broker, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bs[i], errs[i] = broker.Start(ctx, cfgs[i])
		}()
	}
	wg.Wait()
	started := bs[:0]
	for _, b := range bs {
		if b != nil {
			started = append(started, b)
		}
	}
	return started, errors.Join(errs...)
}

// printNodes says which port is which node.
func printNodes(w io.Writer, nodes []devNode, bs []*broker.Broker) {
	fmt.Fprintf(w, "imb dev: %d broker nodes, one cluster (embedded NATS JetStream; docs/cluster.md)\n", len(bs))
	for i, b := range bs {
		line := fmt.Sprintf("  node %-3s  mqtt://%s", nodes[i].name, b.Addr("tcp"))
		if ws := b.Addr("ws"); ws != "" {
			line += "  ws://" + ws
		}
		fmt.Fprintf(w, "%s  admin http://%s\n", line, b.Addr("admin"))
	}
	fmt.Fprintln(w)
}

// devAudience is the clients whose tokens may connect in imb dev: the things'
// clients and the cloud application, never the broker's own introspection
// client (whose secret is as public as the others').
func devAudience(am *amdev.Server) []string {
	var aud []string
	for _, id := range []string{amdev.DefaultClientID, amdev.CustomThingClientID, amdev.CloudAppClientID} {
		if _, ok := am.Client(id); ok {
			aud = append(aud, id)
		}
	}
	return aud
}

// amStartFailure reports why amdev did not start: an address that cannot be
// bound is a usage error named by its flag, anything else a run-time failure.
func amStartFailure(stderr io.Writer, prefix, flagName, addr string, err error) int {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "listen" {
		reason := oe.Err.Error()
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			reason = se.Err.Error()
		}
		fmt.Fprintf(stderr, "%s: `%s %s`: %s\n", prefix, flagName, addr, reason)
		return exitUsage
	}
	fmt.Fprintf(stderr, "%s: identity server: %v\n", prefix, err)
	return exitRuntime
}

// loopback reports whether addr's host is a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// waitReady waits until the broker can validate tokens (amdev's keys fetched).
func waitReady(ctx context.Context, b *broker.Broker) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		err := b.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// printDevGuide tells a new user what runs where and what to try, with freshly
// issued tokens for a demo thing and the demo cloud application.
func printDevGuide(ctx context.Context, w io.Writer, am *amdev.Server, b *broker.Broker) error {
	if err := am.EnsureThing(ctx, amdev.DemoThing{ID: demoThingID, ThingType: "device"}); err != nil {
		return err
	}
	thingTok, err := am.IssueAccessToken(ctx, demoThingID, "", []string{"publish", "subscribe"})
	if err != nil {
		return err
	}
	app, ok := am.CloudAppClient()
	if !ok {
		return errors.New("the identity server has no cloud application client configured")
	}
	appTok, err := am.IssueClientToken(ctx, app.ID, app.Scopes)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(b.Addr("tcp"))
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("imb dev: ready")
	p("")
	p("  AM-compatible identity server  %s   (admin amAdmin / changeit, user bjensen / %s)", am.URL(), amdev.DefaultUserPassword)
	p("  things paired with a user      %s/oauth2/device/pairings   (revoking one disconnects it: docs/revocation.md)", am.URL())
	p("  MQTT broker                    mqtt://%s", b.Addr("tcp"))
	if ws := b.Addr("ws"); ws != "" {
		p("  MQTT over WebSocket            ws://%s", ws)
	}
	if h := b.Addr("http"); h != "" {
		p("  HTTP door (docs/http.md)       http://%s/topics/{topic}", h)
	}
	p("  health and metrics             http://%s/readyz  http://%s/metrics", b.Addr("admin"), b.Addr("admin"))
	p("  policy                         %s", b.Hook().Policy().Summary())
	p("")
	p("Watch all thermostats as the cloud application (token valid 1 h):")
	p("  mosquitto_sub -h %s -p %s -V mqttv5 -i %s -u %s -P '%s' -t 'things/+/telemetry/#' -v", host, port, app.ID, app.ID, appTok)
	p("")
	p("Publish telemetry as the demo thing %s (allowed):", demoThingID)
	p("  mosquitto_pub -h %s -p %s -V mqttv5 -q 1 -i %s -u %s -P '%s' -t things/%s/telemetry/temperature -m 21.5", host, port, demoThingID, demoThingID, thingTok, demoThingID)
	p("")
	p("Publish into another thing's topic (refused: Not authorized):")
	p("  mosquitto_pub -h %s -p %s -V mqttv5 -q 1 -i %s -u %s -P '%s' -t things/other-thing/telemetry/temperature -m 99", host, port, demoThingID, demoThingID, thingTok)
	p("")
	if h := b.Addr("http"); h != "" {
		p("Publish the same over HTTP with the thing's token as a bearer token (docs/http.md):")
		p("  curl -sS -H 'Authorization: Bearer %s' -H 'Content-Type: text/plain' --data-binary 21.5 http://%s/topics/things/%s/telemetry/temperature", thingTok, h, demoThingID)
		p("")
	}
	p("Register and authenticate things as the walk-through does (examples/README.md):")
	p("  go run ./examples/thing/manual-registration -url %s", am.URL())
	p("  go run ./examples/thing/dynamic-registration/pop-cert -url %s -name dynamic-thing", am.URL())
	p("  go run ./examples/thing/thermostat -url %s -broker %s", am.URL(), b.Addr("tcp"))
	p("")
	p("Stop with Ctrl-C.")
	return nil
}
