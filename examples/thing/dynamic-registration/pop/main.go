// Command pop is the walk-through's "Proof-of-possession" example: the thing authenticates by proof of
// possession through -tree and, when AM does not know it yet, registers with nothing but its public key.
// No third party vouches for the thing, so a tree with this registration method suits only things that
// are trusted already.
//
//	go run ./examples/thing/dynamic-registration/pop -name dynamic-thing -url http://127.0.0.1:8080/am -tree auth-reg-tree-pop
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"imb/examples/internal/cli"
	"imb/sdk"
)

func main() { os.Exit(cli.Main(run)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var flags cli.Thing
	fs := flag.NewFlagSet("pop", flag.ContinueOnError)
	flags.Register(fs, "dynamic-thing", "auth-reg-tree-pop", "publish")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	client, key, err := flags.Open(ctx, stderr)
	if err != nil {
		return err
	}
	thing := client.NewThing(flags.Tree,
		&sdk.Authenticator{ThingID: flags.Name, Key: key, Audience: flags.Audience},
		&sdk.Registrar{ThingID: flags.Name, Key: key, Audience: flags.Audience})
	_, err = cli.LoginAndToken(ctx, stdout, thing, flags.Name, flags.Scopes()...)
	return err
}
