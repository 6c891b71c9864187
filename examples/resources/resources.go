// Package resources holds the examples' PUBLIC TEST MATERIAL: the key material ForgeRock publishes with its
// IoT SDK examples and uses in the "Evaluate IoT" walk-through (see README.md). The private keys here are
// known to anyone; never use them outside local development against imb dev or a throw-away AM.
package resources

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed" // the test material travels inside the example binaries
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"imb/sdk"
)

var (
	//go:embed eckey1.key.pem
	thingKeyPEM []byte
	//go:embed software-publisher.key.pem
	publisherKeyPEM []byte
	//go:embed es256test.jwk
	caJWK []byte
	//go:embed manual-thing.jwks
	thingJWKS string
)

// Names of the walk-through's AM configuration that the material belongs to.
const (
	// SoftwarePublisherIssuer is the iss of software statements, the issuer of the publisher agent
	// iot-software-publisher.
	SoftwarePublisherIssuer = "https://soft-pub.example.com"
	// ThingKeyID is the kid of the walk-through's thing key: its RFC 7638 thumbprint.
	ThingKeyID = "cbnztC8J_l2feNf0aTFBDDQJuvrd2JbLPoOAxHR2N8o="
	// certificateSkew is how far a thing certificate's validity reaches either side of now.
	certificateSkew = 24 * time.Hour
)

// ThingKey returns the walk-through's thing key (eckey1), whose public half is ThingJWKS.
func ThingKey() (*sdk.Key, error) {
	k, err := sdk.ParseKeyPEM(thingKeyPEM, "")
	if err != nil {
		return nil, fmt.Errorf("walk-through thing key: %w", err)
	}
	return k, nil
}

// ThingJWKS returns the public JWK set of ThingKey as the walk-through registers it in thingKeys.
func ThingJWKS() string { return thingJWKS }

// SoftwarePublisherKey returns the private key of the walk-through's software publisher; its key id
// is the thumbprint AM's publisher agent lists.
func SoftwarePublisherKey() (*sdk.Key, error) {
	k, err := sdk.ParseKeyPEM(publisherKeyPEM, "")
	if err != nil {
		return nil, fmt.Errorf("software publisher key: %w", err)
	}
	return k, nil
}

// CA returns the es256test test CA: its private key and certificate.
func CA() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(caJWK, &jwk); err != nil {
		return nil, nil, fmt.Errorf("es256test: %w", err)
	}
	key, ok := jwk.Key.(*ecdsa.PrivateKey)
	if !ok || len(jwk.Certificates) == 0 {
		return nil, nil, errors.New("es256test: not an EC private key with its certificate")
	}
	return key, jwk.Certificates[0], nil
}

// ThingCertificate issues a fresh certificate for key with CN = name, valid from a day before now to a
// day after, signed by the es256test CA, as the Register Thing node's "Proof of Possession &
// Certificate" method expects.
func ThingCertificate(key *sdk.Key, name string, now time.Time) (*x509.Certificate, error) {
	caKey, caCert, err := CA()
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-certificateSkew),
		NotAfter:     now.Add(certificateSkew),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", name, err)
	}
	return cert, nil
}

// SoftwareStatement returns a software statement of the walk-through's publisher that vouches for key:
// a JWT with iss = SoftwarePublisherIssuer and the key's public JWK in its jwks claim, signed with
// SoftwarePublisherKey. A real publisher signs statements at manufacture; the example signs at run time.
func SoftwareStatement(key *sdk.Key, softwareID string) (string, error) {
	pub, err := SoftwarePublisherKey()
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(map[string]any{
		"iss":         SoftwarePublisherIssuer,
		"software_id": softwareID,
		"jwks":        jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.PublicJWK()}},
	})
	if err != nil {
		return "", fmt.Errorf("software statement: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(pub.Algorithm()),
		Key:       jose.JSONWebKey{Key: pub.Signer(), KeyID: pub.ID()},
	}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("software statement: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("software statement: %w", err)
	}
	return jws.CompactSerialize()
}
