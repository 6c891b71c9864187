package sdk

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// The walk-through's published JWKS name their keys by the padded base64url RFC 7638 thumbprint, so
// recomputing the kid from the public values is a known-answer test of Thumbprint.
func TestThumbprintMatchesPublishedKeyIDs(t *testing.T) {
	for _, file := range []string{"manual-thing.jwks", "software-publisher-public.jwks"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "amdev", "testdata", file))
			if err != nil {
				t.Fatalf("walk-through material: %v", err)
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(data, &set); err != nil {
				t.Fatal(err)
			}
			got, err := Thumbprint(set.Keys[0].Key)
			if err != nil {
				t.Fatal(err)
			}
			if got != set.Keys[0].KeyID {
				t.Fatalf("thumbprint %q, published kid %q", got, set.Keys[0].KeyID)
			}
			if !strings.HasSuffix(got, "=") {
				t.Fatalf("thumbprint %q is not padded", got)
			}
		})
	}
}

func TestAlgorithmFollowsKey(t *testing.T) {
	for _, alg := range []Algorithm{ES256, ES384, ES512, EdDSA, PS256} {
		t.Run(string(alg), func(t *testing.T) {
			k, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm() != alg {
				t.Fatalf("algorithm %s, want %s", k.Algorithm(), alg)
			}
			want, _ := Thumbprint(k.Public())
			if k.ID() != want {
				t.Fatalf("kid %q, want thumbprint %q", k.ID(), want)
			}
		})
	}
	if k, _ := GenerateKey(""); k.Algorithm() != ES256 {
		t.Fatalf("default algorithm %s, want ES256", k.Algorithm())
	}
}

func pemFile(t *testing.T, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadKeyFileFormats(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(ec)
	edPKCS8, _ := x509.MarshalPKCS8PrivateKey(ed)
	rsaPKCS8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	tests := []struct {
		name  string
		typ   string
		der   []byte
		alg   Algorithm
		id    string
		wants string
	}{
		{"sec1", "EC PRIVATE KEY", sec1, ES256, "", ""},
		{"pkcs8 ec with id", "PRIVATE KEY", ecPKCS8, ES256, "pop.cnf", "pop.cnf"},
		{"pkcs8 ed25519", "PRIVATE KEY", edPKCS8, EdDSA, "", ""},
		{"pkcs8 rsa", "PRIVATE KEY", rsaPKCS8, PS256, "", ""},
		{"pkcs1 rsa", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), PS256, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadKeyFile(pemFile(t, tt.typ, tt.der), tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm() != tt.alg {
				t.Fatalf("alg %s, want %s", k.Algorithm(), tt.alg)
			}
			want := tt.wants
			if want == "" {
				want, _ = Thumbprint(k.Public())
			}
			if k.ID() != want {
				t.Fatalf("kid %q, want %q", k.ID(), want)
			}
		})
	}
}

func TestParseKeyPEMRejects(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalPKCS8PrivateKey(p224)
	tests := []struct {
		name    string
		data    []byte
		unsupp  bool
		message string
	}{
		{"no pem", []byte("not a key"), false, "no private key"},
		{"certificate only", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), false, "no private key"},
		{"garbage der", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), false, "PRIVATE KEY block"},
		{"rsa 1024", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}), true, "1024 bits"},
		{"p-224", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p224DER}), true, "P-224"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyPEM(tt.data, "")
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, ErrUnsupportedKey) != tt.unsupp || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error %q (unsupported=%v), want %q", err, errors.Is(err, ErrUnsupportedKey), tt.message)
			}
		})
	}
}

func TestPublicJWKSIsManualRegistrationForm(t *testing.T) {
	k, _ := GenerateKey(ES256)
	text, err := k.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(text), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0].KeyID != k.ID() || !set.Keys[0].IsPublic() || set.Keys[0].Use != "sig" || set.Keys[0].Algorithm != "ES256" {
		t.Fatalf("jwks %s", text)
	}
	if strings.Contains(k.String(), `"d"`) || strings.Contains(text, `"d"`) {
		t.Fatal("private material printed")
	}
}

func FuzzParseKeyPEM(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParseKeyPEM(data, "")
		if err == nil && (key.ID() == "" || key.Algorithm() == "") {
			t.Fatal("key without id or algorithm")
		}
	})
}

func FuzzParseCertificatesPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificatesPEM(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
	})
}
