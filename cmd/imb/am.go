package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"imb/amdev"
)

// runAM runs the AM-compatible development server until SIGINT or SIGTERM.
func runAM(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runAMContext(ctx, args, stdout, stderr)
}

// runAMContext is runAM with the stop signal as a context, so tests can end it.
func runAMContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("imb am", "imb am [flags]", "Runs amdev, an AM-compatible development identity server (see docs/amdev.md).")
	listen := fs.String("listen", "127.0.0.1:8080", "TCP address to listen on")
	baseURL := fs.String("base-url", "", "externally visible base URL (default http://<listen address>/am)")
	dataDir := fs.String("data", "./.imb-dev/am", "data directory of the store")
	inMemory := fs.Bool("in-memory", false, "keep nothing: use a temporary store removed on exit")
	configFile := fs.String("config", "", "YAML file overriding the default AM configuration")
	insecureDefaults := fs.Bool("insecure-defaults", false, "listen on a non-loopback address although accounts keep their documented development passwords and secrets")
	logOpts := addLogFlags(fs.FlagSet, "info")
	if code := fs.parse(args, 0, stdout, stderr); code >= 0 {
		return code
	}
	logger, err := logOpts.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "imb am:", err)
		return exitUsage
	}
	if !loopback(*listen) && !*insecureDefaults {
		settings := amdev.DefaultSettings()
		if *configFile != "" {
			var err error
			if settings, err = amdev.LoadSettings(*configFile); err != nil {
				fmt.Fprintf(stderr, "imb am: %v\n", err)
				return exitUsage
			}
		}
		if weak := settings.DocumentedSecrets(); len(weak) > 0 {
			fmt.Fprintf(stderr, "imb am: refusing to listen on %s, which is not a loopback address: %s still have the documented "+
				"development passwords or secrets, so anyone who can reach it can log in as them. Set your own in a --config file "+
				"(docs/amdev.md), listen on 127.0.0.1, or pass --insecure-defaults to accept the risk.\n",
				*listen, strings.Join(weak, ", "))
			return exitUsage
		}
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	srv, err := amdev.Start(startCtx, amdev.Config{Listen: *listen, BaseURL: *baseURL, DataDir: *dataDir,
		InMemory: *inMemory, ConfigFile: *configFile, Logger: logger})
	cancel()
	if err != nil {
		return amStartFailure(stderr, "imb am", "--listen", *listen, err)
	}
	printAMInfo(stdout, srv)
	<-ctx.Done()
	logger.Info("shutting down")
	if err := srv.Close(); err != nil {
		fmt.Fprintf(stderr, "imb am: close: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

// printAMInfo tells the user where amdev is and how to log in. It prints a
// password or secret only while it is a documented development default:
// one set in a config file stays out of the terminal and its logs.
func printAMInfo(w io.Writer, srv *amdev.Server) {
	st := srv.Settings()
	documented := map[string]bool{}
	for _, a := range st.DocumentedSecrets() {
		documented[a] = true
	}
	secret := func(account, value string) string {
		if documented[account] {
			return value + " (development default)"
		}
		return "(set in the config file)"
	}
	fmt.Fprintf(w, "amdev ready: %s\n", srv.URL())
	fmt.Fprintf(w, "  issuer:        %s\n", srv.Issuer())
	fmt.Fprintf(w, "  jwks:          %s\n", srv.JWKSURL())
	fmt.Fprintf(w, "  introspection: %s\n", srv.IntrospectionURL())
	fmt.Fprintf(w, "  admin:         %s / %s\n", st.Admin.Username, secret("admin "+st.Admin.Username, st.Admin.Password))
	if u := st.Users[amdev.DemoUserID]; u != nil {
		fmt.Fprintf(w, "  user:          %s / %s, approves device-grant requests\n", amdev.DemoUserID, secret("user "+amdev.DemoUserID, u.Password))
	}
	for _, id := range []string{amdev.CloudAppClientID, amdev.BrokerClientID} {
		if c, ok := srv.Client(id); ok {
			fmt.Fprintf(w, "  client:        %s / %s scopes %v\n", c.ID, secret("client "+c.ID, c.Secret), c.Scopes)
		}
	}
}
