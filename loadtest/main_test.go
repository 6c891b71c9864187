package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the harness's broker child, exactly as
// the `go run` binary does.
func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "broker":
		os.Exit(brokerMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "fleet-things":
		os.Exit(fleetThingsMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
