package amtwin

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"imb/amdev"
	"imb/broker"
	"imb/sdk"
)

// twin is amdev with a thing of its own and a broker in auto mode in front
// of it (issuer and introspection configured), and amAdmin's session.
type twin struct {
	am             *amdev.Server
	broker         *broker.Broker
	admin          string        // amAdmin's SSO token
	introspections *atomic.Int64 // requests the broker sent to amdev's introspection endpoint
}

// startTwin starts a twin; tweak, if not nil, changes the broker's config
// before it starts.
func startTwin(t *testing.T, thing string, tweak func(*broker.Config)) *twin {
	t.Helper()
	st := amdev.DefaultSettings()
	key, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	st.Things[thing] = &amdev.Thing{Realm: "/", ThingType: "device", ThingKeys: jwks}
	am, err := amdev.Start(testContext(t), amdev.Config{Listen: "127.0.0.1:0", InMemory: true, Settings: &st,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = am.Close() })
	introspect, introspections := countingProxy(t, am.IntrospectionURL())

	bc, _ := am.BrokerClient()
	cfg := broker.Defaults()
	cfg.MQTTAddr, cfg.WSAddr, cfg.AdminAddr, cfg.HTTPAddr = "127.0.0.1:0", "", "", ""
	cfg.PolicyFile = filepath.Join("..", "..", "topics.yaml")
	cfg.Issuer = am.Issuer()
	cfg.Audience = []string{amdev.DefaultClientID}
	cfg.IntrospectURL = introspect.URL
	cfg.ClientID, cfg.ClientSecret = bc.ID, bc.Secret
	cfg.Logger = slog.New(slog.DiscardHandler)
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = b.Close() })

	status, login := call(t, "POST", am.URL()+"/json/authenticate", map[string]string{"X-OpenAM-Username": "amAdmin",
		"X-OpenAM-Password": "changeit", "Accept-API-Version": "resource=2.0, protocol=1.0"}, "")
	if status != 200 {
		t.Fatalf("amAdmin login: %d %v", status, login)
	}
	return &twin{am: am, broker: b, admin: login["tokenId"].(string), introspections: introspections}
}

// adminCall is one admin REST request as amAdmin, in AM's CREST headers.
func (tw *twin) adminCall(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	return call(t, method, tw.am.URL()+path, map[string]string{"iPlanetDirectoryPro": tw.admin,
		"Accept-API-Version": "protocol=1.0,resource=1.0", "Content-Type": "application/json"}, body)
}
