package introspect

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Default size caps, checked before any decoding or crypto. AM's access tokens are about 1 KiB; an RSA-signed
// token with a long scope list stays well under 8 KiB.
const (
	DefaultMaxTokenBytes  = 8 << 10
	DefaultMaxHeaderBytes = 1 << 10 // encoded header; real headers ({"typ","alg","kid"}) are under 200 bytes
	maxKidBytes           = 256
)

// b64 is strict base64url without padding (RFC 7515 §2): it rejects padding, whitespace and non-zero trailing bits,
// so one token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// compactJWS is a parsed, not yet verified, JWS in compact serialization.
type compactJWS struct {
	alg, kid, typ string
	header        map[string]any
	claims        map[string]any
	signingInput  string // "header.payload", exactly as received
	signature     []byte
}

// parseCompact splits, decodes and checks a compact JWS. It never trusts the header to say how to verify: key
// material or key locations in the header (jku, x5u, jwk, x5c) are refused, as are crit, nested and encrypted
// tokens. It checks nothing that depends on configuration (alg allow-list, keys, claims).
func parseCompact(token string, maxToken, maxHeader int) (*compactJWS, error) {
	if token == "" {
		return nil, invalid(ReasonEmptyToken, nil)
	}
	if len(token) > maxToken {
		return nil, invalid(ReasonTokenTooLarge, fmt.Errorf("%d bytes, limit %d", len(token), maxToken))
	}
	// Strict base64url decoding refuses every byte outside the alphabet except CR and LF, which encoding/base64
	// skips even in strict mode: refuse those here, or a line break would give one token many spellings.
	if strings.IndexByte(token, '\n') >= 0 || strings.IndexByte(token, '\r') >= 0 {
		return nil, invalid(ReasonBadEncoding, errors.New("line break in token"))
	}
	dots := strings.Count(token, ".")
	switch dots {
	case 2:
	case 4:
		return nil, invalid(ReasonJWE, nil)
	default:
		return nil, invalid(ReasonNotJWS, nil)
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	if len(h) > maxHeader {
		return nil, invalid(ReasonHeaderTooLarge, fmt.Errorf("%d bytes, limit %d", len(h), maxHeader))
	}
	jws := &compactJWS{signingInput: token[:len(h)+1+len(p)]}
	if err := jws.decodeHeader(h); err != nil {
		return nil, err
	}
	if s == "" {
		return nil, invalid(ReasonSignatureMissing, nil)
	}
	var err error
	if jws.signature, err = b64.DecodeString(s); err != nil {
		return nil, invalid(ReasonBadEncoding, errors.New("signature"))
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return nil, invalid(ReasonBadEncoding, errors.New("payload"))
	}
	if jws.claims, err = decodeStrictObject(payload); err != nil {
		if errors.Is(err, errDuplicateMember) {
			return nil, invalid(ReasonDuplicateKey, fmt.Errorf("claims: %w", err))
		}
		return nil, invalid(ReasonClaimsMalformed, err)
	}
	return jws, nil
}

// decodeHeader decodes the protected header and applies the configuration-independent header rules.
func (j *compactJWS) decodeHeader(encoded string) error {
	raw, err := b64.DecodeString(encoded)
	if err != nil {
		return invalid(ReasonBadEncoding, errors.New("header"))
	}
	if j.header, err = decodeStrictObject(raw); err != nil {
		if errors.Is(err, errDuplicateMember) {
			return invalid(ReasonDuplicateKey, fmt.Errorf("header: %w", err))
		}
		return invalid(ReasonHeaderMalformed, err)
	}
	if _, ok := j.header["enc"]; ok {
		return invalid(ReasonJWE, errors.New("enc header in a three-part token"))
	}
	if _, ok := j.header["crit"]; ok {
		return invalid(ReasonCritPresent, nil)
	}
	// Parameters that would let the token choose its own verification key.
	for _, name := range [...]string{"jku", "x5u", "jwk", "x5c"} {
		if _, ok := j.header[name]; ok {
			return invalid(ReasonKeyInHeader, fmt.Errorf("header parameter %s", name))
		}
	}
	// Parameters that change how the payload is processed (RFC 7797 b64, JWE zip).
	for _, name := range [...]string{"b64", "zip"} {
		if _, ok := j.header[name]; ok {
			return invalid(ReasonUnsupportedParam, fmt.Errorf("header parameter %s", name))
		}
	}
	if _, ok := j.header["cty"]; ok {
		// RFC 7519 §5.2: cty is only for nested JWTs, which an access token never is.
		return invalid(ReasonNestedJWT, nil)
	}
	if j.alg, err = headerString(j.header, "alg"); err != nil {
		return err
	}
	if j.alg == "" {
		return invalid(ReasonAlgMissing, nil)
	}
	if strings.EqualFold(j.alg, "none") {
		return invalid(ReasonAlgNone, nil)
	}
	if j.typ, err = headerString(j.header, "typ"); err != nil {
		return err
	}
	if j.kid, err = headerString(j.header, "kid"); err != nil {
		return invalid(ReasonKidMalformed, errors.New("kid is not a string"))
	}
	if len(j.kid) > maxKidBytes {
		return invalid(ReasonKidMalformed, fmt.Errorf("kid of %d bytes, limit %d", len(j.kid), maxKidBytes))
	}
	for i := 0; i < len(j.kid); i++ {
		if c := j.kid[i]; c < 0x20 || c == 0x7f {
			return invalid(ReasonKidMalformed, errors.New("control character in kid"))
		}
	}
	return nil
}

// headerString reads an optional string header parameter.
func headerString(h map[string]any, name string) (string, error) {
	v, ok := h[name]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", invalid(ReasonHeaderMalformed, fmt.Errorf("header parameter %s is not a string", name))
	}
	return s, nil
}
