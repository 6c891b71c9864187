package introspect

import (
	"crypto"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// Proofs of possession: a token whose cnf names a key (cnf.jwk, RFC 7800, or cnf.jkt, RFC 9449) is used only with a
// JWS signed by that key over something the verifier chose (a DPoP proof for one HTTP request, an IMB-POP proof over
// the broker's nonce). The checks every such proof shares live here, once: the HTTP door and the identity hook check
// only what their proof says.

// ProofAlgorithms are the signatures accepted on proofs of possession: asymmetric only (RFC 9449 §4.2: no "none",
// no MAC, which a verifier holding the key could forge).
var ProofAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.PS256, jose.EdDSA}

// MaxProofSize bounds a proof of possession before it is parsed.
const MaxProofSize = 8 << 10

// ErrProof is a proof of possession that does not prove; errors of VerifyProof wrap it.
var ErrProof = errors.New("invalid proof of possession")

// KeyBound reports whether the token is bound to a key (cnf.jwk or cnf.jkt), and so must not be used as a bearer
// token.
func (c *Confirmation) KeyBound() bool {
	return c != nil && (len(c.JWK) > 0 || c.JKT != "")
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint (base64url) of the key the token is bound to: cnf.jkt, or that of
// cnf.jwk. A cnf that carries both must name one key. "" with a nil error: not key-bound.
func (c *Confirmation) Thumbprint() (string, error) {
	if c == nil {
		return "", nil
	}
	if len(c.JWK) == 0 {
		return c.JKT, nil
	}
	k, err := c.key()
	if err != nil {
		return "", err
	}
	tp, err := thumbprint(k)
	if err != nil {
		return "", err
	}
	if c.JKT != "" && !sameThumbprint(tp, c.JKT) {
		return "", fmt.Errorf("%w: cnf.jwk and cnf.jkt name different keys", ErrProof)
	}
	return tp, nil
}

// key parses cnf.jwk, which must be a valid public key.
func (c *Confirmation) key() (*jose.JSONWebKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(c.JWK); err != nil || !k.Valid() || !k.IsPublic() {
		return nil, fmt.Errorf("%w: cnf.jwk is not a valid public key", ErrProof)
	}
	return &k, nil
}

// VerifyProof checks a compact JWS proof of possession of the key the token is bound to and returns its payload.
// The header's typ must be typ. The key is cnf.jwk when the token carries it (a jwk header, if present, must be the
// same key); otherwise the proof's jwk header, whose thumbprint must be cnf.jkt. What the payload claims (nonce,
// audience, request) is the caller's to check.
func (c *Confirmation) VerifyProof(proof, typ string) ([]byte, error) {
	if !c.KeyBound() {
		return nil, fmt.Errorf("%w: the token is not bound to a key", ErrProof)
	}
	if len(proof) > MaxProofSize {
		return nil, fmt.Errorf("%w: larger than 8 KiB", ErrProof)
	}
	jws, err := jose.ParseSigned(proof, ProofAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: not a compact JWS with an asymmetric algorithm", ErrProof)
	}
	h := jws.Signatures[0].Protected
	if t, _ := h.ExtraHeaders[jose.HeaderType].(string); t != typ {
		return nil, fmt.Errorf("%w: typ is not %s", ErrProof, typ)
	}
	want, err := c.Thumbprint()
	if err != nil {
		return nil, err
	}
	key := h.JSONWebKey
	if key == nil && len(c.JWK) > 0 {
		if key, err = c.key(); err != nil {
			return nil, err
		}
	}
	if key == nil || !key.Valid() || !key.IsPublic() {
		return nil, fmt.Errorf("%w: no public jwk header", ErrProof)
	}
	tp, err := thumbprint(key)
	if err != nil || !sameThumbprint(tp, want) {
		return nil, fmt.Errorf("%w: the proof's key is not the key the token is bound to", ErrProof)
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: signature does not verify", ErrProof)
	}
	return payload, nil
}

func thumbprint(k *jose.JSONWebKey) (string, error) {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("%w: key thumbprint: %v", ErrProof, err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

func sameThumbprint(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
