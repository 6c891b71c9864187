// Package deploy holds the deployment files of imb (imb.yaml sample, systemd unit)
// and the tests that check them, the Dockerfile and docker-compose.yml against the
// imb binary they run: no Docker engine is needed.
package deploy

import (
	"fmt"
	"os"
	"testing"
)

// imb is the binary under test, built once by TestMain and read-only afterwards.
var imb *imbCLI

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "imb-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if imb, err = buildIMB(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
