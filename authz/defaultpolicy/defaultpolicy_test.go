package defaultpolicy

import (
	"bytes"
	"os"
	"testing"
)

// TestSameAsRepositoryPolicy: the built-in policy is the repository's topics.yaml,
// byte for byte, so that what `imb policy show-default` prints is what the docs
// describe.
func TestSameAsRepositoryPolicy(t *testing.T) {
	root, err := os.ReadFile("../../topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, Text) {
		t.Fatal("authz/defaultpolicy/topics.yaml differs from ./topics.yaml: run go generate ./authz/defaultpolicy")
	}
}

func TestLoad(t *testing.T) {
	pol, err := Load()
	if err != nil {
		t.Fatalf("built-in policy: %v", err)
	}
	if pol.AllowsAnonymous() {
		t.Error("the built-in policy lets clients without a token connect")
	}
}
