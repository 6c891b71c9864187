package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"imb/examples/internal/examplestest"
	"imb/examples/resources"
	"imb/sdk"
)

var (
	verificationLine = regexp.MustCompile(`^\t(http://\S+/oauth2/device/user\?user_code=\S+)$`)
	tokenResponses   = regexp.MustCompile(`(?m)^Access token response: (\{[^}]*\})`)
	introspections   = regexp.MustCompile(`(?m)^Introspection response: (\{[^}]*\})`)
)

func TestDeviceGrantApproved(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{DevicePollInterval: time.Second})
	p := examplestest.Launch(t, run, "-name", "user-authorized-thing", "-url", env.URL(), "-tree", "auth-reg-tree")
	link := p.Await(t, verificationLine)[1]
	page, err := examplestest.DecideDevice(t.Context(), link, true)
	if err != nil || !strings.Contains(page, "Access granted") {
		t.Fatalf("approval: %v\n%s", err, page)
	}
	out, err := p.Wait(t)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Creating Thing user-authorized-thing... Done\nRequesting user code... Done\nUser code response: {\n  \"device_code\": ",
		"Requesting user access token... To authorise the request, go to\n\n\t" + link + "\n\nDone\n",
		"Introspecting access token to get more information... Done\n",
		"Refreshing access token with reduced scope... Done\n",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	toks, ins := tokenResponses.FindAllStringSubmatch(out, -1), introspections.FindAllStringSubmatch(out, -1)
	if len(toks) != 2 || len(ins) != 2 {
		t.Fatalf("want two token and two introspection responses:\n%s", out)
	}
	var first, second struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		Scope        string `json:"scope"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
	}
	for i, v := range []any{&first, &second} {
		if err := json.Unmarshal([]byte(toks[i][1]), v); err != nil {
			t.Fatal(err)
		}
	}
	if first.Scope != "publish subscribe" || second.Scope != "publish" || first.RefreshToken == "" || second.ExpiresIn < 3500 {
		t.Fatalf("token responses %+v %+v", first, second)
	}
	for i, scope := range []string{"publish subscribe", "publish"} {
		var in map[string]any
		if err := json.Unmarshal([]byte(ins[i][1]), &in); err != nil {
			t.Fatal(err)
		}
		if in["active"] != true || in["subname"] != "bjensen" || scopeText(in["scope"]) != scope {
			t.Fatalf("introspection %d: %v", i, in)
		}
	}

	// Refresh tokens belong to the thing they were issued through: another thing's are refused.
	ctx := t.Context()
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: env.URL()})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := sdk.GenerateKey(sdk.ES256)
	other := client.NewThing("auth-reg-tree-pop", &sdk.Authenticator{ThingID: "other-thing", Key: otherKey},
		&sdk.Registrar{ThingID: "other-thing", Key: otherKey})
	if _, err := other.RefreshToken(ctx, second.RefreshToken); !errors.Is(err, sdk.ErrInvalidGrant) {
		t.Fatalf("another thing refreshing the user's token: %v, want invalid_grant", err)
	}
	key, _ := resources.ThingKey()
	owner := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "user-authorized-thing", Key: key})
	tok, err := owner.RefreshToken(ctx, second.RefreshToken)
	if err != nil || strings.Join(tok.Scopes, " ") != "publish" {
		t.Fatalf("owner refresh: %v, %v", tok, err)
	}
}

func scopeText(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []any:
		var parts []string
		for _, p := range s {
			parts = append(parts, p.(string))
		}
		return strings.Join(parts, " ")
	}
	return ""
}

func TestDeviceGrantDenied(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{DevicePollInterval: time.Second})
	p := examplestest.Launch(t, run, "-url", env.URL())
	link := p.Await(t, verificationLine)[1]
	page, err := examplestest.DecideDevice(t.Context(), link, false)
	if err != nil || !strings.Contains(page, "Access denied") {
		t.Fatalf("denial: %v\n%s", err, page)
	}
	out, err := p.Wait(t)
	if !errors.Is(err, sdk.ErrAuthorizationDeclined) {
		t.Fatalf("err = %v, want authorization declined", err)
	}
	if !strings.HasSuffix(out, "\t"+link+"\n\nFailed\n") || strings.Contains(out, "Access token response") {
		t.Fatalf("output:\n%s", out)
	}
}

// Stopping the example while it waits for the user ends it promptly with the context's error.
func TestDeviceGrantInterrupted(t *testing.T) {
	env := examplestest.Start(t, examplestest.Options{DevicePollInterval: time.Second})
	p := examplestest.Launch(t, run, "-url", env.URL(), "-name", "impatient-thing")
	p.Await(t, verificationLine)
	p.Stop()
	if _, err := p.Wait(t); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err = %v, want context canceled", err)
	}
}
