// Command manual-registration is the walk-through's "Authenticate a thing after manual registration":
// an administrator registers the thing's identity and public key over AM's REST API (the curl PUT of
// "Register identities"), then the thing authenticates by proof of possession through -tree and asks
// for an access token.
//
//	go run ./examples/thing/manual-registration -name manual-thing -url http://127.0.0.1:8080/am -tree auth-tree
//
// Pass -register=false when the identity was created with curl already.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"imb/examples/internal/cli"
	"imb/sdk"
)

func main() { os.Exit(cli.Main(run)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var flags cli.Thing
	fs := flag.NewFlagSet("manual-registration", flag.ContinueOnError)
	flags.Register(fs, "manual-thing", "auth-tree", "publish")
	register := fs.Bool("register", true, "register the identity as the administrator first (the walk-through's curl PUT)")
	admin := fs.String("admin", "amAdmin", "administrator user name, for -register")
	adminPassword := fs.String("admin-password", "changeit", "administrator password, for -register")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	client, key, err := flags.Open(ctx, stderr)
	if err != nil {
		return err
	}
	if *register {
		err := cli.Step(stdout, fmt.Sprintf("Registering %s as %s", flags.Name, *admin), func() error {
			jwks, err := key.PublicJWKS()
			if err != nil {
				return err
			}
			session, err := client.Login(ctx, *admin, *adminPassword)
			if err != nil {
				return err
			}
			// The administrator's session is needed for this one request only.
			defer func() { _ = session.Logout(ctx) }()
			return client.CreateIdentity(ctx, session, flags.Name, sdk.Identity{ThingType: sdk.Device, ThingKeys: jwks})
		})
		if err != nil {
			return err
		}
	}
	thing := client.NewThing(flags.Tree, &sdk.Authenticator{ThingID: flags.Name, Key: key, Audience: flags.Audience})
	_, err = cli.LoginAndToken(ctx, stdout, thing, flags.Name, flags.Scopes()...)
	return err
}
