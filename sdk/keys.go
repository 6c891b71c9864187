package sdk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

// Algorithm names a JWS signature algorithm a thing key signs with.
type Algorithm string

// The algorithms AM accepts for thing keys. The algorithm always follows from the key, as in AM's own
// SDK: RSA keys sign with RSASSA-PSS, never with RS*.
const (
	ES256 Algorithm = "ES256" // ECDSA P-256 with SHA-256; the default
	ES384 Algorithm = "ES384" // ECDSA P-384 with SHA-384
	ES512 Algorithm = "ES512" // ECDSA P-521 with SHA-512
	EdDSA Algorithm = "EdDSA" // Ed25519
	PS256 Algorithm = "PS256" // RSASSA-PSS with SHA-256 (RSA 2048-bit keys)
	PS384 Algorithm = "PS384" // RSASSA-PSS with SHA-384 (RSA 3072-bit keys)
	PS512 Algorithm = "PS512" // RSASSA-PSS with SHA-512 (RSA 4096-bit keys)
)

// ErrUnsupportedKey reports a key type or size the SDK cannot sign with.
var ErrUnsupportedKey = errors.New("sdk: unsupported key")

// Key is a thing's signing key together with its key id. The zero value is not usable; build one with
// GenerateKey, NewKey, ParseKeyPEM or LoadKeyFile. A Key is immutable and safe for concurrent use.
type Key struct {
	private crypto.Signer
	alg     Algorithm
	id      string
}

// GenerateKey creates a fresh key for alg. The key id is the key's RFC 7638 thumbprint (see Thumbprint).
// RSA keys are 2048 bits for PS256, 3072 for PS384 and 4096 for PS512.
func GenerateKey(alg Algorithm) (*Key, error) {
	var (
		signer crypto.Signer
		err    error
	)
	switch alg {
	case ES256, "":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ES384:
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case ES512:
		signer, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case PS256:
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case PS384:
		signer, err = rsa.GenerateKey(rand.Reader, 3072)
	case PS512:
		signer, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, fmt.Errorf("generate key %q: %w", alg, ErrUnsupportedKey)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return NewKey(signer, "")
}

// NewKey wraps an *ecdsa.PrivateKey (P-256, P-384, P-521), an ed25519.PrivateKey or an *rsa.PrivateKey
// (2048 bits or more). An empty id selects the key's RFC 7638 thumbprint.
func NewKey(private crypto.Signer, id string) (*Key, error) {
	alg, err := algorithmFor(private)
	if err != nil {
		return nil, err
	}
	k := &Key{private: private, alg: alg, id: id}
	if id == "" {
		if k.id, err = Thumbprint(private.Public()); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func algorithmFor(private crypto.Signer) (Algorithm, error) {
	switch k := private.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return ES256, nil
		case elliptic.P384():
			return ES384, nil
		case elliptic.P521():
			return ES512, nil
		}
		return "", fmt.Errorf("ecdsa curve %s: %w", k.Curve.Params().Name, ErrUnsupportedKey)
	case ed25519.PrivateKey:
		return EdDSA, nil
	case *rsa.PrivateKey:
		switch bits := k.N.BitLen(); {
		case bits >= 4096:
			return PS512, nil
		case bits >= 3072:
			return PS384, nil
		case bits >= 2048:
			return PS256, nil
		default:
			return "", fmt.Errorf("rsa key of %d bits (2048 or more needed): %w", bits, ErrUnsupportedKey)
		}
	case nil:
		return "", fmt.Errorf("nil key: %w", ErrUnsupportedKey)
	}
	return "", fmt.Errorf("key type %T: %w", private, ErrUnsupportedKey)
}

// ParseKeyPEM reads a private key from PEM: PKCS#8 ("PRIVATE KEY"), SEC1 ("EC PRIVATE KEY") or PKCS#1
// ("RSA PRIVATE KEY"). The first private-key block is used; other blocks (certificates, EC parameters)
// are skipped. An empty id selects the key's thumbprint.
func ParseKeyPEM(data []byte, id string) (*Key, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("parse key: no private key PEM block found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse key: %s block: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parse key: %T: %w", key, ErrUnsupportedKey)
		}
		return NewKey(signer, id)
	}
}

// ParseCertificatesPEM reads every CERTIFICATE block of data, leaf first as in the file, for
// Registrar.Certificates.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("parse certificates: no CERTIFICATE PEM block found")
	}
	return certs, nil
}

// LoadKeyFile reads a PEM private key from path (see ParseKeyPEM).
func LoadKeyFile(path, id string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	k, err := ParseKeyPEM(data, id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ID returns the key id AM knows the key by (the kid of its thingKeys entry).
func (k *Key) ID() string { return k.id }

// Algorithm returns the JWS algorithm the key signs with.
func (k *Key) Algorithm() Algorithm { return k.alg }

// Public returns the public half of the key.
func (k *Key) Public() crypto.PublicKey { return k.private.Public() }

// Signer returns the private key, for building a certificate signing request or a certificate.
func (k *Key) Signer() crypto.Signer { return k.private }

// PublicJWK returns the public key as a JWK with kid, "use":"sig" and alg, as stored in an identity's
// thingKeys; certs, if any, fill x5c (leaf first).
func (k *Key) PublicJWK(certs ...*x509.Certificate) jose.JSONWebKey {
	return jose.JSONWebKey{
		Key:          k.private.Public(),
		KeyID:        k.id,
		Algorithm:    string(k.alg),
		Use:          "sig",
		Certificates: certs,
	}
}

// PublicJWKS returns the JWKS text of the public key, the form an administrator stores in the
// identity's thingKeys attribute for a manual registration.
func (k *Key) PublicJWKS() (string, error) {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.PublicJWK()}})
	if err != nil {
		return "", fmt.Errorf("key %s: jwks: %w", k.id, err)
	}
	return string(b), nil
}

// String names the key by algorithm and id; it never prints key material.
func (k *Key) String() string { return string(k.alg) + " key " + k.id }

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of a public key encoded as base64url WITH padding
// (it ends in '='), the key id convention of AM's IoT SDK.
func Thumbprint(public crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: public}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	if len(sum) != sha256.Size {
		return "", errors.New("thumbprint: unexpected digest size")
	}
	return base64.URLEncoding.EncodeToString(sum), nil
}
