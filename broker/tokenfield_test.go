package broker

import (
	"io"
	"log/slog"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"imb/authz"
	"imb/internal/issuer"
)

// TestTokenField connects real MQTT 3.1.1 clients (Eclipse Paho, as mosquitto and
// MQTT.js on 3.1.1 behave: no password without a username) with the token in the
// username or in the password, under each token_field setting.
func TestTokenField(t *testing.T) {
	for _, tc := range []struct {
		field              string
		inUsername, inPass bool // whether a connection succeeds with the token there
	}{
		{"password", false, true},
		{"username", true, false},
		{"either", true, true},
	} {
		t.Run(tc.field, func(t *testing.T) {
			b, iss := startBroker(t, func(c *Config) { c.TokenField = tc.field })
			token := iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish subscribe"}, time.Hour)
			for _, where := range []struct {
				name               string
				username, password string
				want               bool
			}{
				{"token as username, empty password", token, "", tc.inUsername},
				{"thing id as username, token as password", "t1", token, tc.inPass},
			} {
				o := mqtt3.NewClientOptions().AddBroker("tcp://" + b.Addr("tcp")).SetClientID("t1").
					SetUsername(where.username).SetPassword(where.password).SetAutoReconnect(false).
					SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
				c := mqtt3.NewClient(o)
				tok := c.Connect()
				if !tok.WaitTimeout(10 * time.Second) {
					t.Fatalf("%s: no CONNACK", where.name)
				}
				if ok := tok.Error() == nil; ok != where.want {
					t.Errorf("token_field %s, %s: connected %v (%v), want %v", tc.field, where.name, ok, tok.Error(), where.want)
				}
				if c.IsConnected() {
					pub := c.Publish("things/t1/telemetry/x", 1, false, "1")
					if !pub.WaitTimeout(10*time.Second) || pub.Error() != nil {
						t.Errorf("%s: publish: %v", where.name, pub.Error())
					}
					c.Disconnect(100)
				}
			}
		})
	}
}

// TestTokenFieldInvalid: an unknown token_field and one that contradicts
// require_username are configuration errors.
func TestTokenFieldInvalid(t *testing.T) {
	for name, cfg := range map[string]Config{
		"unknown":                        {MQTTAddr: "127.0.0.1:0", Issuer: "http://127.0.0.1:1", TokenField: "header"},
		"username with require_username": {MQTTAddr: "127.0.0.1:0", Issuer: "http://127.0.0.1:1", TokenField: "username", RequireUsername: true},
	} {
		t.Run(name, func(t *testing.T) {
			pol, err := authz.Parse("topics.yaml", []byte(policy))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Policy = pol
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			b, err := Start(t.Context(), cfg)
			if err == nil {
				_ = b.Close()
				t.Fatal("started")
			}
			if !IsConfigError(err) {
				t.Errorf("%v is not a configuration error", err)
			}
		})
	}
}
