package cli

import (
	"context"
	"crypto/x509"
	"flag"
	"io"
	"strings"
	"time"

	"imb/examples/resources"
	"imb/sdk"
)

// Thing holds the flags of the walk-through's thing examples: AM's connection plus -name, -tree,
// -audience and -scope.
type Thing struct {
	AM
	Name     string
	Tree     string
	Audience string
	Scope    string
}

// Register adds the flags to fs with the example's default thing id, tree and scopes.
func (t *Thing) Register(fs *flag.FlagSet, name, tree, scope string) {
	t.AM.Register(fs)
	fs.StringVar(&t.Name, "name", name, "thing id")
	fs.StringVar(&t.Tree, "tree", tree, "authentication tree")
	fs.StringVar(&t.Audience, "audience", "", "audience of the proof-of-possession JWTs (default: the realm)")
	fs.StringVar(&t.Scope, "scope", scope, "space-separated scopes of the access token")
}

// Scopes returns -scope as a list.
func (t *Thing) Scopes() []string { return strings.Fields(t.Scope) }

// LoginAndToken is the walk-through's common ending: authenticate (and register) the thing through its
// tree, request an access token and print it.
func LoginAndToken(ctx context.Context, w io.Writer, thing *sdk.Thing, name string, scopes ...string) (*sdk.Token, error) {
	if err := CreateThing(ctx, w, thing, name); err != nil {
		return nil, err
	}
	tok, err := RequestToken(ctx, w, thing, scopes...)
	if err != nil {
		return nil, err
	}
	PrintToken(w, tok)
	return tok, nil
}

// CreateThing logs the thing in through its tree, which registers it when AM does not know it yet, and
// prints "Creating Thing NAME... Done".
func CreateThing(ctx context.Context, w io.Writer, thing *sdk.Thing, name string) error {
	return Step(w, "Creating Thing "+name, func() error {
		_, err := thing.Login(ctx)
		return err
	})
}

// RequestToken prints "Requesting access token... Done" around the request.
func RequestToken(ctx context.Context, w io.Writer, thing *sdk.Thing, scopes ...string) (*sdk.Token, error) {
	var tok *sdk.Token
	err := Step(w, "Requesting access token", func() error {
		var err error
		tok, err = thing.AccessToken(ctx, scopes...)
		return err
	})
	return tok, err
}

// CertificateThing is the thing of -name in -tree, answering with CertificateHandlers.
func (t *Thing) CertificateThing(client *sdk.Client, key *sdk.Key) (*sdk.Thing, error) {
	handlers, err := t.CertificateHandlers(key)
	if err != nil {
		return nil, err
	}
	return client.NewThing(t.Tree, handlers...), nil
}

// CertificateHandlers answer the Authenticate Thing node by proof of possession and the Register Thing
// node by proof of possession & certificate, with a certificate for key made now (CN = -name, valid a
// day either side) and signed by the es256test test CA that AM and amdev trust for registration.
func (t *Thing) CertificateHandlers(key *sdk.Key) ([]sdk.CallbackHandler, error) {
	cert, err := resources.ThingCertificate(key, t.Name, time.Now())
	if err != nil {
		return nil, err
	}
	return []sdk.CallbackHandler{
		&sdk.Authenticator{ThingID: t.Name, Key: key, Audience: t.Audience},
		&sdk.Registrar{ThingID: t.Name, Key: key, Audience: t.Audience, Certificates: []*x509.Certificate{cert}},
	}, nil
}
