package main

import (
	"strings"
	"testing"

	"imb/examples/internal/examplestest"
	"imb/examples/resources"
)

func TestPoPWithoutTrust(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	keyFile, fresh := examplestest.KeyFile(t)
	out, err := examplestest.Run(t, run, "-url", env.URL(), "-name", "trusted-thing", "-key", keyFile, "-scope", "publish subscribe")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "Creating Thing trusted-thing... Done\n") {
		t.Fatalf("output:\n%s", out)
	}
	tok := examplestest.TokenLines(t, out, "publish subscribe")
	if in := examplestest.Introspect(t, env, "auth-tree", "trusted-thing", fresh, tok); !in.Active {
		t.Fatalf("introspection %+v", in)
	}

	out, err = examplestest.Run(t, run, "-url", env.URL())
	if err != nil {
		t.Fatalf("run with defaults: %v\n%s", err, out)
	}
	tok = examplestest.TokenLines(t, out, "publish")
	key, _ := resources.ThingKey()
	if in := examplestest.Introspect(t, env, "auth-tree", "dynamic-thing", key, tok); in.SubjectName() != "dynamic-thing" {
		t.Fatalf("introspection %+v", in)
	}
}
