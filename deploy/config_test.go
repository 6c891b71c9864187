package deploy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"imb/amdev"
	"imb/broker"
)

const sampleConfig = "deploy/imb.yaml"

// sampleAMBase is the AM base URL the sample configuration is written for.
const sampleAMBase = "https://am.example.com/am"

// readSample decodes deploy/imb.yaml as imb.yaml is decoded: strictly, into
// broker.Config over its defaults.
func readSample(t *testing.T) broker.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg := broker.Defaults()
	if err := broker.DecodeConfig(sampleConfig, data, &cfg); err != nil {
		t.Fatalf("%v", err)
	}
	return cfg
}

// TestSampleConfigIsProduction checks what makes deploy/imb.yaml a production
// setup rather than a development one.
func TestSampleConfigIsProduction(t *testing.T) {
	cfg := readSample(t)
	if cfg.TLSAddr == "" || cfg.TLSCert == "" || cfg.TLSKey == "" {
		t.Errorf("no TLS listener: tls_addr %q tls_cert %q tls_key %q", cfg.TLSAddr, cfg.TLSCert, cfg.TLSKey)
	}
	if cfg.MQTTAddr != "" && !loopbackAddr(cfg.MQTTAddr) {
		t.Errorf("mqtt_addr %s: plain MQTT carries tokens in clear; keep it off or on loopback", cfg.MQTTAddr)
	}
	if cfg.DataDir == "" {
		t.Error("no data directory: sessions and retained messages would not survive a restart")
	}
	if cfg.AdminAddr == "" {
		t.Error("no admin address: no /metrics, no /readyz")
	}
	if cfg.ClientSecret != "" {
		t.Error("client_secret in the sample: secrets come from IMB_CLIENT_SECRET")
	}
	if !strings.HasPrefix(cfg.Issuer, sampleAMBase+"/oauth2/realms/root/realms/") {
		t.Errorf("issuer %q: the sample uses the realm-path form under %s", cfg.Issuer, sampleAMBase)
	}
	if cfg.IntrospectURL != cfg.Issuer+"/introspect" {
		t.Errorf("introspect_url %q, want %q", cfg.IntrospectURL, cfg.Issuer+"/introspect")
	}
}

func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && (host == "localhost" || (ip != nil && ip.IsLoopback()))
}

// TestSampleConfigServes runs `imb serve --config` on deploy/imb.yaml, with only
// the AM host moved to an amdev on loopback (which has the sample's realm) and
// addresses, files and the data directory swapped by flags: the file passes the
// real configuration path, the broker becomes ready against the realm-path issuer,
// the TLS listener completes a handshake, and the logs are JSON.
func TestSampleConfigServes(t *testing.T) {
	sample := readSample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dir := t.TempDir()
	realm := strings.TrimPrefix(sample.Issuer, sampleAMBase+"/oauth2/realms/root/realms/")
	amConfig := filepath.Join(dir, "amdev.yaml")
	if err := os.WriteFile(amConfig, []byte("realms: [/"+strings.ReplaceAll(realm, "/realms/", "/")+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	am, err := amdev.Start(ctx, amdev.Config{Listen: "127.0.0.1:0", InMemory: true, ConfigFile: amConfig,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = am.Close() })

	data, err := os.ReadFile(filepath.Join(repoRoot, sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte(sampleAMBase)); n < 2 {
		t.Fatalf("%s names %s %d times, want issuer and introspect_url", sampleConfig, sampleAMBase, n)
	}
	local := filepath.Join(dir, "imb.yaml")
	if err := os.WriteFile(local, bytes.ReplaceAll(data, []byte(sampleAMBase), []byte(am.URL())), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := selfSigned(t, dir)

	p := imb.start(t, map[string]string{"IMB_CLIENT_SECRET": amdev.BrokerClientSecret},
		"serve", "--config", local, "--log-format", "json",
		"--tls-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile,
		"--data", filepath.Join(dir, "data"), "--policy", filepath.Join(repoRoot, "topics.yaml"))
	addrs := p.waitListening(t, "tls", "mqtt", "admin")
	imb.waitHealthy(t, []string{"health", "--url", "http://" + addrs["admin"] + "/readyz"})

	conn, err := (&tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "imb.test"}}).DialContext(ctx, "tcp", addrs["tls"])
	if err != nil {
		t.Fatalf("TLS listener %s: %v", addrs["tls"], err)
	}
	_ = conn.Close()

	for line := range strings.SplitSeq(strings.TrimSpace(p.stderr.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("log line is not JSON: %q", line)
		}
		if strings.Contains(line, amdev.BrokerClientSecret) {
			t.Errorf("log line carries the client secret: %q", line)
		}
	}
}

// TestSampleConfigErrors shows that the run above is meaningful: the same path
// rejects a misspelt key and a value of the wrong type, naming the line.
func TestSampleConfigErrors(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, extra, want string }{
		{"unknown key", "tls_adr: 0.0.0.0:8883\n", "tls_adr"},
		{"bad duration", "revalidate_interval: soon\n", "revalidate_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "imb.yaml")
			if err := os.WriteFile(f, append(bytes.Clone(data), tc.extra...), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := imb.command(ctx, "serve", "--config", f)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Fatalf("exit %d (%v), want 2 (configuration error); stderr:\n%s", code, err, &stderr)
			}
			line := strings.Count(string(data), "\n") + 1
			if pos := f + ":" + strconv.Itoa(line) + ":"; !strings.Contains(stderr.String(), pos) || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("error %q does not name %s and %s", stderr.String(), pos, tc.want)
			}
		})
	}
}

// selfSigned writes a P-256 certificate for imb.test and its key, and returns a
// pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imb.test"},
		DNSNames:     []string{"imb.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
