package main

import (
	"context"
	"errors"
	"flag"
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
	logFormat string
	logLevel  string
}

func runDev(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return devMain(ctx, args, stdout, stderr)
}

// devMain runs imb dev until ctx ends.
func devMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o devOptions
	fs := flag.NewFlagSet("imb dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dataDir, "data", ".imb-dev", "directory for the dev identity store and the broker's sessions")
	fs.BoolVar(&o.inMemory, "in-memory", false, "keep everything in memory (nothing survives a restart)")
	fs.StringVar(&o.amListen, "am-listen", "127.0.0.1:8080", "listen address of the AM-compatible dev server (base URL http://ADDR/am)")
	fs.StringVar(&o.mqttAddr, "mqtt-addr", "127.0.0.1:1883", "MQTT over TCP listen address")
	fs.StringVar(&o.wsAddr, "ws-addr", "127.0.0.1:8083", "MQTT over WebSocket listen address (empty disables)")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9100", "admin HTTP address: /healthz, /readyz, /metrics")
	fs.StringVar(&o.policy, "policy", "topics.yaml", "topics.yaml policy file")
	fs.StringVar(&o.amConfig, "am-config", "", "amdev settings file (trees, clients, token lifetimes; docs/amdev.md)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	for _, a := range []string{o.amListen, o.mqttAddr, o.wsAddr, o.adminAddr} {
		if a != "" && !loopback(a) {
			fmt.Fprintf(stderr, "imb dev: %s is not a loopback address; imb dev serves this machine only (use imb serve and imb am to expose them)\n", a)
			return 2
		}
	}
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "imb dev:", err)
		return 2
	}

	amCfg := amdev.Config{Listen: o.amListen, InMemory: o.inMemory, ConfigFile: o.amConfig, Logger: log.With("component", "amdev")}
	if !o.inMemory {
		amCfg.DataDir = filepath.Join(o.dataDir, "am")
	}
	am, err := amdev.Start(ctx, amCfg)
	if err != nil {
		fmt.Fprintln(stderr, "imb dev: identity server:", err)
		return 1
	}
	defer am.Close()
	brokerClient, ok := am.BrokerClient()
	if !ok {
		fmt.Fprintln(stderr, "imb dev: the identity server has no broker introspection client configured")
		return 1
	}

	cfg := broker.Defaults()
	cfg.MQTTAddr, cfg.WSAddr, cfg.AdminAddr = o.mqttAddr, o.wsAddr, o.adminAddr
	cfg.PolicyFile = o.policy
	cfg.Issuer = am.Issuer()
	cfg.IntrospectURL = am.IntrospectionURL()
	cfg.ClientID, cfg.ClientSecret = brokerClient.ID, brokerClient.Secret
	cfg.Logger = log.With("component", "broker")
	if !o.inMemory {
		cfg.DataDir = filepath.Join(o.dataDir, "broker")
	}
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "imb dev: broker:", err)
		return 1
	}
	defer b.Close()

	if err := waitReady(ctx, b); err != nil {
		fmt.Fprintln(stderr, "imb dev: broker not ready:", err)
		return 1
	}
	if err := printDevGuide(ctx, stdout, am, b); err != nil {
		fmt.Fprintln(stderr, "imb dev:", err)
		return 1
	}
	serveUntilSignal(ctx, b, log)
	return 0
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
