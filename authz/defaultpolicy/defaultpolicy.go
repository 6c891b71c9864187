// Package defaultpolicy holds the default topics.yaml built into the imb binary:
// imb dev and imb serve fall back to it when no policy file is given and none is in
// the working directory, and `imb policy show-default` prints it.
//
// The repository root's topics.yaml is the canonical text (compose mounts it, the
// docs point at it); go:embed cannot reach outside a package directory, so this
// package keeps a byte-identical copy, refreshed with `go generate
// ./authz/defaultpolicy` and held equal by this package's test.
package defaultpolicy

import (
	_ "embed"

	"imb/authz"
)

//go:generate cp ../../topics.yaml topics.yaml

// Name is the file name the built-in policy's rules and errors carry, so that
// explain output and logs say where a rule came from.
const Name = "builtin:topics.yaml"

// Text is the commented default policy.
//
//go:embed topics.yaml
var Text []byte

// Load parses the built-in policy.
func Load() (*authz.Policy, error) {
	return authz.Parse(Name, Text)
}
