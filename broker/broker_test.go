package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"imb/internal/issuer"
	"imb/internal/wsconn"
)

const policy = `version: 1
rules:
  - name: telemetry
    effect: allow
    actions: [publish, subscribe]
    topics: ["things/{sub}/telemetry/#"]
    scopes: [publish]
`

func startBroker(t *testing.T, mod func(*Config)) (*Broker, *issuer.Issuer) {
	t.Helper()
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	p := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(p, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		MQTTAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", PolicyFile: p,
		Issuer: iss.URL(), IntrospectURL: iss.IntrospectURL(), ClientID: iss.ClientID(), ClientSecret: iss.ClientSecret(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, iss
}

// roundTrip connects over conn, subscribes to its own telemetry and gets back what
// it publishes: the listener carries MQTT end to end.
func roundTrip(t *testing.T, conn net.Conn, token string) {
	t.Helper()
	got := make(chan string, 1)
	// paho.golang writes one packet in several Writes, from more than one goroutine
	// (a publish and the acknowledgement of a message received meanwhile): the
	// connection must serialise them or the stream interleaves.
	conn = packets.NewThreadSafeConn(conn)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(p paho.PublishReceived) (bool, error) { got <- string(p.Packet.Payload); return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "t1", CleanStart: true, KeepAlive: 30,
		Password: []byte(token), PasswordFlag: true}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "things/t1/telemetry/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "things/t1/telemetry/x", QoS: 1, Payload: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("message not delivered")
	}
}

func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	kb, _ := x509.MarshalECPrivateKey(key)
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestListeners(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	b, iss := startBroker(t, func(c *Config) {
		c.TLSAddr, c.WSAddr, c.WSSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		c.TLSCert, c.TLSKey = certFile, keyFile
	})
	tok := iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
	tlsConf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	t.Run("tcp", func(t *testing.T) {
		c, err := net.Dial("tcp", b.Addr("tcp"))
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, tok)
	})
	t.Run("tls", func(t *testing.T) {
		c, err := tls.Dial("tcp", b.Addr("tls"), tlsConf)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, tok)
	})
	for _, ws := range []struct{ name, url string }{
		{"ws", "ws://" + b.Addr("ws") + "/mqtt"},
		{"wss", "wss://" + b.Addr("wss") + "/mqtt"},
	} {
		t.Run(ws.name, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: tlsConf}
			c, resp, err := d.Dial(ws.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get("Sec-Websocket-Protocol") != "mqtt" {
				t.Fatalf("subprotocol %q", resp.Header.Get("Sec-Websocket-Protocol"))
			}
			roundTrip(t, wsconn.New(c), tok)
		})
	}
}

func TestWebSocketOriginCheck(t *testing.T) {
	b, _ := startBroker(t, func(c *Config) {
		c.WSAddr = "127.0.0.1:0"
		c.WSOrigins = []string{"https://console.example.com"}
	})
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}}
	h := http.Header{"Origin": {"https://evil.example"}}
	if _, resp, err := d.Dial("ws://"+b.Addr("ws")+"/mqtt", h); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v, resp %v", err, resp)
	}
	h.Set("Origin", "https://console.example.com")
	c, _, err := d.Dial("ws://"+b.Addr("ws")+"/mqtt", h)
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	_ = c.Close()
}

func TestPreConnectDeadline(t *testing.T) {
	b, _ := startBroker(t, func(c *Config) { c.ConnectDeadline = 300 * time.Millisecond })
	c, err := net.Dial("tcp", b.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the broker sent something to a client that never sent CONNECT")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("idle connection held for %s", d)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAdminEndpoints(t *testing.T) {
	b, iss := startBroker(t, func(c *Config) { c.JWKSURL = "" })
	admin := "http://" + b.Addr("admin")
	if code, _ := get(t, admin+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, body := get(t, admin+"/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	c, err := net.Dial("tcp", b.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour))
	_, metrics := get(t, admin+"/metrics")
	for _, want := range []string{
		`imb_connects_total{reason="ok",result="accepted"} 1`,
		"imb_token_cache_misses_total 1",
		"imb_token_validation_seconds_bucket",
		"imb_sessions_active",
		`imb_denials_total{action="publish"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// An identity provider gone for good makes the broker not ready.
	_ = iss.SetMode(issuer.Down)
	waitReady := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, admin+"/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "error") {
			break
		}
		if time.Now().After(waitReady) {
			t.Fatalf("/readyz still %d %s with the identity provider down", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := map[string]Config{
		"no validation":          {MQTTAddr: "127.0.0.1:0", PolicyFile: "x"},
		"tls without cert":       {MQTTAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", Issuer: "http://127.0.0.1:1"},
		"jwks without issuer":    {MQTTAddr: "127.0.0.1:0", JWKSURL: "http://127.0.0.1:1/jwks"},
		"introspect no client":   {MQTTAddr: "127.0.0.1:0", IntrospectURL: "http://127.0.0.1:1/i"},
		"sys interval too low":   {MQTTAddr: "127.0.0.1:0", Issuer: "http://127.0.0.1:1", SysInterval: time.Second},
		"allow-all off loopback": {MQTTAddr: "0.0.0.0:0", AllowAll: true},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			if b, err := Start(context.Background(), cfg); err == nil {
				_ = b.Close()
				t.Fatal("accepted")
			}
		})
	}
}
