// Command pop-cert is the walk-through's "Proof-of-possession and certificate" example: the thing
// authenticates by proof of possession through -tree and, when AM does not know it yet, registers with
// its public key and an X.509 certificate for it. The certificate is made fresh on each run (CN = the
// thing id, valid a day either side of now) and signed with the es256test test CA that AM (and amdev)
// trust for registration: public test material, see examples/resources.
//
//	go run ./examples/thing/dynamic-registration/pop-cert -name dynamic-thing -url http://127.0.0.1:8080/am -tree auth-reg-tree
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"imb/examples/internal/cli"
)

func main() { os.Exit(cli.Main(run)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var flags cli.Thing
	fs := flag.NewFlagSet("pop-cert", flag.ContinueOnError)
	flags.Register(fs, "dynamic-thing", "auth-reg-tree", "publish")
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
	_, err = cli.LoginAndToken(ctx, stdout, thing, flags.Name, flags.Scopes()...)
	return err
}
