// Command tv is the device-flow story of a TV app (seed 003): the TV has no keyboard, so the
// user approves it from a phone through the OAuth 2.0 device authorization grant; the TV then posts
// what it plays to a topic over HTTPS with the user's access token, through imb's HTTP door
// (docs/http.md), and a cloud application receives it over MQTT. The broker judges the post
// exactly as an MQTT publish with the same token. With imb dev, sign in as bjensen / Ch4ng31t.
//
//	go run ./examples/thing/tv -url http://127.0.0.1:8080/am -door http://127.0.0.1:8088
package main

import (
	"context"
	"errors"
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
	fs := flag.NewFlagSet("tv", flag.ContinueOnError)
	flags.Register(fs, "living-room-tv", "auth-reg-tree", "publish")
	door := fs.String("door", "http://127.0.0.1:8088", "base URL of imb's HTTP door (imb dev serves it here)")
	topic := fs.String("topic", "things/{sub}/telemetry/now-playing", "topic to post to; {sub} is the user the token speaks for")
	playing := fs.String("message", `{"channel":7,"title":"Evening news"}`, "the message")
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
	verify := da.VerificationURIComplete
	if verify == "" {
		verify = da.VerificationURI + " and enter the code " + da.UserCode
	}
	fmt.Fprintf(stdout, "On your phone, go to\n\n\t%s\n\nWaiting for approval... ", verify)
	tok, err := thing.UserToken(ctx, da)
	if err != nil {
		fmt.Fprintln(stdout, "Failed")
		return fmt.Errorf("waiting for approval: %w", err)
	}
	fmt.Fprintln(stdout, "Done")

	// The broker names the identity by the token's subname (else sub); the TV learns it the same way.
	in, err := thing.IntrospectToken(ctx, tok.AccessToken)
	if err != nil {
		return fmt.Errorf("introspecting the user token: %w", err)
	}
	user, _ := in.Claims["subname"].(string)
	if user == "" {
		user, _ = in.Claims["sub"].(string)
	}
	to := strings.ReplaceAll(*topic, "{sub}", user)
	pub := &sdk.HTTPPublisher{BaseURL: *door, Tokens: thing.UserTokenSource(tok)}
	err = cli.Step(stdout, fmt.Sprintf("Posting to %s as %s", to, user), func() error {
		return pub.Publish(ctx, to, []byte(*playing), sdk.PublishOptions{ContentType: "application/json"})
	})
	var pe *sdk.PublishError
	if errors.As(err, &pe) {
		fmt.Fprintf(stdout, "The door answered %d %s (MQTT reason %s): %s\n", pe.StatusCode, pe.Code, pe.ReasonCode, pe.Description)
	}
	return err
}
