// Command imb is the Identity Message Broker: an MQTT broker that trusts a thing
// only as far as the access token it presents, and its tooling.
//
// Usage:
//
//	imb serve   [flags]   run the broker
//	imb dev     [flags]   run the broker and an AM-compatible development server on loopback
//	imb am      [flags]   run the AM-compatible development server alone
//	imb policy  check FILE | explain [flags]
//	imb health  [--url URL]   probe /readyz (for container health checks)
//	imb version
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

// command is one subcommand: it gets its arguments (without its own name) and
// returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the identity-enforcing MQTT broker", runServe},
		{"dev", "run the broker with an embedded AM-compatible development server", runDev},
		{"am", "run the AM-compatible development server alone", runAM},
		{"policy", "check or explain a topics.yaml policy", runPolicy},
		{"health", "probe an admin endpoint (container health checks)", runHealth},
		{"version", "print the version", func(_ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, "imb", version)
			return 0
		}},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "imb: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: imb <command> [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}
