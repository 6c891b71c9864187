package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the harness's broker child, exactly as
// the `go run` binary does.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "broker" {
		os.Exit(brokerMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
