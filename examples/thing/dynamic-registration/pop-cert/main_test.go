package main

import (
	"errors"
	"strings"
	"testing"

	"imb/examples/internal/examplestest"
	"imb/examples/resources"
	"imb/sdk"
)

func TestPoPCertificate(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	keyFile, fresh := examplestest.KeyFile(t)
	walkthroughKey, _ := resources.ThingKey()
	tests := []struct {
		name, thing string
		key         *sdk.Key
		args        []string
	}{
		{"walk-through flags", "dynamic-thing", walkthroughKey, []string{"-name", "dynamic-thing", "-url", env.URL(), "-tree", "auth-reg-tree"}},
		{"again: authenticates the registered thing", "dynamic-thing", walkthroughKey, []string{"-url", env.URL()}},
		{"fresh key, registration-only tree then auth-tree", "pop-cert-fresh", fresh, []string{"-url", env.URL(), "-name", "pop-cert-fresh", "-key", keyFile, "-tree", "reg-tree-pop-cert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := examplestest.Run(t, run, tt.args...)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			if !strings.HasPrefix(out, "Creating Thing "+tt.thing+"... Done\n") {
				t.Fatalf("output:\n%s", out)
			}
			tok := examplestest.TokenLines(t, out, "publish")
			if in := examplestest.Introspect(t, env, "auth-tree", tt.thing, tt.key, tok); !in.Active || in.SubjectName() != tt.thing {
				t.Fatalf("introspection %+v", in)
			}
		})
	}
}

// A tree that registers by certificate refuses a thing without one: pop-sw-stmt's tree is not
// interchangeable, and an unknown thing on a tree without registration fails.
func TestPoPCertificateRefusals(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	keyFile, _ := examplestest.KeyFile(t)
	for _, tree := range []string{"auth-tree", "auth-reg-tree-pop-sw-stmt"} {
		out, err := examplestest.Run(t, run, "-url", env.URL(), "-name", "refused-"+tree, "-key", keyFile, "-tree", tree)
		if !errors.Is(err, sdk.ErrAuthenticationFailed) || !strings.HasSuffix(out, "... Failed\n") {
			t.Errorf("tree %s: err %v, output %q; want authentication failure", tree, err, out)
		}
	}
}
