package mqtt_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	imb "imb/broker"
	"imb/internal/issuer"
	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

// TestDialV5AgainstImb connects through the real imb broker, which names the
// authentication method in CONNACK as MQTT 5 requires, and re-authenticates.
func TestDialV5AgainstImb(t *testing.T) {
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	policy := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nrules:\n  - effect: allow\n    actions: [publish, subscribe]\n    topics: [\"things/{sub}/#\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := imb.Start(context.Background(), imb.Config{MQTTAddr: "127.0.0.1:0", PolicyFile: policy,
		Issuer: iss.URL(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tok := &sdk.Token{AccessToken: iss.Mint(issuer.Claims{"sub": "thermostat-1"}, time.Hour), Expiry: time.Now().Add(time.Hour)}
	d := &sdkmqtt.Dialer{Tokens: staticTokens{tok}, ClientID: "thermostat-1", AuthMethod: sdkmqtt.AuthMethodJWT}
	conn, err := d.DialV5(ctx, "tcp://"+b.Addr("tcp"), paho.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.Reauthenticate(ctx); err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	if _, err := conn.Client.Publish(ctx, &paho.Publish{Topic: "things/thermostat-1/telemetry", QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatal(err)
	}
}
