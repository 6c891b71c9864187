package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"imb/authz"
	"imb/authz/defaultpolicy"
	"imb/broker"
)

// listFlag is a repeatable string flag; each value is one entry.
type listFlag []string

func (s *listFlag) String() string { return strings.Join(*s, ",") }
func (s *listFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// serveOptions are the command-line settings of imb serve that are not part of
// broker.Config.
type serveOptions struct {
	check      bool
	configFile string
	log        *logFlags
}

// serveFlags declares imb serve's flags. Each flag writes straight into cfg; the
// caller applies them after the config file, so a flag given overrides the file.
func serveFlags(fs *flag.FlagSet, cfg *broker.Config, o *serveOptions) {
	fs.StringVar(&o.configFile, "config", "", "configuration `FILE` (imb.yaml); flags override it")
	fs.BoolVar(&o.check, "check", false, "check the configuration and the policy, print a summary and exit (0 valid, 2 invalid)")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", cfg.MQTTAddr, "MQTT over TCP listen address (empty disables)")
	fs.StringVar(&cfg.WSAddr, "ws-addr", cfg.WSAddr, "MQTT over WebSocket listen address")
	fs.StringVar(&cfg.WSSAddr, "wss-addr", cfg.WSSAddr, "MQTT over WebSocket+TLS listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP door listen address: POST/GET /topics/... with a bearer token (docs/http.md; off by default)")
	fs.StringVar(&cfg.HTTPSAddr, "https-addr", cfg.HTTPSAddr, "HTTP door over TLS listen address (needs --tls-cert and --tls-key)")
	fs.StringVar(&cfg.TLSAddr, "tls-addr", cfg.TLSAddr, "MQTT over TLS listen address")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate chain for TLS listeners")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM private key for TLS listeners")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", cfg.TLSClientCA, "PEM CA bundle; when set TLS clients must present a certificate")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "admin HTTP address: /healthz, /readyz, /metrics (empty disables)")
	fs.StringVar(&cfg.PolicyFile, "policy", "", "topics.yaml policy `FILE` (reloaded on change and on SIGHUP); default ./topics.yaml, else the built-in default policy")
	fs.StringVar(&cfg.Issuer, "issuer", cfg.Issuer, "OIDC issuer URL: JWT access tokens are validated against its keys (discovery)")
	fs.StringVar(&cfg.JWKSURL, "jwks-url", cfg.JWKSURL, "JWKS URL, instead of discovery (needs --issuer)")
	fs.StringVar(&cfg.JWKSFile, "jwks-file", cfg.JWKSFile, "local JWKS file, instead of discovery (needs --issuer)")
	fs.Var((*audienceFlag)(&cfg.Audience), "audience", "accepted token audience: a client id whose tokens may connect (repeatable, or comma-separated)")
	fs.BoolVar(&cfg.AudienceAny, "audience-any", cfg.AudienceAny, "with --issuer and no --audience: accept the issuer's tokens for any client (else imb serve refuses to start)")
	fs.StringVar(&cfg.IntrospectURL, "introspect-url", cfg.IntrospectURL, "RFC 7662 introspection endpoint")
	fs.StringVar(&cfg.Introspect, "introspect", cfg.Introspect, "introspection mode: always, opaque-only, never or auto (default)")
	fs.StringVar(&cfg.ClientID, "client-id", cfg.ClientID, "the broker's OAuth2 client id, for introspection")
	fs.StringVar(&cfg.ClientSecret, "client-secret", cfg.ClientSecret, "the broker's client secret (prefer IMB_CLIENT_SECRET or --client-secret-file)")
	fs.StringVar(&cfg.ClientSecretFile, "client-secret-file", cfg.ClientSecretFile, "file holding the broker's client secret (e.g. a systemd credential)")
	fs.StringVar(&cfg.TokenField, "token-field", cfg.TokenField, "CONNECT field that carries the token: password, username (empty password) or either")
	fs.DurationVar(&cfg.RevalidateInterval, "revalidate-interval", cfg.RevalidateInterval, "how often introspected tokens are checked again for revocation")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for persistent sessions, retained and in-flight messages (empty: memory only)")
	fs.Var((*audienceFlag)(&cfg.Cluster.NATS), "cluster-nats", "join the NATS JetStream cluster at these `URL[,URL...]` as a node of an imb cluster")
	fs.StringVar(&cfg.Cluster.NATSCreds, "cluster-nats-creds", cfg.Cluster.NATSCreds, "NATS credentials `FILE` for --cluster-nats")
	fs.StringVar(&cfg.Cluster.Embed, "cluster-embed", cfg.Cluster.Embed, "run a NATS node with JetStream in this process, its routes on `HOST:PORT`")
	fs.Var((*audienceFlag)(&cfg.Cluster.Routes), "cluster-routes", "the other embedded nodes' routes, `nats://HOST:PORT,...`")
	fs.StringVar(&cfg.Cluster.NodeName, "node-name", cfg.Cluster.NodeName, "this node's name in the cluster, logs and metrics (default: host name)")
	o.log = addLogFlags(fs, "info")
}

// audienceFlag is --audience: repeatable, and a comma-separated value is a list
// (so that one environment variable can carry several audiences in compose).
type audienceFlag []string

func (a *audienceFlag) String() string { return strings.Join(*a, ",") }
func (a *audienceFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*a = append(*a, s)
		}
	}
	return nil
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, o, code := parseServe(args, stdout, stderr)
	if code >= 0 {
		return code
	}
	log, err := o.log.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "imb serve:", err)
		return exitUsage
	}
	cfg.Logger = log
	if err := cfg.CheckAudience(); err != nil {
		fmt.Fprintln(stderr, "imb serve:", err)
		return exitUsage
	}
	if !usePolicy(&cfg, "imb serve", stderr) {
		return exitUsage
	}
	if o.check {
		summary, err := broker.Check(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "imb serve:", err)
			return exitUsage
		}
		fmt.Fprintln(stdout, summary)
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		return startFailure(stderr, "imb serve", err, serveFlagOf)
	}
	for _, l := range [][2]string{{"mqtt", "tcp"}, {"tls", "tls"}, {"ws", "ws"}, {"wss", "wss"}, {"admin", "admin"}} {
		if addr := b.Addr(l[1]); addr != "" {
			fmt.Fprintf(stdout, "imb: %s listening on %s\n", l[0], addr)
		}
	}
	serveUntilSignal(ctx, log, b)
	return exitOK
}

// usePolicy settles which policy a broker without a policy file named runs:
// ./topics.yaml when there is one, else the built-in default, said in one line.
func usePolicy(cfg *broker.Config, prefix string, stderr io.Writer) bool {
	if cfg.PolicyFile != "" || cfg.Policy != nil {
		return true
	}
	if _, err := os.Stat("topics.yaml"); err == nil {
		cfg.PolicyFile = "topics.yaml"
		return true
	}
	pol, err := defaultpolicy.Load()
	if err != nil { // the build's own test keeps this from happening
		fmt.Fprintf(stderr, "%s: built-in policy: %v\n", prefix, err)
		return false
	}
	cfg.Policy = pol
	fmt.Fprintf(stderr, "%s: no --policy and no ./topics.yaml: using the built-in default policy (`imb policy show-default > topics.yaml` to start your own)\n", prefix)
	return true
}

// serveUntilSignal reloads the policy and the issuer's keys of every broker on SIGHUP and returns after a graceful
// shutdown on SIGINT or SIGTERM.
func serveUntilSignal(ctx context.Context, log *slog.Logger, bs ...*broker.Broker) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			for _, b := range bs {
				_ = b.ReloadPolicy()
				_ = b.ReloadKeys(ctx)
			}
		case <-ctx.Done():
			log.Info("shutting down")
			done := make(chan struct{})
			go func() {
				var wg sync.WaitGroup
				for _, b := range bs {
					wg.Add(1)
					go func() { defer wg.Done(); _ = b.Close() }()
				}
				wg.Wait()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				log.Warn("shutdown took longer than 10s; exiting")
			}
			return
		}
	}
}

// parseServe reads flags and the config file into a broker.Config. code is -1 when
// the caller should go on, else the exit code.
func parseServe(args []string, stdout, stderr io.Writer) (broker.Config, serveOptions, int) {
	var o serveOptions
	flagCfg := broker.Defaults()
	fs := newFlags("imb serve", "imb serve [flags]",
		"Runs the broker. Settings come from --config (imb.yaml), then IMB_CLIENT_SECRET, then the flags given.")
	serveFlags(fs.FlagSet, &flagCfg, &o)
	if code := fs.parse(args, 0, stdout, stderr); code >= 0 {
		return flagCfg, o, code
	}
	cfg := broker.Defaults()
	cfg.PolicyFile = "" // unset: usePolicy decides between ./topics.yaml and the built-in one
	if o.configFile != "" {
		if err := broker.LoadConfigFile(o.configFile, &cfg); err != nil {
			printConfigError(stderr, "imb serve", err)
			return cfg, o, exitUsage
		}
	}
	if s := os.Getenv("IMB_CLIENT_SECRET"); s != "" {
		cfg.ClientSecret = s
	}
	// Flags given on the command line override the file: set just those again, on cfg.
	apply := flag.NewFlagSet("", flag.ContinueOnError)
	apply.SetOutput(io.Discard)
	serveFlags(apply, &cfg, new(serveOptions))
	fs.Visit(func(f *flag.Flag) {
		switch f.Name { // repeatable: the list as given replaces the file's
		case "audience":
			cfg.Audience = flagCfg.Audience
			return
		case "cluster-nats":
			cfg.Cluster.NATS = flagCfg.Cluster.NATS
			return
		case "cluster-routes":
			cfg.Cluster.Routes = flagCfg.Cluster.Routes
			return
		}
		_ = apply.Set(f.Name, f.Value.String())
	})
	return cfg, o, -1
}

// printConfigError prints a configuration file's problems, one FILE:LINE:COL line
// each, as policy problems are printed.
func printConfigError(stderr io.Writer, prefix string, err error) {
	var list authz.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stderr, e)
		}
		return
	}
	fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
}

// newLogger builds the process logger. Mochi logs whole packets on some error paths;
// the "pk" and "packet" attributes are removed so that no token, password or payload
// reaches a log through them.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		switch a.Key {
		case "pk", "packet", "password":
			return slog.Attr{}
		}
		return a
	}}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}
