package introspect

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchValidator is a JWT validator with keys from a file, so benchmarks measure validation, not the network.
func benchValidator(b *testing.B, keys ...*testKey) *JWTValidator {
	file := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(file, keySetJSON(b, keys...), 0o600); err != nil {
		b.Fatal(err)
	}
	v, err := NewJWT(context.Background(), JWTConfig{Issuer: "http://am.localtest.me:8080/am/oauth2", JWKSFile: file,
		Audience: []string{"forgerock-iot-oauth2-client"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { v.Close() })
	return v
}

// benchToken is an AM-shaped access token (about 700 bytes for ES256).
func benchToken(b *testing.B, k *testKey) string {
	c := claimsFor("http://am.localtest.me:8080/am/oauth2", "thing-1")
	c["auditTrackingId"] = "5b1a7c55-4d1c-4b8e-9c52-0c1e7e2f1a3b-123456"
	c["authGrantId"] = "QpLzN1k0Zb8hZ1nL3X8r3uM6c0E"
	c["grant_type"] = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	c["cts"] = "OAUTH2_STATELESS_GRANT"
	c["token_type"] = "Bearer"
	c["expires_in"] = 3600
	c["exp"] = time.Now().Add(24 * time.Hour).Unix()
	return signJOSE(b, k, "JWT", c)
}

// warmCache returns a cache holding one valid AM-shaped ES256 token, and that token.
func warmCache(b *testing.B) (*Cache, string) {
	k := newECKey(b, "es", elliptic.P256(), "ES256")
	c := NewCache(benchValidator(b, k), CacheConfig{})
	token := benchToken(b, k)
	if _, err := c.Validate(context.Background(), token); err != nil {
		b.Fatal(err)
	}
	return c, token
}

func BenchmarkCacheHit(b *testing.B) {
	c, token := warmCache(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(token)))
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Validate(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
	if s := c.Stats(); s.Upstream != 1 {
		b.Fatalf("benchmark missed the cache: %+v", s)
	}
}

func BenchmarkCacheHitParallel(b *testing.B) {
	c, token := warmCache(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := c.Validate(ctx, token); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchFresh measures a full validation without cache: parse, key lookup, signature, claims.
func benchFresh(b *testing.B, k *testKey) {
	v := benchValidator(b, k)
	token := benchToken(b, k)
	ctx := context.Background()
	if _, err := v.Validate(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Validate(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFreshES256(b *testing.B) { benchFresh(b, newECKey(b, "es", elliptic.P256(), "ES256")) }
func BenchmarkFreshRS256(b *testing.B) {
	benchFresh(b, &testKey{kid: "rs", alg: "RS256", priv: rsaKeyA()})
}
func BenchmarkFreshPS256(b *testing.B) {
	benchFresh(b, &testKey{kid: "ps", alg: "PS256", priv: rsaKeyA()})
}
func BenchmarkFreshEdDSA(b *testing.B) { benchFresh(b, newEdKey(b, "ed")) }

// signedParts returns the signing input and the raw signature of a token.
func signedParts(b *testing.B, token string) (string, []byte) {
	i := strings.LastIndexByte(token, '.')
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	return token[:i], sig
}

// BenchmarkRawES256Verify is the floor for BenchmarkFreshES256: hashing the same signing input and checking the
// same signature with crypto/ecdsa alone.
func BenchmarkRawES256Verify(b *testing.B) {
	k := newECKey(b, "es", elliptic.P256(), "ES256")
	input, sig := signedParts(b, benchToken(b, k))
	pub := k.priv.Public().(*ecdsa.PublicKey)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	b.ReportAllocs()
	for b.Loop() {
		digest := sha256.Sum256([]byte(input))
		if !ecdsa.Verify(pub, digest[:], r, s) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkRawRS256Verify is the floor for BenchmarkFreshRS256.
func BenchmarkRawRS256Verify(b *testing.B) {
	k := &testKey{kid: "rs", alg: "RS256", priv: rsaKeyA()}
	input, sig := signedParts(b, benchToken(b, k))
	pub := k.priv.Public().(*rsa.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		digest := sha256.Sum256([]byte(input))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawEdDSAVerify is the floor for BenchmarkFreshEdDSA.
func BenchmarkRawEdDSAVerify(b *testing.B) {
	k := newEdKey(b, "ed")
	input, sig := signedParts(b, benchToken(b, k))
	pub := k.priv.Public().(ed25519.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, []byte(input), sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkES256FreshVsRaw interleaves a full ES256 validation and the bare crypto/ecdsa check of the same
// signature in every iteration and reports both and their ratio, so that load from other processes on a shared
// machine affects both sides alike.
func BenchmarkES256FreshVsRaw(b *testing.B) {
	k := newECKey(b, "es", elliptic.P256(), "ES256")
	v := benchValidator(b, k)
	token := benchToken(b, k)
	input, sig := signedParts(b, token)
	pub := k.priv.Public().(*ecdsa.PublicKey)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	ctx := context.Background()
	var fresh, raw time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := v.Validate(ctx, token); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		digest := sha256.Sum256([]byte(input))
		if !ecdsa.Verify(pub, digest[:], r, s) {
			b.Fatal("verify failed")
		}
		fresh += t1.Sub(t0)
		raw += time.Since(t1)
	}
	b.ReportMetric(float64(fresh.Nanoseconds())/float64(b.N), "fresh-ns/op")
	b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(fresh)/float64(raw), "fresh/raw")
}
