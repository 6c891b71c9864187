package sdk_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"imb/amdev"
	"imb/sdk"
)

const testTimeout = 30 * time.Second

// testPKI is a CA the test configures amdev to trust for certificate registration, and a software
// publisher it trusts for software statements.
type testPKI struct {
	caKey     *ecdsa.PrivateKey
	caCert    *x509.Certificate
	caFile    string
	pubKey    *sdk.Key
	pubIssuer string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sdk test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(der)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{caKey: caKey, caCert: caCert, caFile: caFile, pubKey: pub, pubIssuer: "https://soft-pub.test"}
}

// certificate issues a certificate for key with CN = id.
func (p *testPKI) certificate(t *testing.T, id string, key *sdk.Key) *x509.Certificate {
	t.Helper()
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: n, Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// softwareStatement is a publisher-signed statement (RFC 7591 §2.3) carrying the thing's public key.
func (p *testPKI) softwareStatement(t *testing.T, key *sdk.Key) string {
	t.Helper()
	claims := map[string]any{
		"iss":         p.pubIssuer,
		"software_id": "sdk-test",
		"scope":       "publish subscribe",
		"jwks":        jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.PublicJWK()}},
	}
	payload, _ := json.Marshal(claims)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.pubKey.Signer(), KeyID: p.pubKey.ID()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

type amdevOptions struct {
	things  map[string]*sdk.Key // manually registered things in the root realm
	realms  []string
	aliases map[string]string
	tweak   func(*amdev.Settings)
}

// startAM runs a real amdev on a free 127.0.0.1 port for the test.
func startAM(t *testing.T, pki *testPKI, o amdevOptions) *amdev.Server {
	t.Helper()
	s := amdev.DefaultSettings()
	s.Realms = append(s.Realms, o.realms...)
	for a, r := range o.aliases {
		s.RealmAliases[a] = r
	}
	if pki != nil {
		s.CertificateAuthorities = []string{pki.caFile}
		jwks, err := pki.pubKey.PublicJWKS()
		if err != nil {
			t.Fatal(err)
		}
		s.SoftwarePublishers["sdk-test-publisher"] = &amdev.SoftwarePublisher{Issuer: pki.pubIssuer, JWKS: jwks}
	}
	for id, key := range o.things {
		jwks, err := key.PublicJWKS()
		if err != nil {
			t.Fatal(err)
		}
		s.Things[id] = &amdev.Thing{Realm: "/", ThingType: "device", ThingKeys: jwks}
	}
	if o.tweak != nil {
		o.tweak(&s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	srv, err := amdev.Start(ctx, amdev.Config{
		Listen: "127.0.0.1:0", InMemory: true, Settings: &s,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("amdev.Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func newClient(t *testing.T, srv *amdev.Server, realm string) *sdk.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: srv.URL(), Realm: realm})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func mustKey(t *testing.T, alg sdk.Algorithm) *sdk.Key {
	t.Helper()
	k, err := sdk.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// decideDevice plays the human: header login as the demo user, then the consent form at the
// verification URI, and returns the page amdev rendered.
func decideDevice(ctx context.Context, c *sdk.Client, da *sdk.DeviceAuthorization, decision string) (string, error) {
	user, err := c.Login(ctx, amdev.DemoUserID, amdev.DefaultUserPassword)
	if err != nil {
		return "", err
	}
	form := url.Values{"user_code": {da.UserCode}, "decision": {decision}, "csrf": {user.SSOToken()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, da.VerificationURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: c.CookieName(), Value: user.SSOToken()})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	return string(page), err
}
