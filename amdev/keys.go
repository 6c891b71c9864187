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
	bucketKeys = "keys"
	// bucketSecretMappings holds, per secret id, the aliases the admin REST
	// mapped (active first); a secret id without a record has its default.
	bucketSecretMappings = "secret_mappings"
	maxKeyBytes          = 8 << 10
	rsaKeyBits           = 2048
	symmetricKeyBytes    = 32 // HS256 secret; A128CBC-HS256 content key (dir)
)

// AM's secret ids of the OAuth2 Provider's client-based tokens.
const (
	secretSigningES256    = "am.services.oauth2.stateless.signing.ES256"
	secretSigningRSA      = "am.services.oauth2.stateless.signing.RSA"
	secretSigningHMAC     = "am.services.oauth2.stateless.signing.HMAC"
	secretTokenEncryption = "am.services.oauth2.stateless.token.encryption"
)

// keyKind is the kind of key material a secret id holds.
type keyKind int

const (
	keyEC   keyKind = iota // P-256, ES256
	keyRSA                 // 2048-bit, RS256
	keyHMAC                // 32 bytes, HS256
	keyAES                 // 32 bytes, dir + A128CBC-HS256
)

// tokenSecret is one of AM's token secret ids as amdev keeps it: AM's
// default alias, and for the keys amdev had before secret mappings the
// store record that holds the default alias's key (so a data directory of
// an earlier amdev keeps its keys and its tokens stay valid).
type tokenSecret struct {
	id, defaultAlias, legacyRecord string
	kind                           keyKind
}

// tokenSecrets are the secret ids whose mappings amdev serves and whose
// keys it makes: AM's default aliases, one key each until a mapping adds more.
var tokenSecrets = []tokenSecret{
	{secretSigningES256, "es256test", "signing", keyEC},
	{secretSigningRSA, "rsajwtsigningkey", "signing-rs256", keyRSA},
	{secretSigningHMAC, "hmacsigningtest", "signing-hs256", keyHMAC},
	{secretTokenEncryption, "directenctest", "", keyAES},
}

func lookupTokenSecret(id string) (tokenSecret, bool) {
	i := slices.IndexFunc(tokenSecrets, func(t tokenSecret) bool { return t.id == id })
	if i < 0 {
		return tokenSecret{}, false
	}
	return tokenSecrets[i], true
}

// record is the store key of alias's key material.
func (t tokenSecret) record(alias string) string {
	if alias == t.defaultAlias && t.legacyRecord != "" {
		return t.legacyRecord
	}
	return "alias/" + t.id + "/" + alias
}

// secretKey is the key material of one alias.
type secretKey struct {
	alias string
	kid   string // RFC 7638 thumbprint (EC, RSA); "" for symmetric keys
	ec    *ecdsa.PrivateKey
	rsa   *rsa.PrivateKey
	sym   []byte
}

// public is the key a resource server verifies with, nil for symmetric keys.
func (k *secretKey) public() crypto.PublicKey {
	switch {
	case k.ec != nil:
		return &k.ec.PublicKey
	case k.rsa != nil:
		return &k.rsa.PublicKey
	}
	return nil
}

// keyring holds the token secrets: per secret id its aliases, active
// first, and the key material loaded so far. The active alias signs (or
// encrypts); every mapped alias verifies (or decrypts), as in AM, so that
// tokens made before a rotation stay valid until their alias is unmapped.
// RSA keys, costly to make, are made on first use; a key made for an
// alias stays in the store, so mapping the alias again brings it back.
type keyring struct {
	mu      sync.Mutex
	aliases map[string][]string   // secret id → aliases
	keys    map[string]*secretKey // record → key
}

type storedKey struct {
	PKCS8 string `json:"pkcs8"`
	KID   string `json:"kid"`
}

// loadKeyring reads the mappings and the key material of every mapped
// alias that has some, and makes the ES256 key if there is none yet.
func (s *Server) loadKeyring() error {
	s.keys.aliases = map[string][]string{}
	s.keys.keys = map[string]*secretKey{}
	for _, t := range tokenSecrets {
		var aliases []string
		err := s.db.Get(bucketSecretMappings, t.id, &aliases, s.now())
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && len(aliases) == 0):
			aliases = []string{t.defaultAlias}
		case err != nil:
			return err
		}
		s.keys.aliases[t.id] = aliases
		for _, a := range aliases {
			if _, err := s.loadKey(t, a, t.kind == keyEC); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadKey returns alias's key: loaded, read from the store, or (with
// create) made and stored. Without create, a key never made is nil.
func (s *Server) loadKey(t tokenSecret, alias string, create bool) (*secretKey, error) {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	return s.loadKeyLocked(t, alias, create)
}

func (s *Server) loadKeyLocked(t tokenSecret, alias string, create bool) (*secretKey, error) {
	rec := t.record(alias)
	if k := s.keys.keys[rec]; k != nil {
		return k, nil
	}
	var k *secretKey
	var err error
	if t.kind == keyHMAC || t.kind == keyAES {
		k, err = s.symmetricKey(rec, create)
	} else {
		k, err = s.asymmetricKey(t.kind, rec, create)
	}
	if err != nil {
		return nil, fmt.Errorf("%s alias %s: %w", t.id, alias, err)
	}
	if k == nil {
		return nil, nil
	}
	k.alias = alias
	s.keys.keys[rec] = k
	return k, nil
}

func (s *Server) symmetricKey(rec string, create bool) (*secretKey, error) {
	var enc string
	err := s.db.Get(bucketKeys, rec, &enc, s.now())
	if errors.Is(err, store.ErrNotFound) {
		if !create {
			return nil, nil
		}
		enc = randomToken(symmetricKeyBytes)
		if err := s.db.Put(bucketKeys, rec, enc, time.Time{}); err != nil {
			return nil, err
		}
		s.log.Info("created token secret", "record", rec)
	} else if err != nil {
		return nil, err
	}
	secret, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(secret) < symmetricKeyBytes {
		return nil, errors.New("stored secret is corrupt")
	}
	return &secretKey{sym: secret[:symmetricKeyBytes]}, nil
}

func (s *Server) asymmetricKey(kind keyKind, rec string, create bool) (*secretKey, error) {
	var sk storedKey
	err := s.db.Get(bucketKeys, rec, &sk, s.now())
	if errors.Is(err, store.ErrNotFound) {
		if !create {
			return nil, nil
		}
		var priv crypto.Signer
		if kind == keyRSA {
			priv, err = rsa.GenerateKey(rand.Reader, rsaKeyBits)
		} else {
			priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("encode key: %w", err)
		}
		kid, err := thumbprint(priv.Public())
		if err != nil {
			return nil, err
		}
		sk = storedKey{PKCS8: base64.StdEncoding.EncodeToString(der), KID: kid}
		if err := s.db.Put(bucketKeys, rec, sk, time.Time{}); err != nil {
			return nil, err
		}
		s.log.Info("created token signing key", "record", rec, "kid", kid)
	} else if err != nil {
		return nil, err
	}
	der, err := base64.StdEncoding.DecodeString(sk.PKCS8)
	if err != nil || len(der) > maxKeyBytes {
		return nil, errors.New("stored key is corrupt")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("stored key: %w", err)
	}
	switch priv := parsed.(type) {
	case *ecdsa.PrivateKey:
		if kind == keyEC && priv.Curve == elliptic.P256() {
			return &secretKey{ec: priv, kid: sk.KID}, nil
		}
	case *rsa.PrivateKey:
		if kind == keyRSA && priv.N.BitLen() >= rsaKeyBits {
			return &secretKey{rsa: priv, kid: sk.KID}, nil
		}
	}
	return nil, errors.New("stored key is not of the secret's kind")
}

// activeKey is the key of the secret's first alias, made if need be.
func (s *Server) activeKey(id string) (*secretKey, error) {
	t, _ := lookupTokenSecret(id)
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	return s.loadKeyLocked(t, s.keys.aliases[id][0], true)
}

// mappedKeys are the keys of the secret's aliases that exist, active first.
func (s *Server) mappedKeys(id string) []*secretKey {
	t, _ := lookupTokenSecret(id)
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	var out []*secretKey
	for _, a := range s.keys.aliases[id] {
		if k := s.keys.keys[t.record(a)]; k != nil {
			out = append(out, k)
		}
	}
	return out
}

// secretAliases are the secret's aliases, active first.
func (s *Server) secretAliases(id string) []string {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	return slices.Clone(s.keys.aliases[id])
}

// mapSecret makes aliases the secret's mapping (the first one active),
// making a key for every alias that has none, and stores the mapping.
// Nil aliases return the secret to its default alias.
func (s *Server) mapSecret(id string, aliases []string) error {
	t, _ := lookupTokenSecret(id)
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	reset := aliases == nil
	if reset {
		aliases = []string{t.defaultAlias}
	}
	// Keys first, so that a failure leaves the old mapping in force.
	for _, a := range aliases {
		if _, err := s.loadKeyLocked(t, a, true); err != nil {
			return err
		}
	}
	var err error
	if reset {
		_, err = s.db.Delete(bucketSecretMappings, id)
	} else {
		err = s.db.Put(bucketSecretMappings, id, aliases, time.Time{})
	}
	if err != nil {
		return err
	}
	s.keys.aliases[id] = aliases
	return nil
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

// jwks is the public key set published at jwks_uri: the ES256 and RS256
// keys of every mapped alias that has a key, active ones first. HMAC and
// encryption secrets are never published.
func (s *Server) jwks() jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, sec := range []struct {
		id  string
		alg jose.SignatureAlgorithm
	}{{secretSigningES256, jose.ES256}, {secretSigningRSA, jose.RS256}} {
		for _, k := range s.mappedKeys(sec.id) {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.public(), KeyID: k.kid, Algorithm: string(sec.alg), Use: "sig"})
		}
	}
	return set
}

// Token signing algorithms of client-based access tokens: what AM's
// advancedOAuth2Config.tokenSigningAlgorithm may be set to in amdev.
var tokenSigningAlgorithms = []string{string(jose.ES256), string(jose.RS256), string(jose.HS256)}

// signingSecret is the secret id that signs with alg.
func signingSecret(alg jose.SignatureAlgorithm) string {
	switch alg {
	case jose.ES256:
		return secretSigningES256
	case jose.RS256:
		return secretSigningRSA
	case jose.HS256:
		return secretSigningHMAC
	}
	return ""
}

// tokenSigner signs client-based access tokens with alg (one of
// tokenSigningAlgorithms) and the active alias of its secret.
func (s *Server) tokenSigner(alg string) (jose.Signer, error) {
	if alg == "" {
		alg = string(jose.ES256)
	}
	id := signingSecret(jose.SignatureAlgorithm(alg))
	if id == "" {
		return nil, fmt.Errorf("token signing algorithm %q is not supported", alg)
	}
	k, err := s.activeKey(id)
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.sym != nil {
		return jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: k.sym}, opts)
	}
	var priv any = k.ec
	if k.rsa != nil {
		priv = k.rsa
	}
	return jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg),
		Key: jose.JSONWebKey{Key: priv, KeyID: k.kid}}, opts)
}

// verificationKeys are the keys that may verify a token amdev signed with
// alg and kid: those of every mapped alias of the algorithm's secret,
// whatever a realm signs with now, so that tokens issued before an
// algorithm change or a rotation stay valid until they expire or their
// alias is unmapped. An alias never used has no key and verifies nothing.
func (s *Server) verificationKeys(alg jose.SignatureAlgorithm, kid string) []any {
	var out []any
	for _, k := range s.mappedKeys(signingSecret(alg)) {
		switch {
		case k.sym != nil:
			out = append(out, k.sym)
		case k.kid == kid:
			out = append(out, k.public())
		}
	}
	return out
}

// HMACSecret is the active secret that signs HS256 client-based access
// tokens (for a resource server that validates them locally), made on
// first use.
func (s *Server) HMACSecret() ([]byte, error) {
	k, err := s.activeKey(secretSigningHMAC)
	if err != nil {
		return nil, fmt.Errorf("amdev: %w", err)
	}
	return slices.Clone(k.sym), nil
}
