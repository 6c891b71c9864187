package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"imb/examples/internal/examplestest"
	"imb/examples/resources"
	"imb/sdk"
)

// tokenLines are the walk-through's last three lines.
var tokenLines = regexp.MustCompile(`(?m)^Requesting access token\.\.\. Done\nAccess token: (\S+)\nExpires in: (\d+)\nScope\(s\): \[publish\]\n`)

func TestWalkthroughFlags(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	tests := []struct {
		name string
		args []string
	}{
		{"walk-through flags", []string{"-name", "manual-thing", "-url", env.URL(), "-tree", "auth-tree"}},
		{"url alone", []string{"-url", env.URL()}},
		{"again: the PUT replaces the identity", []string{"-url", env.URL()}},
		{"another thing, same key", []string{"-url", env.URL(), "-name", "manual-thing-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := examplestest.Run(t, run, tt.args...)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			name := "manual-thing"
			if strings.Contains(tt.name, "another") {
				name = "manual-thing-2"
			}
			want := "Registering " + name + " as amAdmin... Done\nCreating Thing " + name + "... Done\n"
			if !strings.HasPrefix(out, want) {
				t.Fatalf("output starts %q, want %q", out, want)
			}
			m := tokenLines.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no token lines in\n%s", out)
			}
			if m[2] != "3600" && m[2] != "3599" {
				t.Errorf("Expires in: %s, want about an hour", m[2])
			}
			client, err := sdk.NewClient(t.Context(), sdk.Config{BaseURL: env.URL()})
			if err != nil {
				t.Fatal(err)
			}
			key, _ := resources.ThingKey()
			in, err := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: name, Key: key}).IntrospectToken(t.Context(), m[1])
			if err != nil || !in.Active || in.SubjectName() != name {
				t.Fatalf("printed token introspects as %+v, %v; want active for %s", in, err, name)
			}
		})
	}
}

// Without -register the identity must exist: the example then fails to authenticate, as AM answers.
func TestUnregisteredThingFails(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	out, err := examplestest.Run(t, run, "-url", env.URL(), "-register=false", "-name", "nobody")
	if !errors.Is(err, sdk.ErrAuthenticationFailed) {
		t.Fatalf("err = %v, want authentication failure", err)
	}
	if out != "Creating Thing nobody... Failed\n" {
		t.Fatalf("output %q", out)
	}
}

// The session is restricted: its requests are signed with the thing's key; after a logout the thing
// authenticates again by itself; a session of another key cannot speak for the thing.
func TestRestrictedSessionAndReauthentication(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{})
	if out, err := examplestest.Run(t, run, "-url", env.URL()); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	ctx := t.Context()
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: env.URL()})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := resources.ThingKey()
	thing := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "manual-thing", Key: key})
	first, err := thing.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !first.ProofOfPossession() {
		t.Fatal("auth-tree session is not a proof-of-possession (restricted) session")
	}
	if _, err := thing.AccessToken(ctx, "publish"); err != nil {
		t.Fatalf("signed get_access_token: %v", err)
	}
	if err := thing.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := first.Valid(ctx); err != nil || ok {
		t.Fatalf("logged-out session valid = %v, %v", ok, err)
	}
	if _, err := thing.AccessToken(ctx, "publish"); err != nil {
		t.Fatalf("token after logout: %v", err)
	}
	second, err := thing.Session(ctx)
	if err != nil || second == first || second.Fingerprint() == first.Fingerprint() {
		t.Fatalf("no new session after logout: %v", err)
	}

	other, _ := sdk.GenerateKey(sdk.ES256)
	impostor := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "manual-thing", Key: other})
	if _, err := impostor.AccessToken(ctx, "publish"); !errors.Is(err, sdk.ErrAuthenticationFailed) {
		t.Fatalf("a key that is not the thing's: %v, want authentication failure", err)
	}
}

// Through the IoT Gateway the walk-through's thing, registered over HTTP, authenticates and gets its
// token over coaps:// (-register=false: the administrator's REST call is HTTP only).
func TestThroughGateway(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{GatewayTree: "auth-tree"})
	if out, err := examplestest.Run(t, run, "-url", env.URL(), "-name", "gw-manual-thing"); err != nil {
		t.Fatalf("register over HTTP: %v\n%s", err, out)
	}
	out, err := examplestest.Run(t, run, "-url", env.GatewayURL(), "-name", "gw-manual-thing", "-register=false")
	if err != nil {
		t.Fatalf("run through the gateway: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "Creating Thing gw-manual-thing... Done\n") || tokenLines.FindStringSubmatch(out) == nil {
		t.Fatalf("output through the gateway:\n%s", out)
	}
}
