package sdk_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"imb/amdev"
	"imb/sdk"
)

// startExampleAM runs a development AM on a free local port.
func startExampleAM(ctx context.Context, tweak func(*amdev.Settings)) (*amdev.Server, error) {
	s := amdev.DefaultSettings()
	if tweak != nil {
		tweak(&s)
	}
	return amdev.Start(ctx, amdev.Config{Listen: "127.0.0.1:0", InMemory: true, Settings: &s,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// A thing registers itself by proof of possession through a combined tree, then asks for a token.
func Example() {
	ctx := context.Background()
	am, err := startExampleAM(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer am.Close()

	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: am.URL(), Realm: "/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	key, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		fmt.Println(err)
		return
	}
	thing := client.NewThing("auth-reg-tree-pop",
		&sdk.Authenticator{ThingID: "example-thing", Key: key},
		&sdk.Registrar{ThingID: "example-thing", Key: key, ThingType: sdk.Device})
	tok, err := thing.AccessToken(ctx, "publish")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("scopes:", tok.Scopes)
	fmt.Println("expires in an hour:", tok.ExpiresIn > 3500)
	// Output:
	// scopes: [publish]
	// expires in an hour: true
}

// The key id AM expects is the padded base64url RFC 7638 thumbprint: here the walk-through's
// manual-thing key.
func ExampleThumbprint() {
	const jwk = `{"kty":"EC","crv":"P-256","x":"wjC9kMzwIeXNn6lsjdqplcq9aCWpAOZ0af1_yruCcJ4","y":"ihIziCymBnU8W8m5zx69DsQr0sWDiXsDMq04lBmfEHw"}`
	var key jose.JSONWebKey
	if err := json.Unmarshal([]byte(jwk), &key); err != nil {
		fmt.Println(err)
		return
	}
	kid, err := sdk.Thumbprint(key.Key)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(kid)
	// Output: cbnztC8J_l2feNf0aTFBDDQJuvrd2JbLPoOAxHR2N8o=
}

// NewKey derives the algorithm from the key; RSA keys sign with PSS.
func ExampleNewKey() {
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		fmt.Println(err)
		return
	}
	key, err := sdk.NewKey(ec, "pop.cnf")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(key.Algorithm(), key.ID())
	// Output: ES384 pop.cnf
}

// A TokenSource hands out the cached token until shortly before it expires, then a renewed one.
func ExampleThing_TokenSource() {
	ctx := context.Background()
	key, _ := sdk.GenerateKey(sdk.ES256)
	jwks, _ := key.PublicJWKS()
	am, err := startExampleAM(ctx, func(s *amdev.Settings) {
		s.Things["manual-thing"] = &amdev.Thing{Realm: "/", ThingType: "device", ThingKeys: jwks}
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer am.Close()
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: am.URL()})
	if err != nil {
		fmt.Println(err)
		return
	}
	ts := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "manual-thing", Key: key}).TokenSource("publish", "subscribe")
	first, err := ts.Token(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	second, _ := ts.Token(ctx)
	fmt.Println(first.Scopes, first == second)
	// Output: [publish subscribe] true
}

// Device authorization: the thing asks for a user code, a human approves it, the thing polls.
func ExampleThing_UserToken() {
	ctx := context.Background()
	key, _ := sdk.GenerateKey(sdk.ES256)
	jwks, _ := key.PublicJWKS()
	am, err := startExampleAM(ctx, func(s *amdev.Settings) {
		s.Things["user-authorized-thing"] = &amdev.Thing{Realm: "/", ThingType: "device", ThingKeys: jwks}
		s.OAuth2.DevicePollInterval = amdev.Duration(1e9)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer am.Close()
	client, _ := sdk.NewClient(ctx, sdk.Config{BaseURL: am.URL()})
	thing := client.NewThing("auth-tree", &sdk.Authenticator{ThingID: "user-authorized-thing", Key: key})
	da, err := thing.UserCode(ctx, "publish")
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := thing.PollUserToken(ctx, da); errors.Is(err, sdk.ErrAuthorizationPending) {
		fmt.Println("waiting for the user")
	}
	page, err := decideDevice(ctx, client, da, "allow") // the human, in a browser
	if err != nil || !strings.Contains(page, "Access granted") {
		fmt.Println("consent failed", err)
		return
	}
	tok, err := thing.UserToken(ctx, da)
	if err != nil {
		fmt.Println(err)
		return
	}
	in, err := thing.IntrospectToken(ctx, tok.AccessToken)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(in.Active, in.SubjectName(), in.Scopes)
	// Output:
	// waiting for the user
	// true bjensen [publish]
}
