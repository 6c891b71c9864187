// Command cloud-app is the manufacturer's cloud service: an OAuth 2.0 client that gets its access token
// from AM with the client credentials grant, connects to imb, subscribes to the telemetry and state of
// every thing (things/+/telemetry/# and things/+/state), prints what arrives and, with -thing and
// -command, sends the thing a command as soon as the thing is heard from. Before its token expires it
// gets a new one and re-authenticates (MQTT 5) or reconnects (MQTT 3.1.1, -mqtt311).
//
//	go run ./examples/cloud-app -url http://127.0.0.1:8080/am -broker 127.0.0.1:1883 -thing thermostat-1 -command '{"setpoint":21}'
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"imb/examples/internal/cli"
	"imb/examples/internal/link"
	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

func main() { os.Exit(cli.Main(run)) }

// message is one delivery from the broker.
type message struct {
	topic   string
	payload []byte
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cloud-app", flag.ContinueOnError)
	amURL := fs.String("url", cli.DefaultURL, "base URL of AM (or of the AM-compatible server imb dev runs)")
	clientID := fs.String("client-id", "cloud-app", "OAuth 2.0 client id (also the MQTT client id)")
	secret := fs.String("client-secret", "cloud-app-dev-secret", "OAuth 2.0 client secret (or environment variable CLOUD_APP_SECRET)")
	scope := fs.String("scope", "fleet:read fleet:command", "space-separated scopes to ask for")
	broker := fs.String("broker", "127.0.0.1:1883", "imb's MQTT address: host:port, or a tcp://, tls://, ws:// or wss:// URL")
	v311 := fs.Bool("mqtt311", false, "speak MQTT 3.1.1 (reconnects to renew its token) instead of MQTT 5 (re-authenticates)")
	thingID := fs.String("thing", "", "thing to send -command to")
	command := fs.String("command", "", `JSON command for -thing, e.g. {"setpoint":21}`)
	commandTopic := fs.String("command-topic", "setpoint", "topic under things/{thing}/commands/ to send -command to")
	count := fs.Int("count", 0, "stop after this many distinct messages (0: run until interrupted)")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each request to AM")
	debug := fs.Bool("debug", false, "log connection events on stderr (tokens appear as fingerprints only)")
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if env := os.Getenv("CLOUD_APP_SECRET"); env != "" && !flagSet(fs, "client-secret") {
		*secret = env
	}
	if (*thingID == "") != (*command == "") || (*command != "" && !json.Valid([]byte(*command))) || *count < 0 {
		fmt.Fprintln(stderr, "-thing and -command go together, -command must be JSON and -count not negative")
		return cli.ErrUsage
	}
	tokens := link.NewClientCredentials(*amURL, *clientID, *secret, strings.Fields(*scope))
	var first *sdk.Token
	if err := cli.Step(stdout, "Requesting access token for "+*clientID, func() error {
		tctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		var err error
		first, err = tokens.Token(tctx)
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "Expires in:", first.ExpiresIn)
	fmt.Fprintln(stdout, "Scope(s):", first.Scopes)

	received := make(chan message, 1024)
	var dropped sync.Once
	dialer := &sdkmqtt.Dialer{
		Tokens: tokens, Username: *clientID, ClientID: *clientID,
		Persistent: true, // QoS 1 telemetry waits while the application reconnects
		Logger:     cli.Logger(stderr, *debug),
	}
	conn, err := link.Connect(ctx, stdout, dialer, *broker, *v311, func(topic string, payload []byte) {
		select {
		case received <- message{topic, append([]byte(nil), payload...)}:
		default: // the printer is far behind; never block the MQTT client
			dropped.Do(func() { fmt.Fprintln(stderr, "cloud-app: output too slow, messages dropped") })
		}
	})
	if err != nil {
		return err
	}
	defer link.CloseSoon(conn)
	filters := []string{"things/+/telemetry/#", "things/+/state"}
	if err := cli.Step(stdout, "Subscribing to "+strings.Join(filters, " and "), func() error {
		return conn.Subscribe(ctx, filters...)
	}); err != nil {
		return err
	}

	pending := *command != ""
	// QoS 1 may deliver a message twice (a reconnect before its PUBACK reached the broker is
	// legal redelivery), so -count counts distinct messages; a repeat is printed, not counted.
	seen := make(map[string]struct{})
	for n := 0; *count == 0 || n < *count; {
		var m message
		select {
		case <-ctx.Done():
			return nil
		case <-conn.Done():
			return fmt.Errorf("connection to imb ended: %w", conn.Err())
		case m = <-received:
		}
		fmt.Fprintf(stdout, "%s %s\n", m.topic, m.payload)
		if *count > 0 {
			key := m.topic + "\x00" + string(m.payload)
			if _, dup := seen[key]; dup {
				continue
			}
			seen[key] = struct{}{}
		}
		n++
		// Telemetry (never retained) shows the thing is online and subscribed to its commands.
		if pending && strings.HasPrefix(m.topic, "things/"+*thingID+"/telemetry/") {
			pending = false
			topic := "things/" + *thingID + "/commands/" + *commandTopic
			if err := cli.Step(stdout, fmt.Sprintf("Sending %s to %s", *command, topic), func() error {
				return conn.Publish(ctx, topic, false, []byte(*command))
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// flagSet reports whether name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
