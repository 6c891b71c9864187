package httpdoor_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imb/amdev"
)

// loopbackCert writes a self-signed certificate for 127.0.0.1; the certificate file is also the CA
// file a client trusts.
func loopbackCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func needCurl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	return p
}

// curl runs curl with args and returns the response head and body (-i).
func curl(t *testing.T, args ...string) (status string, out string) {
	t.Helper()
	cmd := exec.CommandContext(testContext(t), needCurl(t), append([]string{"-sS", "-i", "--max-time", "20"}, args...)...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	out = string(b)
	status, _, _ = strings.Cut(out, "\r\n")
	return status, out
}

// The seed's TV posts with curl over HTTPS; the cloud application receives it over MQTT.
func TestCurlPublishOverHTTPS(t *testing.T) {
	am := startAM(t, nil, "tv-c1")
	cfg := brokerConfig(t, am)
	certFile, keyFile := loopbackCert(t)
	cfg.HTTPAddr, cfg.HTTPSAddr, cfg.TLSCert, cfg.TLSKey = "", "127.0.0.1:0", certFile, keyFile
	b := startBroker(t, cfg)
	msgs := subscriber(t, am, b.Addr("tcp"), "things/+/telemetry/#")
	base := "https://" + b.Addr("https")
	tok := thingToken(t, am, "tv-c1")

	status, out := curl(t, "--cacert", certFile, "-H", "Authorization: Bearer "+tok, "-H", "Content-Type: text/plain",
		"-H", "MQTT-User-Property: app=netflix", "--data-binary", "playing", base+"/topics/things/tv-c1/telemetry/app")
	if !strings.Contains(status, " 200") || !strings.Contains(out, `"confirmed":true`) {
		t.Fatalf("curl publish:\n%s", out)
	}
	m := receive(t, msgs)
	if m.Topic != "things/tv-c1/telemetry/app" || string(m.Payload) != "playing" || m.Properties.ContentType != "text/plain" ||
		len(m.Properties.User) != 1 || m.Properties.User[0].Value != "netflix" {
		t.Fatalf("subscriber got %s %q %+v", m.Topic, m.Payload, m.Properties)
	}

	tests := []struct {
		name, token, path, want, header string
	}{
		{"denied topic", tok, "/topics/things/someone-else/telemetry/app", " 403", `WWW-Authenticate: Bearer realm="imb", error="insufficient_scope"`},
		{"bad token", "expired.or.forged", "/topics/things/tv-c1/telemetry/app", " 401", `WWW-Authenticate: Bearer realm="imb", error="invalid_token"`},
		{"wildcard", tok, "/topics/things/tv-c1/telemetry/+", " 400", `"error":"topic_name_invalid"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := curl(t, "--cacert", certFile, "-H", "Authorization: Bearer "+tt.token, "--data-binary", "x", base+tt.path)
			if !strings.Contains(status, tt.want) || !strings.Contains(strings.ToLower(out), strings.ToLower(tt.header)) || !strings.Contains(out, "Content-Type: application/json") {
				t.Fatalf("want %s with %s:\n%s", tt.want, tt.header, out)
			}
		})
	}
	nothing(t, msgs)

	// Plain HTTP is not served on the TLS port.
	if b.Addr("http") != "" {
		t.Fatal("http_addr was not configured but is served")
	}
}

// curl -N follows the SSE stream; at token expiry the stream ends with an end event and curl exits.
func TestCurlSSEEndsAtTokenExpiry(t *testing.T) {
	const lifetime = 3 * time.Second
	am := startAM(t, func(s *amdev.Settings) { s.OAuth2.AccessTokenLifetime = amdev.Duration(lifetime) }, "tv-c2")
	b := startBroker(t, brokerConfig(t, am))
	tok := thingToken(t, am, "tv-c2")
	cmd := exec.CommandContext(testContext(t), needCurl(t), "-sS", "-N", "--max-time", "30",
		"-H", "Authorization: Bearer "+tok, "-H", "Accept: text/event-stream",
		"http://"+b.Addr("http")+"/topics/things/tv-c2/commands/%23")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.HasPrefix(sc.Text(), ": subscribed") {
			break
		}
	}
	app := cloudApp(t, am, b.Addr("tcp"), nil)
	if _, err := app.Publish(testContext(t), pahoPublish("things/tv-c2/commands/power", "off")); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl did not end cleanly: %v\n%s", err, strings.Join(lines, "\n"))
	}
	out := strings.Join(lines, "\n")
	msg := strings.Index(out, `event: message`)
	end := strings.Index(out, `event: end`)
	if msg < 0 || end < msg || !strings.Contains(out, `"payload":"off"`) || !strings.Contains(out, `"reason":"token_expired"`) {
		t.Fatalf("stream:\n%s", out)
	}
}
