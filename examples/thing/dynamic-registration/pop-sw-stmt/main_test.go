package main

import (
	"strings"
	"testing"

	"imb/examples/internal/examplestest"
	"imb/examples/resources"
)

func TestPoPSoftwareStatement(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	keyFile, fresh := examplestest.KeyFile(t)
	out, err := examplestest.Run(t, run, "-url", env.URL(), "-name", "sw-thing", "-key", keyFile)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "Creating Thing sw-thing... Done\n") {
		t.Fatalf("output:\n%s", out)
	}
	tok := examplestest.TokenLines(t, out, "publish")
	if in := examplestest.Introspect(t, env, "auth-tree", "sw-thing", fresh, tok); !in.Active || in.SubjectName() != "sw-thing" {
		t.Fatalf("introspection %+v", in)
	}

	// The walk-through's defaults: dynamic-thing with the walk-through key, then with its flags, which
	// name auth-reg-tree: the thing is known by then, so authentication alone succeeds.
	for _, args := range [][]string{
		{"-url", env.URL()},
		{"-name", "dynamic-thing", "-url", env.URL(), "-tree", "auth-reg-tree"},
	} {
		out, err := examplestest.Run(t, run, args...)
		if err != nil {
			t.Fatalf("run %v: %v\n%s", args, err, out)
		}
		tok := examplestest.TokenLines(t, out, "publish")
		key, _ := resources.ThingKey()
		if in := examplestest.Introspect(t, env, "auth-tree", "dynamic-thing", key, tok); !in.Active {
			t.Fatalf("introspection %+v", in)
		}
	}
}
