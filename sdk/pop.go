package sdk

import (
	"encoding/json"
	"fmt"

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
