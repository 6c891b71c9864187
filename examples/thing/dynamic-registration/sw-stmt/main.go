// Command sw-stmt is the walk-through's "Software statement" example: the thing registers through
// -reg-tree with a software statement alone (AM gives the identity a unique id), reads its id from its
// attributes, then authenticates through -auth-tree with a client assertion (a JWT signed with its key,
// audience -audience) and requests an access token.
//
//	go run ./examples/thing/dynamic-registration/sw-stmt -url http://127.0.0.1:8080/am \
//		-audience http://127.0.0.1:8080/am/oauth2/access_token -reg-tree reg-tree-sw-stmt -auth-tree auth-tree-client-assertion
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
	"imb/examples/resources"
	"imb/sdk"
)

func main() { os.Exit(cli.Main(run)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var am cli.AM
	fs := flag.NewFlagSet("sw-stmt", flag.ContinueOnError)
	am.Register(fs)
	audience := fs.String("audience", "", "audience of the client assertion (default: {url}/oauth2/access_token of the realm)")
	regTree := fs.String("reg-tree", "reg-tree-sw-stmt", "registration tree (Register Thing, software statement)")
	authTree := fs.String("auth-tree", "auth-tree-client-assertion", "authentication tree (Authenticate Thing, client assertion)")
	scope := fs.String("scope", "publish", "space-separated scopes of the access token")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	client, key, err := am.Open(ctx, stderr)
	if err != nil {
		return err
	}
	statement, err := resources.SoftwareStatement(key, "imb-example-sw-stmt")
	if err != nil {
		return err
	}
	registration := client.NewThing(*regTree, &sdk.SoftwareStatementHandler{Statement: statement})
	if err := cli.Step(stdout, "Register thing using Software Statement", func() error {
		_, err := registration.Login(ctx)
		return err
	}); err != nil {
		return err
	}
	var attrs sdk.Attributes
	if err := cli.Step(stdout, "Requesting attributes", func() error {
		attrs, err = registration.Attributes(ctx)
		if err == nil && attrs.ID == "" {
			err = errors.New("AM returned no _id")
		}
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Attributes: {%v}\n", attrMap(attrs))
	// The registration session has served its purpose; the thing now logs in as itself.
	_ = registration.Logout(ctx)

	thing := client.NewThing(*authTree, &sdk.Authenticator{ThingID: attrs.ID, Key: key, AssertionAudience: *audience})
	if err := cli.Step(stdout, "Authenticate thing using Client Assertion", func() error {
		_, err := thing.Login(ctx)
		return err
	}); err != nil {
		return err
	}
	tok, err := cli.RequestToken(ctx, stdout, thing, strings.Fields(*scope)...)
	if err != nil {
		return err
	}
	cli.PrintToken(stdout, tok)
	return nil
}

// attrMap is the attributes as one map with _id, as the walk-through prints them.
func attrMap(a sdk.Attributes) map[string]any {
	m := map[string]any{"_id": a.ID}
	for name, values := range a.Values {
		m[name] = values
	}
	return m
}
