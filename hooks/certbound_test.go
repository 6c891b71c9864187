package hooks_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/broker"
	"imb/internal/issuer"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and client certificates, all real.
type testPKI struct {
	caKey  *ecdsa.PrivateKey
	ca     *x509.Certificate
	pool   *x509.CertPool
	dir    string
	serial int64
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	p := &testPKI{caKey: key, ca: ca, pool: pool, dir: t.TempDir(), serial: 1}
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// issue signs a certificate for cn; server ones are for 127.0.0.1.
func (p *testPKI) issue(t *testing.T, cn string, server bool) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// x5t is a certificate's cnf "x5t#S256".
func x5t(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestCertificateBoundTokens: a token carrying cnf.x5t#S256 (RFC 8705) is accepted only on a TLS connection whose
// client certificate has that thumbprint, at CONNECT, at re-authentication and at the HTTPS door.
func TestCertificateBoundTokens(t *testing.T) {
	pki := newPKI(t)
	server, _ := pki.issue(t, "127.0.0.1", true)
	keyDER, err := x509.MarshalECPrivateKey(server.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile := pki.write(t, "server.pem", "CERTIFICATE", server.Certificate[0])
	keyFile := pki.write(t, "server-key.pem", "EC PRIVATE KEY", keyDER)
	e := newEnv(t, func(c *broker.Config) {
		c.TLSAddr, c.HTTPSAddr = "127.0.0.1:0", "127.0.0.1:0"
		c.TLSCert, c.TLSKey, c.TLSClientCA = certFile, keyFile, filepath.Join(pki.dir, "ca.pem")
	})
	certA, leafA := pki.issue(t, "cb-1", false)
	certB, leafB := pki.issue(t, "cb-1", false)
	boundTo := func(sub string, leaf *x509.Certificate) string {
		return e.iss.Mint(issuer.Claims{"sub": sub, "scope": []string{"publish"}, "cnf": map[string]any{"x5t#S256": x5t(leaf)}}, time.Hour)
	}
	tlsDial := func(cert tls.Certificate) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			return tls.Dial("tcp", e.b.Addr("tls"), &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{cert}})
		}
	}

	cases := []struct {
		name  string
		token string
		o     v5opts
		want  int
	}{
		{"its certificate", boundTo("cb-1", leafA), v5opts{dial: tlsDial(certA), authMethod: true}, 0},
		{"another certificate of the same CA", boundTo("cb-1", leafA), v5opts{dial: tlsDial(certB)}, 0x86},
		{"no TLS", boundTo("cb-1", leafA), v5opts{}, 0x86},
		{"introspected, its certificate", e.iss.MintOpaque(issuer.Claims{"sub": "cb-1", "scope": []string{"publish"},
			"cnf": map[string]any{"x5t#S256": x5t(leafA)}}, time.Hour), v5opts{dial: tlsDial(certA)}, 0},
		{"introspected, another certificate", e.iss.MintOpaque(issuer.Claims{"sub": "cb-1", "scope": []string{"publish"},
			"cnf": map[string]any{"x5t#S256": x5t(leafA)}}, time.Hour), v5opts{dial: tlsDial(certB)}, 0x86},
		{"bearer token on the TLS listener", e.jwt("cb-1", "publish"), v5opts{dial: tlsDial(certB)}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.clean = true
			r := e.connect5("cb-1", c.token, c.o)
			if r.code() != c.want {
				t.Fatalf("CONNACK %#x (%v), want %#x", r.code(), r.err, c.want)
			}
			if c.want == 0 {
				_ = r.c.Disconnect(&paho.Disconnect{})
				waitFor(t, "disconnect", func() bool { return e.b.Server().Clients.Len() == 0 })
			}
		})
	}

	t.Run("re-authentication", func(t *testing.T) {
		r := e.connect5("cb-1", boundTo("cb-1", leafA), v5opts{dial: tlsDial(certA), authMethod: true, clean: true})
		if r.code() != 0 {
			t.Fatalf("connect: %#x %v", r.code(), r.err)
		}
		reauth := func(tok string) *paho.AuthResponse {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := r.c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
				Properties: &paho.AuthProperties{AuthMethod: "OAUTH2-JWT", AuthData: []byte(tok)}})
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		if resp := reauth(boundTo("cb-1", leafA)); !resp.Success {
			t.Fatalf("re-auth with a token bound to the connection's certificate: %#x", resp.ReasonCode)
		}
		if resp := reauth(boundTo("cb-1", leafB)); resp.Success || resp.ReasonCode != 0x87 {
			t.Fatalf("re-auth with a token bound to another certificate: success=%v %#x, want 0x87", resp.Success, resp.ReasonCode)
		}
	})

	t.Run("HTTPS door", func(t *testing.T) {
		post := func(cert tls.Certificate, tok string) int {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{cert}}}}
			req, _ := http.NewRequest(http.MethodPost, "https://"+e.b.Addr("https")+"/topics/things/cb-1/telemetry/t", bytes.NewReader([]byte("1")))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			return resp.StatusCode
		}
		if got := post(certA, boundTo("cb-1", leafA)); got != 200 {
			t.Fatalf("its certificate: %d, want 200", got)
		}
		if got := post(certB, boundTo("cb-1", leafA)); got != 401 {
			t.Fatalf("another certificate: %d, want 401", got)
		}
	})
}
