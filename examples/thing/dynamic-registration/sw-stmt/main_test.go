package main

import (
	"regexp"
	"testing"

	"imb/examples/internal/examplestest"
)

var swStmtLines = regexp.MustCompile(`^Register thing using Software Statement\.\.\. Done\n` +
	`Requesting attributes\.\.\. Done\n` +
	`Attributes: \{map\[_id:([0-9a-f-]{36}) thingConfig:\[\] thingKeys:\[\{"keys":\[.*"kid":"([^"]+)".*\]}] thingProperties:\[\] thingType:\[device\]\]\}\n` +
	`Authenticate thing using Client Assertion\.\.\. Done\n`)

func TestSoftwareStatement(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	keyFile, key := examplestest.KeyFile(t)
	tests := []struct {
		name string
		args []string
	}{
		{"url alone", []string{"-url", env.URL()}},
		{"walk-through flags, amdev's trees", []string{"-url", env.URL(), "-audience", env.AM.Issuer() + "/access_token",
			"-reg-tree", "reg-tree-sw-stmt", "-auth-tree", "auth-tree-client-assertion", "-key", keyFile}},
	}
	ids := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := examplestest.Run(t, run, tt.args...)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			m := swStmtLines.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("output:\n%s", out)
			}
			if ids[m[1]] {
				t.Fatalf("id %s given twice", m[1])
			}
			ids[m[1]] = true
			tok := examplestest.TokenLines(t, out, "publish")
			if tt.name != "url alone" {
				if m[2] != key.ID() {
					t.Errorf("registered kid %s, want %s", m[2], key.ID())
				}
				if in := examplestest.Introspect(t, env, "auth-tree-client-assertion", m[1], key, tok); !in.Active || in.SubjectName() != m[1] {
					t.Fatalf("introspection %+v", in)
				}
			}
		})
	}
}
