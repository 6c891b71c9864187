package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"imb/broker"
	"imb/hooks"
	"imb/internal/issuer"
	"imb/internal/mqtttest"
	"imb/internal/testpki"
)

// TestRevokeAgainstDev: against imb dev, imb revoke needs no flag but the target: imb dev provisioned the
// administrator's client in amdev and wrote where it is; the demo thing's connection ends with DISCONNECT 0x87 at
// once and its token is refused from then on. The file is gone when imb dev stops.
func TestRevokeAgainstDev(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dev-admin.json")
	t.Setenv("IMB_ADMIN_FILE", file)
	guide := startDev(t)
	if !strings.Contains(guide, file) {
		t.Fatalf("the guide does not say where the admin client is:\n%s", guide)
	}
	pub := guideLine(t, guide, "telemetry/temperature -m 21.5")
	token := flagP.FindStringSubmatch(pub)[1]
	hp := flagH.FindStringSubmatch(pub)
	addr := hp[1] + ":" + hp[2]
	r := mqtttest.Connect(t, addr, "demo-thermostat", token)

	var out, errOut strings.Builder
	start := time.Now()
	if code := run([]string{"revoke", "--sub", "demo-thermostat", "--reason", "sold"}, &out, &errOut); code != 0 {
		t.Fatalf("imb revoke: exit %d: %s", code, errOut.String())
	}
	pk, ok := r.Read(time.Second)
	if !ok || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("want DISCONNECT 0x87, got ok=%v %+v", ok, pk.FixedHeader)
	}
	t.Logf("imb revoke (token by client credentials, then the admin call) to DISCONNECT: %s; it said %q", time.Since(start), out.String())
	if !strings.Contains(out.String(), "1 connection(s) ended") {
		t.Errorf("imb revoke said %q", out.String())
	}
	again := mqtttest.Dial(t, addr)
	if err := again.Send(mqtttest.ConnectPacket("demo-thermostat", token)); err != nil {
		t.Fatal(err)
	}
	if ack, ok := again.Read(5 * time.Second); !ok || ack.ReasonCode != packets.ErrBadUsernameOrPassword.Code {
		t.Fatalf("the revoked token connected again: %v %#x", ok, ack.ReasonCode)
	}
}

// TestRevokeWithFlags: imb revoke given an identity provider's token endpoint and client revokes by client id and
// by token hash; a client without the admin scope is refused and changes nothing.
func TestRevokeWithFlags(t *testing.T) {
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	iss.AddClient("ops", "ops-secret", "imb:admin")
	iss.AddClient("intruder", "intruder-secret", "publish")
	policy := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(context.Background(), broker.Config{MQTTAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		PolicyFile: policy, Issuer: iss.URL(), JWKSURL: iss.JWKSURL(), AdminScope: "imb:admin",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Setenv("IMB_ADMIN_FILE", filepath.Join(t.TempDir(), "none.json"))
	flags := func(client, secret string, target ...string) []string {
		return append([]string{"revoke", "--admin", "http://" + b.Addr("admin"), "--token-url", iss.TokenURL(),
			"--client", client, "--client-secret", secret}, target...)
	}
	tok := iss.Mint(issuer.Claims{"sub": "t1"}, time.Hour)
	r := mqtttest.Connect(t, b.Addr("tcp"), "t1", tok)

	var out, errOut strings.Builder
	if code := run(flags("intruder", "intruder-secret", "--client-id", "t1"), &out, &errOut); code != exitRuntime ||
		!strings.Contains(errOut.String(), "insufficient_scope") {
		t.Fatalf("a client without the admin scope: exit %d, %q", code, errOut.String())
	}
	if r.ClosedWithin(50 * time.Millisecond) {
		t.Fatal("a refused revocation disconnected the thing")
	}
	if code := run(flags("ops", "wrong", "--client-id", "t1"), &out, &errOut); code != exitRuntime {
		t.Fatalf("a wrong client secret: exit %d", code)
	}
	tok2 := iss.Mint(issuer.Claims{"sub": "t2"}, time.Hour)
	r2 := mqtttest.Connect(t, b.Addr("tcp"), "t2", tok2)
	for _, c := range []struct {
		target []string
		conn   *mqtttest.Raw
	}{{[]string{"--client-id", "t1"}, r}, {[]string{"--token-sha256", hooks.TokenHash(tok2)}, r2}} {
		target, r := c.target, c.conn
		errOut.Reset()
		if code := run(flags("ops", "ops-secret", target...), &out, &errOut); code != 0 {
			t.Fatalf("imb revoke %v: exit %d %s", target, code, errOut.String())
		}
		if pk, ok := r.Read(time.Second); !ok || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrNotAuthorized.Code {
			t.Fatalf("imb revoke %v: want DISCONNECT 0x87, got ok=%v %+v", target, ok, pk.FixedHeader)
		}
	}
}

// TestRevokeWithClientCertificate: imb revoke --cert/--key calls an HTTPS admin
// listener with a client certificate of admin_client_ca instead of a token.
func TestRevokeWithClientCertificate(t *testing.T) {
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	pki := testpki.New(t)
	policy := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(context.Background(), broker.Config{MQTTAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		PolicyFile: policy, Issuer: iss.URL(), JWKSURL: iss.JWKSURL(),
		AdminTLSCert: pki.CertFile, AdminTLSKey: pki.KeyFile, AdminClientCA: pki.CAFile, AdminClientNames: []string{"ops-console"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Setenv("IMB_ADMIN_FILE", filepath.Join(t.TempDir(), "none.json"))
	certFile, keyFile := writeCert(t, pki.Client(t, "ops-console"))
	strangerCert, strangerKey := writeCert(t, pki.Client(t, "someone"))
	tok := iss.Mint(issuer.Claims{"sub": "t1"}, time.Hour)
	r := mqtttest.Connect(t, b.Addr("tcp"), "t1", tok)
	args := func(cert, key string) []string {
		return []string{"revoke", "--admin", "https://" + b.Addr("admin"), "--cacert", pki.CAFile,
			"--cert", cert, "--key", key, "--client-id", "t1"}
	}
	var out, errOut strings.Builder
	if code := run(args(strangerCert, strangerKey), &out, &errOut); code != exitRuntime || !strings.Contains(errOut.String(), "invalid_client") {
		t.Fatalf("a certificate not named in admin_client_names: exit %d, %q", code, errOut.String())
	}
	if r.ClosedWithin(50 * time.Millisecond) {
		t.Fatal("a refused revocation disconnected the thing")
	}
	errOut.Reset()
	if code := run(args(certFile, keyFile), &out, &errOut); code != 0 {
		t.Fatalf("imb revoke with the certificate: exit %d %s", code, errOut.String())
	}
	if pk, ok := r.Read(time.Second); !ok || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("want DISCONNECT 0x87, got ok=%v %+v", ok, pk.FixedHeader)
	}
}

// writeCert writes a certificate and its key as PEM files.
func writeCert(t *testing.T, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	kb, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRevokeUsage: usage errors exit 2 and say what is wrong.
func TestRevokeUsage(t *testing.T) {
	t.Setenv("IMB_ADMIN_FILE", filepath.Join(t.TempDir(), "none.json"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"revoke"}, "exactly one of"},
		{[]string{"revoke", "--sub", "a", "--client-id", "b"}, "exactly one of"},
		{[]string{"revoke", "--client-id", "b", "--issuer", "x"}, "--issuer qualifies --sub"},
		{[]string{"revoke", "--sub", "a"}, "no administrator's client"},
		{[]string{"revoke", "--bogus"}, "flag provided but not defined"},
		{[]string{"revoke", "--sub", "a", "--cert", "c.pem"}, "--cert and --key go together"},
		{[]string{"revoke", "--sub", "a", "--cert", "/nonexistent/c.pem", "--key", "/nonexistent/k.pem"}, "--cert /nonexistent/c.pem"},
		{[]string{"revoke", "--sub", "a", "extra"}, "unexpected argument"},
	} {
		var out, errOut strings.Builder
		if code := run(c.args, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut.String(), c.want)
		}
	}
}
