// Command loadtest is the load generator and benchmark harness for MQTT brokers
// with token authentication: it measures imb side by side with its bare mochi
// baseline, with mosquitto, and with RabbitMQ validating the same tokens through
// its OAuth2 backend, and proves every performance claim.
//
//	go run ./loadtest compare --scenario p2p|fanout|fanin|connect|memory [flags]
//	go run ./loadtest run --url mqtt://127.0.0.1:1883 --scenario ... [flags]
//
// compare starts each target broker as a child process on a loopback port (imb
// allow-all baseline, imb with JWT validation, imb with cached and with uncached
// introspection, mosquitto when installed; RabbitMQ with --targets
// rabbitmq-oauth2), runs the scenario against each with MQTT 5 or 3.1.1 clients
// (--mqtt), reads the broker's RSS and CPU from /proc, and writes a JSON result,
// a Markdown table and an HTML report with every figure also as a ratio to the
// baseline.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	switch os.Getenv(roleEnv) {
	case "broker":
		os.Exit(brokerMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "fleet-things":
		os.Exit(fleetThingsMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: go run ./loadtest <command> [flags]

commands:
  compare   run one scenario against every target broker and compare them
  run       run one scenario against a broker given by --url
  fleet     a fleet of things (default 100,000) on a cluster of imb nodes, with commands and telemetry
  broker    (internal) one imb broker for the harness to measure

Run "go run ./loadtest compare -h" for the flags.
`

// dispatch runs a subcommand and returns the exit status.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "compare":
		return runCompare(args[1:], stdout, stderr)
	case "run":
		return runURL(args[1:], stdout, stderr)
	case "fleet":
		return runFleet(args[1:], stdout, stderr)
	case "broker":
		return brokerMain(args[1:], os.Stdin, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "loadtest: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
