package introspect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// popKey is a key a token is bound to, with its cnf forms.
type popKey struct {
	priv *ecdsa.PrivateKey
	jwk  json.RawMessage
	jkt  string
}

func newPoPKey(t testing.TB) popKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: k.Public()}
	raw, err := pub.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return popKey{k, raw, base64.RawURLEncoding.EncodeToString(tp)}
}

// proof signs payload with k; embed puts the public key in the jwk header.
func (k popKey) proof(t testing.TB, typ, payload string, embed bool) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
		(&jose.SignerOptions{EmbedJWK: embed}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyProof(t *testing.T) {
	k, other := newPoPKey(t), newPoPKey(t)
	const typ, payload = "imb-pop+jwt", `{"nonce":"n"}`
	tests := []struct {
		name  string
		cnf   Confirmation
		proof string
		ok    bool
	}{
		{"cnf.jwk, key in header", Confirmation{JWK: k.jwk}, k.proof(t, typ, payload, true), true},
		{"cnf.jwk, no header key", Confirmation{JWK: k.jwk}, k.proof(t, typ, payload, false), true},
		{"cnf.jkt, key in header", Confirmation{JKT: k.jkt}, k.proof(t, typ, payload, true), true},
		{"cnf.jkt, no header key", Confirmation{JKT: k.jkt}, k.proof(t, typ, payload, false), false},
		{"both, one key", Confirmation{JWK: k.jwk, JKT: k.jkt}, k.proof(t, typ, payload, true), true},
		{"both, two keys", Confirmation{JWK: k.jwk, JKT: other.jkt}, k.proof(t, typ, payload, true), false},
		{"cnf.jwk, another key signs and embeds itself", Confirmation{JWK: k.jwk}, other.proof(t, typ, payload, true), false},
		{"cnf.jwk, another key signs", Confirmation{JWK: k.jwk}, other.proof(t, typ, payload, false), false},
		{"cnf.jkt, another key", Confirmation{JKT: k.jkt}, other.proof(t, typ, payload, true), false},
		{"another typ", Confirmation{JWK: k.jwk}, k.proof(t, "dpop+jwt", payload, true), false},
		{"not bound", Confirmation{X5TS256: "abc"}, k.proof(t, typ, payload, true), false},
		{"cnf.jwk not a key", Confirmation{JWK: json.RawMessage(`{"kty":"EC"}`)}, k.proof(t, typ, payload, true), false},
		{"unsigned", Confirmation{JWK: k.jwk}, base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"imb-pop+jwt"}`)) + "." +
			base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cnf.VerifyProof(tt.proof, typ)
			if tt.ok != (err == nil) {
				t.Fatalf("VerifyProof: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrProof) {
				t.Fatalf("error %v is not ErrProof", err)
			}
			if tt.ok && string(got) != payload {
				t.Fatalf("payload %q", got)
			}
		})
	}
}

// FuzzVerifyProof: arbitrary proofs and cnf keys never panic, and nothing is accepted but what the bound key
// signed.
func FuzzVerifyProof(f *testing.F) {
	k := newPoPKey(f)
	const payload = `{"nonce":"n","client_id":"c","aud":"imb"}`
	f.Add(k.proof(f, "imb-pop+jwt", payload, true), string(k.jwk), "")
	f.Add(k.proof(f, "imb-pop+jwt", payload, false), string(k.jwk), k.jkt)
	f.Add(k.proof(f, "imb-pop+jwt", payload, true), "", k.jkt)
	f.Add("a.b.c", `{"kty":"OKP","crv":"Ed25519","x":"AAAA"}`, "x")
	f.Fuzz(func(t *testing.T, proof, jwk, jkt string) {
		c := Confirmation{JKT: jkt}
		if jwk != "" {
			c.JWK = json.RawMessage(jwk)
		}
		got, err := c.VerifyProof(proof, "imb-pop+jwt")
		if err == nil && string(got) != payload {
			t.Fatalf("accepted a proof the key did not sign: %q", got)
		}
		if err != nil && !errors.Is(err, ErrProof) {
			t.Fatalf("error %v is not ErrProof", err)
		}
	})
}
