package amdev

import (
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// AM encrypts client-based tokens (advancedOAuth2Config.tokenEncryptionEnabled)
// with direct symmetric encryption: a compact JWE, "alg": "dir" and
// "enc": "A128CBC-HS256", whose content key is the 256-bit secret mapped
// to am.services.oauth2.stateless.token.encryption. The JWE's
// authentication tag protects the claims, so AM does not sign them as
// well: with encryption on, the plaintext is the claims set itself. Only
// the holder of the secret reads or checks such a token; a resource
// server introspects it.
const (
	tokenKeyAlgorithm = jose.DIRECT
	tokenContentAlg   = jose.A128CBC_HS256
)

// encryptAccessToken encrypts claims with the active encryption secret.
func (s *Server) encryptAccessToken(claims []byte) (string, error) {
	k, err := s.activeKey(secretTokenEncryption)
	if err != nil {
		return "", fmt.Errorf("encrypt access token: %w", err)
	}
	enc, err := jose.NewEncrypter(tokenContentAlg, jose.Recipient{Algorithm: tokenKeyAlgorithm, Key: k.sym},
		(&jose.EncrypterOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("encrypt access token: %w", err)
	}
	obj, err := enc.Encrypt(claims)
	if err != nil {
		return "", fmt.Errorf("encrypt access token: %w", err)
	}
	return obj.CompactSerialize()
}

// decryptAccessToken decrypts one of amdev's encrypted access tokens with
// any mapped encryption secret (so tokens made before a rotation stay
// valid) and rebuilds its record. Anything else is inactive.
func (s *Server) decryptAccessToken(token string) (*tokenRecord, error) {
	if len(token) > maxJWSLen {
		return nil, errInactive
	}
	obj, err := jose.ParseEncryptedCompact(token, []jose.KeyAlgorithm{tokenKeyAlgorithm},
		[]jose.ContentEncryption{tokenContentAlg})
	if err != nil {
		return nil, errInactive
	}
	for _, k := range s.mappedKeys(secretTokenEncryption) {
		if claims, err := obj.Decrypt(k.sym); err == nil {
			return s.accessRecord(claims)
		}
	}
	return nil, errInactive
}
