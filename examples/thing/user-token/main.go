// Command user-token is the walk-through's "Request a user token for an authenticated thing": the thing
// registers (or authenticates) through -tree, starts the OAuth 2.0 device authorization grant, asks a
// user to approve it at AM's verification page, polls for the user's token, introspects it, refreshes it
// with a reduced scope and introspects the result. With imb dev, sign in as bjensen / Ch4ng31t.
//
//	go run ./examples/thing/user-token -name user-authorized-thing -url http://127.0.0.1:8080/am -tree auth-reg-tree
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"imb/examples/internal/cli"
	"imb/sdk"
)

func main() { os.Exit(cli.Main(run)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var flags cli.Thing
	fs := flag.NewFlagSet("user-token", flag.ContinueOnError)
	flags.Register(fs, "user-authorized-thing", "auth-reg-tree", "publish subscribe")
	refreshScope := fs.String("refresh-scope", "publish", "space-separated scopes of the refreshed token (a subset)")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	client, key, err := flags.Open(ctx, stderr)
	if err != nil {
		return err
	}
	thing, err := flags.CertificateThing(client, key)
	if err != nil {
		return err
	}
	if err := cli.CreateThing(ctx, stdout, thing, flags.Name); err != nil {
		return err
	}
	var da *sdk.DeviceAuthorization
	if err := cli.Step(stdout, "Requesting user code", func() error {
		da, err = thing.UserCode(ctx, flags.Scopes()...)
		return err
	}); err != nil {
		return err
	}
	if err := printJSON(stdout, "User code response", da); err != nil {
		return err
	}

	verify := da.VerificationURIComplete
	if verify == "" {
		verify = da.VerificationURI + " and enter the code " + da.UserCode
	}
	fmt.Fprintf(stdout, "Requesting user access token... To authorise the request, go to\n\n\t%s\n\n", verify)
	tok, err := thing.UserToken(ctx, da)
	if err != nil {
		fmt.Fprintln(stdout, "Failed")
		return fmt.Errorf("requesting user access token: %w", err)
	}
	fmt.Fprintln(stdout, "Done")
	if err := printJSON(stdout, "Access token response", tokenResponse(tok)); err != nil {
		return err
	}
	if err := introspect(ctx, stdout, thing, tok); err != nil {
		return err
	}

	var refreshed *sdk.Token
	if err := cli.Step(stdout, "Refreshing access token with reduced scope", func() error {
		refreshed, err = thing.RefreshToken(ctx, tok.RefreshToken, strings.Fields(*refreshScope)...)
		return err
	}); err != nil {
		return err
	}
	if err := printJSON(stdout, "Access token response", tokenResponse(refreshed)); err != nil {
		return err
	}
	return introspect(ctx, stdout, thing, refreshed)
}

func introspect(ctx context.Context, w io.Writer, thing *sdk.Thing, tok *sdk.Token) error {
	var in *sdk.Introspection
	if err := cli.Step(w, "Introspecting access token to get more information", func() error {
		var err error
		in, err = thing.IntrospectToken(ctx, tok.AccessToken)
		return err
	}); err != nil {
		return err
	}
	return printJSON(w, "Introspection response", in.Claims)
}

// tokenResponse is the token as AM's JSON reply shows it (RFC 6749 §5.1).
func tokenResponse(tok *sdk.Token) map[string]any {
	r := map[string]any{
		"access_token": tok.AccessToken,
		"expires_in":   tok.ExpiresIn,
		"scope":        strings.Join(tok.Scopes, " "),
		"token_type":   tok.TokenType,
	}
	if tok.RefreshToken != "" {
		r["refresh_token"] = tok.RefreshToken
	}
	return r
}

// printJSON prints "label: " and v as indented JSON, as the walk-through shows AM's replies.
func printJSON(w io.Writer, label string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	fmt.Fprintf(w, "%s: %s\n", label, data)
	return nil
}
