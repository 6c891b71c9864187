package resources

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"imb/sdk"
)

// The material must be exactly what AM (and amdev) are configured with in the walk-through.
func TestMaterialMatchesTheWalkthrough(t *testing.T) {
	key, err := ThingKey()
	if err != nil {
		t.Fatal(err)
	}
	if key.ID() != ThingKeyID {
		t.Errorf("thing key id %s, want %s", key.ID(), ThingKeyID)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(ThingJWKS()), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("ThingJWKS: %v", err)
	}
	if kid, _ := sdk.Thumbprint(set.Keys[0].Key); kid != ThingKeyID || set.Keys[0].KeyID != ThingKeyID {
		t.Errorf("thingKeys kid %s (thumbprint %s), want %s", set.Keys[0].KeyID, kid, ThingKeyID)
	}

	pub, err := SoftwarePublisherKey()
	if err != nil {
		t.Fatal(err)
	}
	published := readJWKS(t, "../../amdev/testdata/software-publisher-public.jwks")
	if pub.ID() != published.Keys[0].KeyID {
		t.Errorf("publisher key id %s, want the published %s", pub.ID(), published.Keys[0].KeyID)
	}

	_, ca, err := CA()
	if err != nil {
		t.Fatal(err)
	}
	pemCA, err := os.ReadFile("../../amdev/testdata/es256test-ca.cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemCA)
	if block == nil || !bytes.Equal(block.Bytes, ca.Raw) {
		t.Error("es256test.jwk's certificate is not amdev's es256test CA certificate")
	}
}

func readJWKS(t *testing.T, path string) jose.JSONWebKeySet {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("%s: %v", path, err)
	}
	return set
}

func TestThingCertificate(t *testing.T) {
	key, _ := sdk.GenerateKey(sdk.ES256)
	now := time.Now()
	cert, err := ThingCertificate(key, "dynamic-thing", now)
	if err != nil {
		t.Fatal(err)
	}
	_, ca, _ := CA()
	if err := cert.CheckSignatureFrom(withCA(ca)); err != nil {
		t.Fatalf("not signed by es256test: %v", err)
	}
	if cert.Subject.CommonName != "dynamic-thing" || !cert.NotBefore.Before(now.Add(-23*time.Hour)) || !cert.NotAfter.After(now.Add(23*time.Hour)) {
		t.Errorf("certificate %s valid %s..%s", cert.Subject, cert.NotBefore, cert.NotAfter)
	}
	if kid, _ := sdk.Thumbprint(cert.PublicKey); kid != key.ID() {
		t.Error("certificate is not for the thing's key")
	}
}

// withCA lets the expired es256test certificate act as an issuer for signature checks, as AM does.
func withCA(ca *x509.Certificate) *x509.Certificate {
	c := *ca
	c.BasicConstraintsValid, c.IsCA = true, true
	c.KeyUsage |= x509.KeyUsageCertSign
	return &c
}

func TestSoftwareStatement(t *testing.T) {
	key, _ := sdk.GenerateKey(sdk.ES256)
	stmt, err := SoftwareStatement(key, "test")
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(stmt, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	published := readJWKS(t, "../../amdev/testdata/software-publisher-public.jwks")
	if jws.Signatures[0].Header.KeyID != published.Keys[0].KeyID {
		t.Errorf("kid %s, want %s", jws.Signatures[0].Header.KeyID, published.Keys[0].KeyID)
	}
	payload, err := jws.Verify(published.Keys[0].Key)
	if err != nil {
		t.Fatalf("does not verify with the publisher's public key: %v", err)
	}
	var claims struct {
		Iss  string             `json:"iss"`
		JWKS jose.JSONWebKeySet `json:"jwks"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Iss != SoftwarePublisherIssuer || len(claims.JWKS.Keys) != 1 || claims.JWKS.Keys[0].KeyID != key.ID() {
		t.Errorf("claims %+v", claims)
	}
	if strings.Count(stmt, ".") != 2 {
		t.Error("not a compact JWS")
	}
}
