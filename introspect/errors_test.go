package introspect

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestErrorKinds(t *testing.T) {
	detail := fs.ErrNotExist
	tests := []struct {
		err  *Error
		kind error
		code byte
		text string
	}{
		{invalid(ReasonExpired, nil), ErrInvalidToken, ReasonCodeBadCredentials, "invalid token: expired"},
		{unavailable(ReasonUpstreamStatus, detail), ErrUnavailable, ReasonCodeServerUnavailable,
			"identity provider unavailable: identity provider answered an error status: file does not exist"},
		{&Error{Kind: errors.New("other"), Reason: "x"}, nil, ReasonCodeBadCredentials, "other: x"},
	}
	for _, tt := range tests {
		if tt.kind != nil && !errors.Is(tt.err, tt.kind) {
			t.Errorf("%v is not %v", tt.err, tt.kind)
		}
		if got := tt.err.ReasonCode(); got != tt.code {
			t.Errorf("%v: reason code %#x, want %#x", tt.err, got, tt.code)
		}
		if got := tt.err.Error(); got != tt.text {
			t.Errorf("Error() = %q, want %q", got, tt.text)
		}
	}
	if !errors.Is(tests[1].err, fs.ErrNotExist) {
		t.Error("detail not reachable through errors.Is")
	}
}

func TestFingerprint(t *testing.T) {
	a, b := Fingerprint("token-a"), Fingerprint("token-b")
	if len(a) != 12 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Errorf("fingerprint %q is not 12 hex digits", a)
	}
	if a == b || a != Fingerprint("token-a") {
		t.Error("fingerprints not stable and distinct")
	}
}

// validatorFunc adapts a function to Validator, for a wrapped validator that is not a Readier.
type validatorFunc func(context.Context, string) (*Token, error)

func (f validatorFunc) Validate(ctx context.Context, token string) (*Token, error) {
	return f(ctx, token)
}

func TestCacheReady(t *testing.T) {
	srv := newIssuerServer(t)
	issuer := srv.issuer()
	srv.srv.Close()
	c := NewCache(newTestJWT(t, JWTConfig{Issuer: issuer}), CacheConfig{})
	if r := reasonOf(t, c.Ready(t.Context()), ErrUnavailable); r != ReasonNoKeys {
		t.Errorf("reason %q", r)
	}
	plain := NewCache(validatorFunc(func(context.Context, string) (*Token, error) { return nil, nil }), CacheConfig{})
	if err := plain.Ready(t.Context()); err != nil {
		t.Errorf("Ready of a cache over a non-Readier: %v", err)
	}
}

// TestEveryAlgorithm validates one token per supported algorithm, with the allow-list naming them all.
func TestEveryAlgorithm(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	keys := map[string]any{
		"ES256": newECKey(t, "", elliptic.P256(), "").priv, "ES384": newECKey(t, "", elliptic.P384(), "").priv,
		"ES512": newECKey(t, "", elliptic.P521(), "").priv, "RS256": rsaKeyA(), "RS384": rsaKeyA(), "RS512": rsaKeyA(),
		"PS256": rsaKeyB(), "PS384": rsaKeyB(), "PS512": rsaKeyB(), "EdDSA": newEdKey(t, "").priv,
		"HS256": secret, "HS384": secret, "HS512": secret,
	}
	var published []*testKey
	var algs []string
	for alg, key := range keys {
		algs = append(algs, alg)
		if s, ok := key.(crypto.Signer); ok {
			published = append(published, &testKey{kid: "k-" + alg, alg: alg, priv: s, jwkAlg: alg})
		}
	}
	srv := newIssuerServer(t, published...)
	v := newTestJWT(t, JWTConfig{Issuer: srv.issuer(), Algorithms: algs, SharedSecret: secret})
	payload := `{"sub":"thing-1","iss":"` + srv.issuer() + `","exp":9999999999}`
	for alg, key := range keys {
		t.Run(alg, func(t *testing.T) {
			token := signRaw(t, key, alg, `{"alg":"`+alg+`","kid":"k-`+alg+`"}`, payload)
			if _, err := v.Validate(t.Context(), token); err != nil {
				t.Fatal(err)
			}
		})
	}
}
