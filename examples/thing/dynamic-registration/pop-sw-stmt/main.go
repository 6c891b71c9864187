// Command pop-sw-stmt is the walk-through's "Proof-of-possession and software statement" example: the
// thing authenticates by proof of possession through -tree and, when AM does not know it yet, registers
// with its public key and a software statement of the publisher iot-software-publisher that lists the
// key in its jwks claim. A real publisher signs the statement when the thing is made; the example signs
// it at run time with the publisher's public test key (examples/resources).
//
//	go run ./examples/thing/dynamic-registration/pop-sw-stmt -name dynamic-thing -url http://127.0.0.1:8080/am -tree auth-reg-tree-pop-sw-stmt
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"imb/examples/internal/cli"
	"imb/examples/resources"
	"imb/sdk"
)

func main() { os.Exit(cli.Main(run)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var flags cli.Thing
	fs := flag.NewFlagSet("pop-sw-stmt", flag.ContinueOnError)
	flags.Register(fs, "dynamic-thing", "auth-reg-tree-pop-sw-stmt", "publish")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	client, key, err := flags.Open(ctx, stderr)
	if err != nil {
		return err
	}
	statement, err := resources.SoftwareStatement(key, "imb-example-pop-sw-stmt")
	if err != nil {
		return err
	}
	thing := client.NewThing(flags.Tree,
		&sdk.Authenticator{ThingID: flags.Name, Key: key, Audience: flags.Audience},
		&sdk.Registrar{ThingID: flags.Name, Key: key, Audience: flags.Audience, SoftwareStatement: statement})
	_, err = cli.LoginAndToken(ctx, stdout, thing, flags.Name, flags.Scopes()...)
	return err
}
