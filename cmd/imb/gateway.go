package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"imb/gateway"
	"imb/sdk"
)

// gatewayOptions are imb gateway's flags: ForgeRock's gateway binary's, plus the admin listener.
type gatewayOptions struct {
	url, realm, audience, tree, name, address, key, kid, cert, adminAddr, broker string
	timeout                                                                      time.Duration
	log                                                                          *logFlags
}

func gatewayFlags(f *cmdFlags) *gatewayOptions {
	o := &gatewayOptions{}
	f.StringVar(&o.url, "url", "", "AM base URL with its deployment path, e.g. http://am.localtest.me:8080/am (required)")
	f.StringVar(&o.realm, "realm", "/", "AM realm of the gateway and the things behind it")
	f.StringVar(&o.audience, "audience", "", "aud of the gateway's PoP JWTs (default: the realm path; needed for a realm alias)")
	f.StringVar(&o.tree, "tree", "", "authentication tree of the gateway and of every thing behind it (required)")
	f.StringVar(&o.name, "name", "", "the gateway's thing ID in AM (required)")
	f.StringVar(&o.address, "address", ":5683", "UDP address to serve CoAP over DTLS on")
	f.StringVar(&o.key, "key", "", "the gateway's private key, PEM (PKCS#8, EC or RSA) (required)")
	f.StringVar(&o.kid, "kid", "", "key ID of --key (default: its JWK thumbprint)")
	f.StringVar(&o.cert, "cert", "", "certificate chain of --key, PEM; enables self-registration as a gateway thing")
	f.DurationVar(&o.timeout, "timeout", 5*time.Second, "timeout of each request to AM")
	f.StringVar(&o.broker, "broker", "", "MQTT broker TCP address (host:port) for CoAP publish, POST /ps/{topic} (empty: 5.01)")
	f.StringVar(&o.adminAddr, "admin-addr", "", "HTTP address for /healthz, /readyz and /metrics (empty: none)")
	o.log = addLogFlags(f.FlagSet, "info")
	return o
}

func runGateway(args []string, stdout, stderr io.Writer) int {
	f := newFlags("imb gateway", "imb gateway --url URL --tree TREE --name ID --key FILE [flags]",
		"Runs the IoT Gateway: things that speak CoAP over DTLS (coap:// or coaps:// in the SDK) reach AM through it.")
	o := gatewayFlags(f)
	if code := f.parse(args, 0, stdout, stderr); code >= 0 {
		return code
	}
	for _, req := range [][2]string{{"url", o.url}, {"tree", o.tree}, {"name", o.name}, {"key", o.key}} {
		if req[1] == "" {
			fmt.Fprintf(stderr, "imb gateway: --%s is required\n", req[0])
			return exitUsage
		}
	}
	log, err := o.log.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "imb gateway:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	gw, admin, err := startGateway(ctx, o, log)
	if err != nil {
		fmt.Fprintln(stderr, "imb gateway:", err)
		var usage usageError
		if errors.As(err, &usage) {
			return exitUsage
		}
		return exitRuntime
	}
	fmt.Fprintf(stdout, "imb: gateway listening on udp %s (coaps://%s)\n", gw.Addr(), gw.Addr())
	if admin != nil {
		fmt.Fprintf(stdout, "imb: gateway admin listening on %s\n", admin.Addr())
	}
	<-ctx.Done()
	log.Info("shutting down")
	if err := gw.Close(); err != nil {
		log.Warn("gateway close", "err", err)
	}
	return exitOK
}

// usageError marks a start failure caused by the command line (a bad key file, an address in use).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// startGateway loads the gateway's key (and certificate), connects to AM and starts serving; the
// admin listener, when asked for, is returned so its address can be printed.
func startGateway(ctx context.Context, o *gatewayOptions, log *slog.Logger) (*gateway.Gateway, net.Listener, error) {
	key, err := sdk.LoadKeyFile(o.key, o.kid)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--key %s: %w", o.key, err)}
	}
	handlers := []sdk.CallbackHandler{&sdk.Authenticator{ThingID: o.name, Key: key, Audience: o.audience}}
	if o.cert != "" {
		pem, err := os.ReadFile(o.cert)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--cert: %w", err)}
		}
		certs, err := sdk.ParseCertificatesPEM(pem)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--cert %s: %w", o.cert, err)}
		}
		handlers = append(handlers, &sdk.Registrar{ThingID: o.name, Key: key, ThingType: sdk.Gateway,
			Certificates: certs, Audience: o.audience})
	}
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: o.url, Realm: o.realm, Timeout: o.timeout, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("AM at %s: %w", o.url, err)
	}
	gw, err := gateway.Start(ctx, gateway.Config{Client: client, Tree: o.tree, Handlers: handlers,
		Address: o.address, Logger: log, Broker: o.broker, Timeout: o.timeout})
	if err != nil {
		return nil, nil, err
	}
	if o.adminAddr == "" {
		return gw, nil, nil
	}
	ln, err := net.Listen("tcp", o.adminAddr)
	if err != nil {
		_ = gw.Close()
		return nil, nil, usageError{fmt.Errorf("--admin-addr %s: %w", o.adminAddr, err)}
	}
	srv := &http.Server{Handler: gw.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return gw, ln, nil
}
