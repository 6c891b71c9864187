package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"imb/broker"
)

// listFlag is a repeatable string flag.
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
	logFormat  string
	logLevel   string
}

// serveFlags declares imb serve's flags. Each flag writes straight into cfg; the
// caller applies them after the config file, so a flag given overrides the file.
func serveFlags(fs *flag.FlagSet, cfg *broker.Config, o *serveOptions) {
	fs.StringVar(&o.configFile, "config", "", "configuration file (imb.yaml); flags override it")
	fs.BoolVar(&o.check, "check", false, "check the configuration and the policy, print a summary and exit (0 valid, 2 invalid)")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", cfg.MQTTAddr, "MQTT over TCP listen address (empty disables)")
	fs.StringVar(&cfg.WSAddr, "ws-addr", cfg.WSAddr, "MQTT over WebSocket listen address")
	fs.StringVar(&cfg.WSSAddr, "wss-addr", cfg.WSSAddr, "MQTT over WebSocket+TLS listen address")
	fs.StringVar(&cfg.TLSAddr, "tls-addr", cfg.TLSAddr, "MQTT over TLS listen address")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate chain for TLS listeners")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM private key for TLS listeners")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", cfg.TLSClientCA, "PEM CA bundle; when set TLS clients must present a certificate")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "admin HTTP address: /healthz, /readyz, /metrics (empty disables)")
	fs.StringVar(&cfg.PolicyFile, "policy", cfg.PolicyFile, "topics.yaml policy file (reloaded on change and on SIGHUP)")
	fs.StringVar(&cfg.Issuer, "issuer", cfg.Issuer, "OIDC issuer URL: JWT access tokens are validated against its keys (discovery)")
	fs.StringVar(&cfg.JWKSURL, "jwks-url", cfg.JWKSURL, "JWKS URL, instead of discovery (needs --issuer)")
	fs.StringVar(&cfg.JWKSFile, "jwks-file", cfg.JWKSFile, "local JWKS file, instead of discovery (needs --issuer)")
	fs.Var((*listFlag)(&cfg.Audience), "audience", "accepted token audience (repeatable); unset: aud is not checked")
	fs.StringVar(&cfg.IntrospectURL, "introspect-url", cfg.IntrospectURL, "RFC 7662 introspection endpoint")
	fs.StringVar(&cfg.Introspect, "introspect", cfg.Introspect, "introspection mode: always, opaque-only, never or auto (default)")
	fs.StringVar(&cfg.ClientID, "client-id", cfg.ClientID, "the broker's OAuth2 client id, for introspection")
	fs.StringVar(&cfg.ClientSecret, "client-secret", cfg.ClientSecret, "the broker's client secret (prefer IMB_CLIENT_SECRET or --client-secret-file)")
	fs.StringVar(&cfg.ClientSecretFile, "client-secret-file", cfg.ClientSecretFile, "file holding the broker's client secret (e.g. a systemd credential)")
	fs.DurationVar(&cfg.RevalidateInterval, "revalidate-interval", cfg.RevalidateInterval, "how often introspected tokens are checked again for revocation")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for persistent sessions, retained and in-flight messages (empty: memory only)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, o, code := parseServe(args, stderr)
	if code >= 0 {
		return code
	}
	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "imb serve:", err)
		return 2
	}
	cfg.Logger = log
	if o.check {
		summary, err := broker.Check(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "imb serve:", err)
			return 2
		}
		fmt.Fprintln(stdout, summary)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "imb serve:", err)
		return 1
	}
	for _, l := range [][2]string{{"mqtt", "tcp"}, {"tls", "tls"}, {"ws", "ws"}, {"wss", "wss"}, {"admin", "admin"}} {
		if addr := b.Addr(l[1]); addr != "" {
			fmt.Fprintf(stdout, "imb: %s listening on %s\n", l[0], addr)
		}
	}
	serveUntilSignal(ctx, b, log)
	return 0
}

// serveUntilSignal reloads the policy and the issuer's keys on SIGHUP and returns after a graceful
// shutdown on SIGINT or SIGTERM.
func serveUntilSignal(ctx context.Context, b *broker.Broker, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			_ = b.ReloadPolicy()
			_ = b.ReloadKeys(ctx)
		case <-ctx.Done():
			log.Info("shutting down")
			done := make(chan struct{})
			go func() { _ = b.Close(); close(done) }()
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
func parseServe(args []string, stderr io.Writer) (broker.Config, serveOptions, int) {
	var o serveOptions
	flagCfg := broker.Defaults()
	fs := flag.NewFlagSet("imb serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	serveFlags(fs, &flagCfg, &o)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flagCfg, o, 0
		}
		return flagCfg, o, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "imb serve: unexpected argument %q\n", fs.Arg(0))
		return flagCfg, o, 2
	}
	cfg := broker.Defaults()
	if o.configFile != "" {
		if err := loadConfigFile(o.configFile, &cfg); err != nil {
			fmt.Fprintln(stderr, "imb serve:", err)
			return cfg, o, 2
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
		if f.Name == "audience" {
			cfg.Audience = flagCfg.Audience // repeatable: the list as given replaces the file's
			return
		}
		_ = apply.Set(f.Name, f.Value.String())
	})
	return cfg, o, -1
}

// loadConfigFile reads imb.yaml strictly: an unknown key is an error with its line.
func loadConfigFile(path string, cfg *broker.Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
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
