package mqtt_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

// staticTokens is a TokenSource with one long-lived token; a thing uses (*sdk.Thing).TokenSource.
type staticTokens struct{ tok *sdk.Token }

func (s staticTokens) Token(context.Context) (*sdk.Token, error) { return s.tok, nil }

// A thing connects with MQTT 5, its token as OAUTH2-JWT authentication data, and publishes telemetry.
// (The broker here accepts anyone; imb checks the token.)
func ExampleDialer_DialV5() {
	server := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	_ = server.AddHook(new(auth.AllowHook), nil)
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	_ = server.AddListener(tcp)
	_ = server.Serve()
	defer server.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	received := make(chan string, 1)
	d := &sdkmqtt.Dialer{
		Tokens:     staticTokens{&sdk.Token{AccessToken: "eyJ...", Expiry: time.Now().Add(time.Hour)}},
		ClientID:   "thermostat-1",
		AuthMethod: sdkmqtt.AuthMethodJWT,
	}
	conn, err := d.DialV5(ctx, "tcp://"+tcp.Address(), paho.ClientConfig{
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { received <- string(pr.Packet.Payload); return true, nil },
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "things/thermostat-1/telemetry", QoS: 1}}}); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := conn.Client.Publish(ctx, &paho.Publish{Topic: "things/thermostat-1/telemetry", QoS: 1, Payload: []byte("21.5")}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-received)
	// Output: 21.5
}

// A thing connects with MQTT 3.1.1, its token as the password; before the token expires the connection
// reconnects with a renewed one, and a persistent session keeps QoS 1 messages for the gap.
func ExampleDialer_DialV311() {
	server := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	_ = server.AddHook(new(auth.AllowHook), nil)
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	_ = server.AddListener(tcp)
	_ = server.Serve()
	defer server.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &sdkmqtt.Dialer{
		Tokens:     staticTokens{&sdk.Token{AccessToken: "eyJ...", Expiry: time.Now().Add(time.Hour)}},
		Username:   "thermostat-2",
		Persistent: true,
	}
	conn, err := d.DialV311(ctx, "tcp://"+tcp.Address(), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(ctx)
	if err := conn.Publish(ctx, "things/thermostat-2/state", 1, false, []byte("heating")); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("published as", d.Username)
	// Output: published as thermostat-2
}
