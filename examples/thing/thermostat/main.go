// Command thermostat is a thing that lives on imb: it registers (or authenticates) with AM through the
// SDK, connects to the imb broker with its access token, publishes its temperature every -interval to
// things/{id}/telemetry/temperature and its state (retained) to things/{id}/state, and obeys commands
// such as {"setpoint":21} sent to things/{id}/commands/#. Before its token expires the SDK refreshes it
// and re-authenticates in the session (MQTT 5) or reconnects with it (MQTT 3.1.1, -mqtt311). It stops
// on Ctrl-C or after -count messages.
//
//	go run ./examples/thing/thermostat -url http://127.0.0.1:8080/am -broker 127.0.0.1:1883
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"imb/examples/internal/cli"
	"imb/examples/internal/link"
	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

func main() { os.Exit(cli.Main(run)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var flags cli.Thing
	fs := flag.NewFlagSet("thermostat", flag.ContinueOnError)
	flags.Register(fs, "thermostat-1", "auth-reg-tree", "publish subscribe")
	broker := fs.String("broker", "127.0.0.1:1883", "imb's MQTT address: host:port, or a tcp://, tls://, ws:// or wss:// URL")
	v311 := fs.Bool("mqtt311", false, "speak MQTT 3.1.1 (reconnects to renew its token) instead of MQTT 5 (re-authenticates)")
	interval := fs.Duration("interval", 5*time.Second, "time between telemetry messages")
	count := fs.Int("count", 0, "stop after this many telemetry messages (0: run until interrupted)")
	setpoint := fs.Float64("setpoint", 20, "initial set-point in °C")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if *interval <= 0 || *count < 0 {
		fmt.Fprintln(stderr, "-interval must be positive and -count not negative")
		return cli.ErrUsage
	}
	out := &lockedWriter{w: stdout}
	client, key, err := flags.Open(ctx, stderr)
	if err != nil {
		return err
	}
	thing, err := flags.CertificateThing(client, key)
	if err != nil {
		return err
	}
	if err := cli.CreateThing(ctx, out, thing, flags.Name); err != nil {
		return err
	}

	t := newThermostat(flags.Name, *setpoint)
	tokens := thing.TokenSource(flags.Scopes()...)
	if !*v311 {
		// Tokens bound to the thermostat's registered key (cnf_key): a copied token is useless without the
		// key, and the dialer proves it with IMB-POP. MQTT 3.1.1 has no AUTH packet to prove it in.
		tokens.Bind(key)
	}
	dialer := &sdkmqtt.Dialer{
		Tokens:     &announcing{src: tokens, w: out},
		Key:        key,
		Username:   flags.Name,
		ClientID:   flags.Name, // imb binds the client id to the token's thing id
		Persistent: true,       // commands sent while the thermostat reconnects wait for it
		Logger:     cli.Logger(stderr, flags.Debug),
	}
	conn, err := link.Connect(ctx, out, dialer, *broker, *v311, t.receive)
	if err != nil {
		return err
	}
	defer link.CloseSoon(conn)
	if err := cli.Step(out, "Subscribing to "+t.commandFilter(), func() error {
		return conn.Subscribe(ctx, t.commandFilter())
	}); err != nil {
		return err
	}
	return t.loop(ctx, out, conn, *interval, *count)
}

// announcing passes tokens through and prints a line whenever a new one is handed to the connection.
type announcing struct {
	src  sdk.TokenSource
	w    io.Writer
	mu   sync.Mutex
	last string
}

func (a *announcing) Token(ctx context.Context) (*sdk.Token, error) {
	tok, err := a.src.Token(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last != "" && tok.AccessToken != a.last {
		fmt.Fprintf(a.w, "Access token renewed, expires in %d s\n", tok.ExpiresIn)
	}
	a.last = tok.AccessToken
	return tok, nil
}

// lockedWriter keeps lines written from several goroutines whole.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
