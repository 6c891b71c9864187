package amdev

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"
)

// maxJWSLen bounds every compact JWS amdev parses (registration JWTs with a
// certificate chain are a few kB).
const maxJWSLen = 64 << 10

// compactJWS is a parsed, not yet verified, compact JWS. amdev splits and
// decodes JWS itself instead of using go-jose's parser because AM's signed
// requests carry an integer "nonce" header, which go-jose refuses (it expects
// the RFC 8555 string nonce).
type compactJWS struct {
	header       map[string]any // decoded with json.Number for numbers
	payload      []byte
	signingInput string
	signature    []byte
}

var errMalformedJWS = errors.New("malformed JWS")

// parseCompactJWS splits and decodes a compact JWS.
func parseCompactJWS(raw string) (*compactJWS, error) {
	raw = strings.TrimSpace(raw)
	if len(raw) > maxJWSLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", errMalformedJWS, maxJWSLen)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: want 3 parts, got %d", errMalformedJWS, len(parts))
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", errMalformedJWS, err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", errMalformedJWS, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", errMalformedJWS, err)
	}
	header, err := decodeObject(hdr)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", errMalformedJWS, err)
	}
	if _, ok := header["alg"].(string); !ok {
		return nil, fmt.Errorf("%w: no alg", errMalformedJWS)
	}
	if crit, ok := header["crit"]; ok && crit != nil {
		return nil, fmt.Errorf("%w: unsupported crit header", errMalformedJWS)
	}
	return &compactJWS{header: header, payload: payload, signingInput: parts[0] + "." + parts[1], signature: sig}, nil
}

// decodeObject decodes a JSON object keeping numbers exact.
func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return m, nil
}

func (j *compactJWS) alg() string { s, _ := j.header["alg"].(string); return s }

func (j *compactJWS) headerString(name string) string {
	s, _ := j.header[name].(string)
	return s
}

// claims decodes the payload as a JSON object.
func (j *compactJWS) claims() (map[string]any, error) {
	m, err := decodeObject(j.payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", errMalformedJWS, err)
	}
	return m, nil
}

var errBadSignature = errors.New("signature does not verify")

// verify checks the signature with key for the header's alg. The alg must fit
// the key type: ES256/384/512 for the matching curve, EdDSA for Ed25519,
// PS256/384/512 or RS256/384/512 for RSA (at least 2048 bits).
func (j *compactJWS) verify(key crypto.PublicKey) error {
	alg := j.alg()
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		want, h, size := ecAlg(k.Curve)
		if alg != want {
			return fmt.Errorf("alg %s does not fit a %s key", alg, k.Curve.Params().Name)
		}
		if len(j.signature) != 2*size {
			return errBadSignature
		}
		d := digest(h, j.signingInput)
		r := new(big.Int).SetBytes(j.signature[:size])
		s := new(big.Int).SetBytes(j.signature[size:])
		if !ecdsa.Verify(k, d, r, s) {
			return errBadSignature
		}
		return nil
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return fmt.Errorf("alg %s does not fit an Ed25519 key", alg)
		}
		if !ed25519.Verify(k, []byte(j.signingInput), j.signature) {
			return errBadSignature
		}
		return nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return errors.New("RSA key shorter than 2048 bits")
		}
		var h crypto.Hash
		switch alg[min(len(alg), 2):] {
		case "256":
			h = crypto.SHA256
		case "384":
			h = crypto.SHA384
		case "512":
			h = crypto.SHA512
		default:
			return fmt.Errorf("alg %s does not fit an RSA key", alg)
		}
		d := digest(h, j.signingInput)
		switch alg[:2] {
		case "PS":
			if rsa.VerifyPSS(k, h, d, j.signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) != nil {
				return errBadSignature
			}
		case "RS":
			if rsa.VerifyPKCS1v15(k, h, d, j.signature) != nil {
				return errBadSignature
			}
		default:
			return fmt.Errorf("alg %s does not fit an RSA key", alg)
		}
		return nil
	default:
		return fmt.Errorf("unsupported key type %T", key)
	}
}

// ecAlg maps a curve to its JWS algorithm, hash and coordinate size.
func ecAlg(c elliptic.Curve) (string, crypto.Hash, int) {
	switch c {
	case elliptic.P256():
		return "ES256", crypto.SHA256, 32
	case elliptic.P384():
		return "ES384", crypto.SHA384, 48
	case elliptic.P521():
		return "ES512", crypto.SHA512, 66
	}
	return "", 0, 0
}

func digest(h crypto.Hash, input string) []byte {
	var hh hash.Hash
	switch h {
	case crypto.SHA384:
		hh = sha512.New384()
	case crypto.SHA512:
		hh = sha512.New()
	default:
		hh = sha256.New()
	}
	hh.Write([]byte(input))
	return hh.Sum(nil)
}
