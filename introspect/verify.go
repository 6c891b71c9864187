package introspect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	_ "crypto/sha256" // registers SHA-256 for crypto.Hash.New
	_ "crypto/sha512" // registers SHA-384 and SHA-512
	"fmt"
	"io"
)

// keyFamily is the kind of key an algorithm needs; a key of another family never verifies, whatever the header says.
type keyFamily uint8

const (
	familyEC keyFamily = iota + 1
	familyRSA
	familyRSAPSS
	familyEd25519
	familyHMAC
)

// algorithm describes one JWS algorithm (RFC 7518 §3, RFC 8037 §3.1).
type algorithm struct {
	name   string
	hash   crypto.Hash
	family keyFamily
	curve  elliptic.Curve // familyEC only
	size   int            // familyEC: byte length of r and of s
}

// lookupAlgorithm returns the description of a supported algorithm.
func lookupAlgorithm(name string) (algorithm, bool) {
	switch name {
	case "ES256":
		return algorithm{name, crypto.SHA256, familyEC, elliptic.P256(), 32}, true
	case "ES384":
		return algorithm{name, crypto.SHA384, familyEC, elliptic.P384(), 48}, true
	case "ES512":
		return algorithm{name, crypto.SHA512, familyEC, elliptic.P521(), 66}, true
	case "RS256":
		return algorithm{name, crypto.SHA256, familyRSA, nil, 0}, true
	case "RS384":
		return algorithm{name, crypto.SHA384, familyRSA, nil, 0}, true
	case "RS512":
		return algorithm{name, crypto.SHA512, familyRSA, nil, 0}, true
	case "PS256":
		return algorithm{name, crypto.SHA256, familyRSAPSS, nil, 0}, true
	case "PS384":
		return algorithm{name, crypto.SHA384, familyRSAPSS, nil, 0}, true
	case "PS512":
		return algorithm{name, crypto.SHA512, familyRSAPSS, nil, 0}, true
	case "EdDSA":
		return algorithm{name, 0, familyEd25519, nil, 0}, true
	case "HS256":
		return algorithm{name, crypto.SHA256, familyHMAC, nil, 0}, true
	case "HS384":
		return algorithm{name, crypto.SHA384, familyHMAC, nil, 0}, true
	case "HS512":
		return algorithm{name, crypto.SHA512, familyHMAC, nil, 0}, true
	}
	return algorithm{}, false
}

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3 requires 2048).
const minRSABits = 2048

// checkKeyFits refuses a key whose type, curve or size does not fit the algorithm. Run it before any crypto so that
// algorithm confusion (an RSA public key used as an HMAC secret, a P-384 key under ES256) fails with a clear reason.
func checkKeyFits(alg algorithm, key crypto.PublicKey) error {
	switch alg.family {
	case familyEC:
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return invalid(ReasonKeyAlgMismatch, fmt.Errorf("%s needs an EC key, kid names %T", alg.name, key))
		}
		if k.Curve != alg.curve {
			return invalid(ReasonKeyAlgMismatch, fmt.Errorf("%s needs curve %s, key is %s",
				alg.name, alg.curve.Params().Name, k.Curve.Params().Name))
		}
	case familyRSA, familyRSAPSS:
		k, ok := key.(*rsa.PublicKey)
		if !ok {
			return invalid(ReasonKeyAlgMismatch, fmt.Errorf("%s needs an RSA key, kid names %T", alg.name, key))
		}
		if k.N.BitLen() < minRSABits {
			return invalid(ReasonKeyTooSmall, fmt.Errorf("%d bits", k.N.BitLen()))
		}
	case familyEd25519:
		if _, ok := key.(ed25519.PublicKey); !ok {
			return invalid(ReasonKeyAlgMismatch, fmt.Errorf("%s needs an Ed25519 key, kid names %T", alg.name, key))
		}
	case familyHMAC:
		if _, ok := key.([]byte); !ok {
			return invalid(ReasonHMACNotAllowed, nil)
		}
	default:
		return invalid(ReasonAlgNotAllowed, nil)
	}
	return nil
}

// verifySignature checks sig over signingInput with a key that already passed checkKeyFits.
func verifySignature(alg algorithm, key crypto.PublicKey, signingInput string, sig []byte) error {
	var digest []byte
	if alg.hash != 0 {
		h := alg.hash.New()
		_, _ = io.WriteString(h, signingInput) // hash writes never fail
		digest = h.Sum(nil)
	}
	ok := false
	switch alg.family {
	case familyEC:
		// JWS carries r||s with fixed-width halves (RFC 7518 §3.4); any other length is malformed, and a DER
		// signature smuggled in its place must not be accepted.
		if len(sig) != 2*alg.size {
			return invalid(ReasonSignatureLength, fmt.Errorf("%d bytes, want %d", len(sig), 2*alg.size))
		}
		// Both (r, s) and (r, n−s) verify: RFC 7518 does not require low-S and Go's signer emits either, and the
		// mirror grants nothing the original does not (see TestHighS).
		der, nonZero := rawToASN1(sig[:alg.size], sig[alg.size:])
		ok = nonZero && ecdsa.VerifyASN1(key.(*ecdsa.PublicKey), digest, der)
	case familyRSA:
		k := key.(*rsa.PublicKey)
		if len(sig) != k.Size() {
			return invalid(ReasonSignatureLength, fmt.Errorf("%d bytes, want %d", len(sig), k.Size()))
		}
		ok = rsa.VerifyPKCS1v15(k, alg.hash, digest, sig) == nil
	case familyRSAPSS:
		k := key.(*rsa.PublicKey)
		if len(sig) != k.Size() {
			return invalid(ReasonSignatureLength, fmt.Errorf("%d bytes, want %d", len(sig), k.Size()))
		}
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: alg.hash}
		ok = rsa.VerifyPSS(k, alg.hash, digest, sig, opts) == nil
	case familyEd25519:
		if len(sig) != ed25519.SignatureSize {
			return invalid(ReasonSignatureLength, fmt.Errorf("%d bytes, want %d", len(sig), ed25519.SignatureSize))
		}
		ok = ed25519.Verify(key.(ed25519.PublicKey), []byte(signingInput), sig)
	case familyHMAC:
		mac := hmac.New(alg.hash.New, key.([]byte))
		_, _ = io.WriteString(mac, signingInput)
		ok = hmac.Equal(mac.Sum(nil), sig)
	}
	if !ok {
		return invalid(ReasonSignatureInvalid, nil)
	}
	return nil
}

// rawToASN1 converts the fixed-width r||s of a JWS ECDSA signature to the DER SEQUENCE crypto/ecdsa verifies. It
// reports false when r or s is zero, which no valid signature has.
func rawToASN1(r, s []byte) ([]byte, bool) {
	r, s = derInteger(r), derInteger(s)
	if r == nil || s == nil {
		return nil, false
	}
	body := len(r) + len(s) + 4
	out := make([]byte, 0, body+4)
	out = append(out, 0x30)
	if body >= 0x80 { // P-521 signatures need the long length form; bodies stay under 256 bytes
		out = append(out, 0x81)
	}
	out = append(out, byte(body))
	out = append(out, 0x02, byte(len(r)))
	out = append(out, r...)
	out = append(out, 0x02, byte(len(s)))
	return append(out, s...), true
}

// derInteger returns the minimal DER content bytes of an unsigned big-endian integer, or nil for zero.
func derInteger(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 {
		return nil
	}
	if b[0]&0x80 != 0 {
		return append([]byte{0}, b...)
	}
	return b
}
