// Command imb is the Identity Message Broker: an MQTT broker that trusts a thing
// only as far as the access token it presents, and its tooling.
//
// Usage:
//
//	imb serve   [flags]   run the broker
//	imb dev     [flags]   run the broker and an AM-compatible development server on loopback
//	imb am      [flags]   run the AM-compatible development server alone
//	imb policy  check FILE | explain [flags] | show-default
//	imb health  [--url URL]   probe /readyz (for container health checks)
//	imb revoke  --sub ID | --client-id ID | --token-sha256 HEX   revoke through the admin API
//	imb version
//
// Exit codes: 0 success, 1 a failure at run time, 2 a configuration or usage
// error (a bad flag, key or policy, an address already in use), 3 a request
// `imb policy explain` denies.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at link time (-ldflags "-X main.version=..."); when it is not,
// the build information of the binary supplies it (see versionString).
var version = ""

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitRuntime = 1 // a failure at run time: an unreachable identity provider, a disk error
	exitUsage   = 2 // a configuration or usage error: fixing the command line or a file fixes it
)

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
		{"gateway", "run the IoT Gateway: CoAP/DTLS things reach AM through it", runGateway},
		{"policy", "check, explain or print a topics.yaml policy", runPolicy},
		{"health", "probe an admin endpoint (container health checks)", runHealth},
		{"revoke", "end a thing's connections now and refuse its tokens (admin API)", runRevoke},
		{"version", "print the version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		return runVersion(args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "imb: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: imb <command> [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "`imb COMMAND --help` describes a command's flags; `imb --version` prints the version.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 failure at run time, 2 configuration or usage error.")
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	f := newFlags("imb version", "imb version", "Prints the version of this binary.")
	if code := f.parse(args, 0, stdout, stderr); code >= 0 {
		return code
	}
	fmt.Fprintln(stdout, "imb", versionString())
	return exitOK
}

// versionString is the version set at link time, else the module version of a
// `go install imb/cmd/imb@VERSION` build, else the VCS revision the binary was
// built from (with +dirty for uncommitted changes), else "(devel)".
func versionString() string {
	if version != "" && version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return versionFromBuildInfo(bi)
}

func versionFromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}
