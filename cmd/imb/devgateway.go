package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"imb/amdev"
	"imb/gateway"
	"imb/sdk"
)

// devGatewayID is the gateway thing imb dev registers in amdev.
const devGatewayID = "dev-gateway"

// devGatewayTree is the tree of imb dev's gateway and of every thing behind it: auth-reg-tree registers a
// thing that brings a certificate and authenticates a registered one, so the walk-through's examples run.
const devGatewayTree = "auth-reg-tree"

// devGatewayAddrs are the UDP addresses of imb dev's gateway: the CoAP and CoAPS ports, both DTLS
// as in AM's SDK (coap:// and coaps:// URLs both dial DTLS).
var devGatewayAddrs = []string{"127.0.0.1:5683", "127.0.0.1:5684"}

// startDevGateways registers a gateway thing with a fresh key in amdev and runs a gateway on each
// of devGatewayAddrs, relaying through the auth-tree.
func startDevGateways(ctx context.Context, am *amdev.Server, broker string, log *slog.Logger) ([]*gateway.Gateway, error) {
	key, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		return nil, err
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		return nil, err
	}
	if err := am.EnsureThing(ctx, amdev.DemoThing{ID: devGatewayID, ThingType: "gateway", ThingKeys: jwks}); err != nil {
		return nil, err
	}
	client, err := sdk.NewClient(ctx, sdk.Config{BaseURL: am.URL(), Realm: "/", Logger: log})
	if err != nil {
		return nil, err
	}
	var gws []*gateway.Gateway
	for _, addr := range devGatewayAddrs {
		gw, err := gateway.Start(ctx, gateway.Config{Client: client, Tree: devGatewayTree, Address: addr, Logger: log, Broker: broker,
			Handlers: []sdk.CallbackHandler{&sdk.Authenticator{ThingID: devGatewayID, Key: key}}})
		if err != nil {
			for _, g := range gws {
				_ = g.Close()
			}
			return nil, fmt.Errorf("udp %s: %w", addr, err)
		}
		gws = append(gws, gw)
	}
	return gws, nil
}

func printGatewayGuide(w io.Writer, gws []*gateway.Gateway) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("IoT Gateway (CoAP over DTLS, tree %s) for things that cannot reach AM over HTTP:", devGatewayTree)
	p("  coap://%s   coaps://%s", gws[0].Addr(), gws[len(gws)-1].Addr())
	p("  CoAP publish: POST /ps/things/<id>/telemetry/<name> with {\"token\":\"<access token>\",\"payload\":\"21.5\"} (docs/gateway.md)")
	p("  SDK: sdk.NewClient(ctx, sdk.Config{BaseURL: \"coaps://%s\", Key: thingKey}) (docs/gateway.md)", gws[len(gws)-1].Addr())
	p("")
}
