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
	"syscall"
	"time"

	"imb/amdev"
	"imb/broker"
)

// Demo identities that imb dev creates and prints connection lines for.
const (
	demoThingID = "demo-thermostat"
)

// devOptions are imb dev's flags.
type devOptions struct {
	dataDir   string
	inMemory  bool
	amListen  string
	mqttAddr  string
	wsAddr    string
	adminAddr string
	policy    string
	amConfig  string
	log       *logFlags
}

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
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9100", "admin HTTP address: /healthz, /readyz, /metrics")
	fs.StringVar(&o.policy, "policy", "", "topics.yaml policy `FILE` (default ./topics.yaml, else the built-in default policy)")
	fs.StringVar(&o.amConfig, "am-config", "", "amdev settings file (trees, clients, token lifetimes; docs/amdev.md)")
	o.log = addLogFlags(fs.FlagSet, "info")
	if code := fs.parse(args, 0, stdout, stderr); code >= 0 {
		return code
	}
	for _, a := range []struct{ flag, addr string }{{"am-listen", o.amListen}, {"mqtt-addr", o.mqttAddr}, {"ws-addr", o.wsAddr}, {"admin-addr", o.adminAddr}} {
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
	for _, a := range []struct{ flag, addr string }{{"--mqtt-addr", o.mqttAddr}, {"--ws-addr", o.wsAddr}, {"--admin-addr", o.adminAddr}} {
		if a.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			return startFailure(stderr, "imb dev", &broker.ListenError{Addr: a.addr, Err: err}, func(string) string { return a.flag })
		}
		_ = ln.Close()
	}

	amCfg := amdev.Config{Listen: o.amListen, InMemory: o.inMemory, ConfigFile: o.amConfig, Logger: log}
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
	cfg.MQTTAddr, cfg.WSAddr, cfg.AdminAddr = o.mqttAddr, o.wsAddr, o.adminAddr
	cfg.PolicyFile = o.policy
	if !usePolicy(&cfg, "imb dev", stderr) {
		return exitUsage
	}
	cfg.Issuer = am.Issuer()
	cfg.Audience = devAudience(am)
	cfg.IntrospectURL = am.IntrospectionURL()
	cfg.ClientID, cfg.ClientSecret = brokerClient.ID, brokerClient.Secret
	cfg.Logger = log.With("component", "broker")
	if !o.inMemory {
		cfg.DataDir = filepath.Join(o.dataDir, "broker")
	}
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		return startFailure(stderr, "imb dev", err, serveFlagOf)
	}
	defer b.Close()

	if err := waitReady(ctx, b); err != nil {
		fmt.Fprintln(stderr, "imb dev: broker not ready:", err)
		return exitRuntime
	}
	if err := printDevGuide(ctx, stdout, am, b); err != nil {
		fmt.Fprintln(stderr, "imb dev:", err)
		return exitRuntime
	}
	serveUntilSignal(ctx, b, log)
	return exitOK
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
	p("  MQTT broker                    mqtt://%s", b.Addr("tcp"))
	if ws := b.Addr("ws"); ws != "" {
		p("  MQTT over WebSocket            ws://%s", ws)
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
	p("Register and authenticate things as the walk-through does (examples/README.md):")
	p("  go run ./examples/thing/manual-registration -url %s", am.URL())
	p("  go run ./examples/thing/dynamic-registration/pop-cert -url %s -name dynamic-thing", am.URL())
	p("  go run ./examples/thing/thermostat -url %s -broker %s", am.URL(), b.Addr("tcp"))
	p("")
	p("Stop with Ctrl-C.")
	return nil
}
