package hooks

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"imb/introspect"
	"imb/sdk"
)

// TestChallengeVerify: a proof is checked against its nonce's lifetime, the nonce, the client id and the broker's
// audience; a late proof is refused as stale even when everything else holds.
func TestChallengeVerify(t *testing.T) {
	k, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(k.PublicJWK())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok := &introspect.Token{Audience: []string{"things-client"}, Confirmation: &introspect.Confirmation{JWK: jwk}}
	proof := func(c sdk.PoPClaims) []byte {
		p, err := k.PoPProof(c)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(p)
	}
	good := sdk.PoPClaims{Nonce: "n1", ClientID: "t1", Audience: "things-client"}
	tests := []struct {
		name       string
		claims     sdk.PoPClaims
		configured string
		at         time.Time
		wantErr    error // nil: accepted
	}{
		{"in time", good, "", now, nil},
		{"at the last instant", good, "", now.Add(DefaultPoPTimeout), nil},
		{"late", good, "", now.Add(DefaultPoPTimeout + time.Millisecond), errStaleNonce},
		{"another nonce", sdk.PoPClaims{Nonce: "n0", ClientID: "t1", Audience: "things-client"}, "", now, introspect.ErrProof},
		{"another client id", sdk.PoPClaims{Nonce: "n1", ClientID: "t2", Audience: "things-client"}, "", now, introspect.ErrProof},
		{"another audience", sdk.PoPClaims{Nonce: "n1", ClientID: "t1", Audience: "imb"}, "", now, introspect.ErrProof},
		{"configured audience", sdk.PoPClaims{Nonce: "n1", ClientID: "t1", Audience: "mqtts://b"}, "mqtts://b", now, nil},
		{"token's aud when one is configured", good, "mqtts://b", now, introspect.ErrProof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &challenge{nonce: "n1", clientID: "t1", expires: now.Add(DefaultPoPTimeout), tok: tok}
			err := c.verify(proof(tt.claims), tt.configured, tt.at)
			if (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("verify: %v, want %v", err, tt.wantErr)
			}
		})
	}
}
