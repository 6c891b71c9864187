package mqtttest

import (
	"os"
	"path/filepath"
	"testing"
)

// PolicyWith writes the policy file base with extra appended (a limits section,
// say) into the test's temporary directory and returns its path, so that a test
// runs the repository's policy plus what it needs.
func PolicyWith(t testing.TB, base, extra string) string {
	t.Helper()
	policy, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(p, append(policy, "\n"+extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
