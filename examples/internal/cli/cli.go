// Package cli holds what every example program shares: the signal-bound context, the AM connection
// flags, the walk-through's "Doing something... Done" lines and the token printout.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"imb/examples/resources"
	"imb/sdk"
)

// DefaultURL is the base URL of the AM-compatible server that `imb dev` runs.
const DefaultURL = "http://127.0.0.1:8080/am"

// RunFunc is an example's body: it parses args and writes its report to stdout, diagnostics to stderr.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Main runs an example until it finishes or the process gets SIGINT/SIGTERM, and returns the exit
// code: 0, 2 for bad flags, 1 for any other failure.
func Main(run RunFunc) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	return 1
}

// ErrUsage marks a command line the example cannot run with; the flag package has printed why.
var ErrUsage = errors.New("usage")

// Parse parses args into fs, which reports errors on stderr; the error matches ErrUsage or flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fs.Args())
		return ErrUsage
	}
	return nil
}

// AM is the connection to AM that every thing example configures with the same flags.
type AM struct {
	URL     string
	Realm   string
	KeyFile string
	Timeout time.Duration
	Debug   bool
}

// Register adds -url, -realm, -key, -timeout and -debug to fs.
func (a *AM) Register(fs *flag.FlagSet) {
	fs.StringVar(&a.URL, "url", DefaultURL, "base URL of AM (or of the AM-compatible server imb dev runs)")
	fs.StringVar(&a.Realm, "realm", "/", "AM realm")
	fs.StringVar(&a.KeyFile, "key", "", "PEM file with the thing's private signing key (default: the walk-through's public test key eckey1)")
	fs.DurationVar(&a.Timeout, "timeout", 10*time.Second, "timeout of each request to AM")
	fs.BoolVar(&a.Debug, "debug", false, "log the SDK's requests on stderr (tokens appear as fingerprints only)")
}

// Client connects to AM with the flags' settings.
func (a *AM) Client(ctx context.Context, stderr io.Writer) (*sdk.Client, error) {
	return sdk.NewClient(ctx, sdk.Config{BaseURL: a.URL, Realm: a.Realm, Timeout: a.Timeout, Logger: Logger(stderr, a.Debug)})
}

// Open connects to AM and loads the thing's key.
func (a *AM) Open(ctx context.Context, stderr io.Writer) (*sdk.Client, *sdk.Key, error) {
	client, err := a.Client(ctx, stderr)
	if err != nil {
		return nil, nil, err
	}
	key, err := a.Key()
	if err != nil {
		return nil, nil, err
	}
	return client, key, nil
}

// Key loads -key, or the walk-through's thing key when none is given.
func (a *AM) Key() (*sdk.Key, error) {
	if a.KeyFile == "" {
		return resources.ThingKey()
	}
	return sdk.LoadKeyFile(a.KeyFile, "")
}

// Logger logs to stderr at debug level when debug is set, otherwise warnings only.
func Logger(stderr io.Writer, debug bool) *slog.Logger {
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// Step prints "what... ", runs fn and completes the line with "Done" on success, as the walk-through's
// examples do. A failure is returned with what as context.
func Step(w io.Writer, what string, fn func() error) error {
	fmt.Fprintf(w, "%s... ", what)
	if err := fn(); err != nil {
		fmt.Fprintln(w, "Failed")
		return fmt.Errorf("%s: %w", what, err)
	}
	fmt.Fprintln(w, "Done")
	return nil
}

// PrintToken writes the three lines the walk-through prints for an access token. The token itself is
// printed because showing it is the example's point (use it with curl or mosquitto_pub).
func PrintToken(w io.Writer, tok *sdk.Token) {
	fmt.Fprintln(w, "Access token:", tok.AccessToken)
	fmt.Fprintln(w, "Expires in:", tok.ExpiresIn)
	fmt.Fprintln(w, "Scope(s):", tok.Scopes)
}
