package amdev

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
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

// jwks is the public key set published at jwks_uri: the ES256 key, and
// the RS256 key once one exists. The HS256 secret is never published.
func (s *Server) jwks() jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &s.signer.private.PublicKey, KeyID: s.signer.kid, Algorithm: string(jose.ES256), Use: "sig",
	}}}
	s.extra.mu.Lock()
	defer s.extra.mu.Unlock()
	if s.extra.rsa != nil {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &s.extra.rsa.PublicKey, KeyID: s.extra.rsaKID,
			Algorithm: string(jose.RS256), Use: "sig"})
	}
	return set
}

// Token signing algorithms of client-based access tokens: what AM's
// advancedOAuth2Config.tokenSigningAlgorithm may be set to in amdev.
var tokenSigningAlgorithms = []string{string(jose.ES256), string(jose.RS256), string(jose.HS256)}

const (
	keySigningRS256 = "signing-rs256"
	keySigningHS256 = "signing-hs256"
	rsaKeyBits      = 2048
	hmacSecretBytes = 32
)

// extraKeys are the RS256 key and the HS256 secret (AM's
// am.services.oauth2.stateless.signing.RSA and .HMAC256 secrets). Each is
// made the first time a realm signs with it, then kept in the store: an
// RSA key costs a noticeable moment to make, and most runs never need one.
type extraKeys struct {
	mu     sync.Mutex
	rsa    *rsa.PrivateKey
	rsaKID string
	hmac   []byte
}

// rsaKey returns the RS256 key, loading or making it.
func (s *Server) rsaKey() (*rsa.PrivateKey, string, error) {
	s.extra.mu.Lock()
	defer s.extra.mu.Unlock()
	if s.extra.rsa != nil {
		return s.extra.rsa, s.extra.rsaKID, nil
	}
	var sk storedKey
	err := s.db.Get(bucketKeys, keySigningRS256, &sk, s.now())
	if errors.Is(err, store.ErrNotFound) {
		priv, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
		if err != nil {
			return nil, "", fmt.Errorf("generate RS256 signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, "", fmt.Errorf("encode RS256 signing key: %w", err)
		}
		kid, err := thumbprint(&priv.PublicKey)
		if err != nil {
			return nil, "", err
		}
		sk = storedKey{PKCS8: base64.StdEncoding.EncodeToString(der), KID: kid}
		if err := s.db.Put(bucketKeys, keySigningRS256, sk, time.Time{}); err != nil {
			return nil, "", err
		}
		s.log.Info("created RS256 token signing key", "kid", kid)
	} else if err != nil {
		return nil, "", err
	}
	der, err := base64.StdEncoding.DecodeString(sk.PKCS8)
	if err != nil || len(der) > maxKeyBytes {
		return nil, "", errors.New("stored RS256 signing key is corrupt")
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, "", fmt.Errorf("stored RS256 signing key: %w", err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok || priv.N.BitLen() < rsaKeyBits {
		return nil, "", errors.New("stored RS256 signing key is not a 2048-bit RSA key")
	}
	s.extra.rsa, s.extra.rsaKID = priv, sk.KID
	return priv, sk.KID, nil
}

// hmacSecret returns the HS256 secret, loading or making it.
func (s *Server) hmacSecret() ([]byte, error) {
	s.extra.mu.Lock()
	defer s.extra.mu.Unlock()
	if s.extra.hmac != nil {
		return s.extra.hmac, nil
	}
	var enc string
	err := s.db.Get(bucketKeys, keySigningHS256, &enc, s.now())
	if errors.Is(err, store.ErrNotFound) {
		enc = randomToken(hmacSecretBytes)
		if err := s.db.Put(bucketKeys, keySigningHS256, enc, time.Time{}); err != nil {
			return nil, err
		}
		s.log.Info("created HS256 token signing secret")
	} else if err != nil {
		return nil, err
	}
	secret, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(secret) < hmacSecretBytes {
		return nil, errors.New("stored HS256 signing secret is corrupt")
	}
	s.extra.hmac = secret
	return secret, nil
}

// loadExtraKeys loads the RS256 key and HS256 secret a previous run made,
// so that their tokens (and the RSA key in the JWKS) survive a restart.
func (s *Server) loadExtraKeys() error {
	now := s.now()
	var sk storedKey
	if err := s.db.Get(bucketKeys, keySigningRS256, &sk, now); err == nil {
		if _, _, err := s.rsaKey(); err != nil {
			return err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var enc string
	if err := s.db.Get(bucketKeys, keySigningHS256, &enc, now); err == nil {
		if _, err := s.hmacSecret(); err != nil {
			return err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// tokenSigner signs client-based access tokens with alg (one of tokenSigningAlgorithms).
func (s *Server) tokenSigner(alg string) (jose.Signer, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	switch alg {
	case "", string(jose.ES256):
		return s.signer.signer, nil
	case string(jose.RS256):
		priv, kid, err := s.rsaKey()
		if err != nil {
			return nil, err
		}
		return jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, opts)
	case string(jose.HS256):
		secret, err := s.hmacSecret()
		if err != nil {
			return nil, err
		}
		return jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, opts)
	}
	return nil, fmt.Errorf("token signing algorithm %q is not supported", alg)
}

// verificationKey is the key that verifies a token amdev signed with alg:
// any of its keys, whatever a realm signs with now, so that tokens issued
// before an algorithm change stay valid until they expire. A key amdev
// never made (no RS256 key yet) verifies nothing.
func (s *Server) verificationKey(alg jose.SignatureAlgorithm) any {
	switch alg {
	case jose.ES256:
		return &s.signer.private.PublicKey
	case jose.RS256:
		s.extra.mu.Lock()
		defer s.extra.mu.Unlock()
		if s.extra.rsa != nil {
			return &s.extra.rsa.PublicKey
		}
	case jose.HS256:
		s.extra.mu.Lock()
		defer s.extra.mu.Unlock()
		if s.extra.hmac != nil {
			return s.extra.hmac
		}
	}
	return nil
}

// HMACSecret is the secret that signs HS256 client-based access tokens (for
// a resource server that validates them locally), made on first use.
func (s *Server) HMACSecret() ([]byte, error) {
	secret, err := s.hmacSecret()
	if err != nil {
		return nil, fmt.Errorf("amdev: %w", err)
	}
	return slices.Clone(secret), nil
}
