package amdev

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"imb/amdev/store"
)

const (
	bucketKeys  = "keys"
	keySigning  = "signing"
	maxKeyBytes = 8 << 10
)

// signingKey is the ES256 key that signs access tokens; it is created on first
// start and kept in the store so tokens stay valid across restarts.
type signingKey struct {
	private *ecdsa.PrivateKey
	kid     string
	signer  jose.Signer
}

type storedKey struct {
	PKCS8 string `json:"pkcs8"`
	KID   string `json:"kid"`
}

func (s *Server) loadSigningKey() (*signingKey, error) {
	var sk storedKey
	err := s.db.Get(bucketKeys, keySigning, &sk, s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("encode signing key: %w", err)
		}
		kid, err := thumbprint(&priv.PublicKey)
		if err != nil {
			return nil, err
		}
		sk = storedKey{PKCS8: base64.StdEncoding.EncodeToString(der), KID: kid}
		if err := s.db.Put(bucketKeys, keySigning, sk, time.Time{}); err != nil {
			return nil, err
		}
		s.log.Info("created token signing key", "kid", kid)
	case err != nil:
		return nil, err
	}
	der, err := base64.StdEncoding.DecodeString(sk.PKCS8)
	if err != nil || len(der) > maxKeyBytes {
		return nil, errors.New("stored signing key is corrupt")
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("stored signing key: %w", err)
	}
	priv, ok := k.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, errors.New("stored signing key is not a P-256 key")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: sk.KID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("token signer: %w", err)
	}
	return &signingKey{private: priv, kid: sk.KID, signer: signer}, nil
}

// thumbprint is the RFC 7638 SHA-256 thumbprint, base64url without padding.
func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// jwks is the public key set published at jwks_uri.
func (s *Server) jwks() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &s.signer.private.PublicKey, KeyID: s.signer.kid, Algorithm: string(jose.ES256), Use: "sig",
	}}}
}
