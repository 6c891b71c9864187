// Package testpki makes real X.509 material for tests: a CA, a server certificate for 127.0.0.1 and client
// certificates signed by it, with the files a broker's TLS configuration reads.
package testpki

import (
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
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a CA whose files live in a test's temporary directory.
type PKI struct {
	// Pool trusts the CA.
	Pool *x509.CertPool
	// CAFile is the CA certificate as PEM (a broker's tls_client_ca).
	CAFile string
	// CertFile and KeyFile are a server certificate for 127.0.0.1 and its key (tls_cert, tls_key).
	CertFile, KeyFile string

	key    *ecdsa.PrivateKey
	ca     *x509.Certificate
	dir    string
	serial int64
}

// New creates a CA and a server certificate.
func New(t testing.TB) *PKI {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &PKI{Pool: x509.NewCertPool(), key: key, ca: ca, dir: t.TempDir(), serial: 1}
	p.Pool.AddCert(ca)
	p.CAFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	server, _ := p.issue(t, "127.0.0.1", true)
	kb, err := x509.MarshalECPrivateKey(server.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	p.CertFile = p.write(t, "server.pem", "CERTIFICATE", server.Certificate[0])
	p.KeyFile = p.write(t, "server-key.pem", "EC PRIVATE KEY", kb)
	return p
}

// Client issues a client certificate for cn; its Leaf is set.
func (p *PKI) Client(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	c, _ := p.issue(t, cn, false)
	return c
}

// ClientConfig is a TLS client configuration that trusts the CA and presents cert.
func (p *PKI) ClientConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.Pool, Certificates: []tls.Certificate{cert}}
}

// Thumbprint is a certificate's RFC 8705 cnf "x5t#S256": base64url SHA-256 of its DER.
func Thumbprint(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Certificate[0])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (p *PKI) issue(t testing.TB, cn string, server bool) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key := newKey(t)
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

func (p *PKI) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
