package ssf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// signSET signs claims as a transmitter would (go-jose, independent of the verifier under test).
func signSET(t testing.TB, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

// FuzzReceive feeds the receiver arbitrary pushed bodies, seeded with SETs a real key signed. Whatever arrives,
// it must not panic, and it may accept only a seed it signed, once.
func FuzzReceive(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	keys, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256"}}})
	file := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(file, keys, 0o600); err != nil {
		f.Fatal(err)
	}
	var mu sync.Mutex
	applied := 0
	r, err := New(context.Background(), Config{Issuer: "https://tx", JWKSFile: file, Audience: "imb",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Apply: func(context.Context, *SET, Event) error {
			mu.Lock()
			applied++
			mu.Unlock()
			return nil
		}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = r.Close() })
	seeds := map[string]bool{}
	now := time.Now().Unix()
	for i, ev := range []map[string]any{
		{SessionRevoked: map[string]any{"subject": map[string]any{"format": "opaque", "id": "t1"}}},
		{CredentialChange: map[string]any{"subject": map[string]any{"format": "iss_sub", "iss": "https://idp", "sub": "t1"}, "event_timestamp": now}},
		{AccountDisabled: map[string]any{"subject": map[string]any{"format": "email", "email": "a@b"}}},
		{TokenRevoked: map[string]any{"token_sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}},
		{TokenClaimsChange: map[string]any{"subject": map[string]any{"format": "opaque", "id": "t1"}, "claims": map[string]any{"scope": "x"}}},
		{"https://example.com/unknown": map[string]any{}},
	} {
		s := signSET(f, key, map[string]any{"iss": "https://tx", "aud": "imb", "iat": now, "jti": string(rune('a' + i)), "events": ev})
		seeds[s] = true
		f.Add(s)
	}
	f.Add("a.b.c")
	f.Add("")
	accepted := map[string]bool{}
	f.Fuzz(func(t *testing.T, token string) {
		set, rej := r.Receive(context.Background(), token)
		if rej == nil {
			if !seeds[token] || accepted[token] {
				t.Fatalf("accepted a SET that was not signed by the transmitter, or twice: %q", token)
			}
			accepted[token] = true
			if set.ID == "" || len(set.Events) == 0 {
				t.Fatalf("accepted SET without jti or events: %+v", set)
			}
			return
		}
		if rej.Code == "" || rej.Description == "" || rej.Status < 400 {
			t.Fatalf("refusal without code, description or error status: %+v", rej)
		}
	})
}

// FuzzParseSET feeds the claim parser arbitrary claims (as JSON): it must not panic, and what it accepts names a
// subject or token for every event it acts on.
func FuzzParseSET(f *testing.F) {
	f.Add(`{"jti":"1","iat":1700000000,"events":{"` + SessionRevoked + `":{"subject":{"format":"opaque","id":"t"}}}}`)
	f.Add(`{"jti":"1","iat":1700000000,"sub_id":{"format":"iss_sub","iss":"i","sub":"s"},"events":{"` + AccountPurged + `":{}}}`)
	f.Add(`{"jti":"1","iat":1700000000,"events":{"` + TokenClaimsChange + `":{"subject":{"format":"email","email":"e"},"claims":{"a":1}}}}`)
	f.Add(`{"jti":"1","iat":1e300,"exp":1,"events":{"x":[]}}`)
	f.Fuzz(func(t *testing.T, data string) {
		var claims map[string]any
		if json.Unmarshal([]byte(data), &claims) != nil {
			return
		}
		set, err := parseSET(claims, time.Unix(1700000000, 0))
		if err != nil {
			return
		}
		if set.ID == "" || len(set.Events) == 0 {
			t.Fatalf("accepted without jti or events: %s", data)
		}
		for _, ev := range set.Events {
			if ev.Ignored {
				continue
			}
			if ev.Type == TokenRevoked {
				if len(ev.Token) != 64 {
					t.Fatalf("token-revoked without a hash: %s", data)
				}
			} else if ev.Subject.ID == "" {
				t.Fatalf("event %s without a subject: %s", ev.Type, data)
			}
		}
	})
}
