package sdk

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// PoPMethod is imb's MQTT 5 authentication method for tokens bound to the thing's key (cnf.jwk or cnf.jkt):
// CONNECT carries the token, the broker answers AUTH 0x18 with a nonce, the thing answers AUTH 0x18 with
// a PoP proof (Key.PoPProof) over that nonce. The broker's side is hooks.PoPAuthMethod.
const PoPMethod = "IMB-POP"

// PoPProofType is the typ header of a PoP proof.
const PoPProofType = "imb-pop+jwt"

// PoPClaims is what a PoP proof signs: the broker's nonce, the MQTT client identifier as sent in CONNECT
// ("" when the broker assigns one; the assigned one when re-authenticating), and the broker's PoP
// audience.
type PoPClaims struct {
	Nonce    string `json:"nonce"`
	ClientID string `json:"client_id"`
	Audience string `json:"aud"`
}

// PoPProof signs c with k as a compact JWS with typ imb-pop+jwt and the public key in the jwk header, so
// that a token bound by thumbprint (cnf.jkt) is proven as well as one carrying the key (cnf.jwk).
func (k *Key) PoPProof(c PoPClaims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("pop proof: %w", err)
	}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType(PoPProofType)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: k.private}, opts)
	if err != nil {
		return "", fmt.Errorf("pop proof with %s: %w", k, err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("pop proof with %s: %w", k, err)
	}
	return jws.CompactSerialize()
}

// BoundAccessToken is AccessToken bound to k: it sends AM's cnf_key (k's public JWK, base64url), so the
// token carries cnf.jwk and is useless without k. k must be a key the thing registered.
func (t *Thing) BoundAccessToken(ctx context.Context, k *Key, scopes ...string) (*Token, error) {
	jwk, err := json.Marshal(jose.JSONWebKey{Key: k.Public(), KeyID: k.id, Algorithm: string(k.alg), Use: "sig"})
	if err != nil {
		return nil, fmt.Errorf("cnf_key: %w", err)
	}
	body := map[string]any{"cnf_key": base64.RawURLEncoding.EncodeToString(jwk)}
	if len(scopes) > 0 {
		body["scope"] = scopes
	}
	return t.tokenCall(ctx, "get_access_token", body)
}

// BoundTo reports whether the token is a JWT whose cnf binds it to k (cnf.jwk is k, or cnf.jkt is k's
// RFC 7638 thumbprint). An opaque token's binding is known only to introspection: it reports false.
func (t *Token) BoundTo(k *Key) bool {
	if k == nil {
		return false
	}
	payload := jwtPayload(t)
	if payload == nil {
		return false
	}
	var c struct {
		Cnf struct {
			JKT string          `json:"jkt"`
			JWK json.RawMessage `json:"jwk"`
		} `json:"cnf"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return false
	}
	tp, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return false
	}
	mine := base64.RawURLEncoding.EncodeToString(tp)
	if len(c.Cnf.JWK) > 0 {
		var bound jose.JSONWebKey
		if bound.UnmarshalJSON(c.Cnf.JWK) != nil {
			return false
		}
		btp, err := bound.Thumbprint(crypto.SHA256)
		if err != nil || base64.RawURLEncoding.EncodeToString(btp) != mine {
			return false
		}
		return c.Cnf.JKT == "" || c.Cnf.JKT == mine
	}
	return c.Cnf.JKT == mine
}

// TokenAudience is the first aud of a JWT access token, "" for an opaque one.
func TokenAudience(t *Token) string {
	payload := jwtPayload(t)
	if payload == nil {
		return ""
	}
	var c struct {
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return one
	}
	var many []string
	if json.Unmarshal(c.Aud, &many) == nil && len(many) > 0 {
		return many[0]
	}
	return ""
}

// jwtPayload is the unverified payload of a JWT access token (the SDK only reads what its own token says),
// nil for an opaque token.
func jwtPayload(t *Token) []byte {
	if t == nil {
		return nil
	}
	parts := strings.Split(t.AccessToken, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	return payload
}
