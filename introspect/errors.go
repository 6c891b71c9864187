package introspect

import (
	"errors"
	"fmt"
)

// ErrInvalidToken marks a definite no: the token is malformed, forged, expired, not yet valid, meant for someone
// else, or reported inactive by the identity provider. Test with errors.Is; the broker answers MQTT reason code
// 0x86 (bad user name or password).
var ErrInvalidToken = errors.New("invalid token")

// ErrUnavailable marks a validation that could not be decided: the identity provider was unreachable, slow,
// answered 5xx or garbage, rejected the broker's own credentials, or the signing keys are too stale to trust. Test
// with errors.Is; the broker answers MQTT reason code 0x88 (server unavailable) so the thing retries later.
var ErrUnavailable = errors.New("identity provider unavailable")

// MQTT reason codes an *Error maps to (MQTT 5 §2.4; the MQTT 3.1.1 hook translates them to CONNACK return codes).
const (
	ReasonCodeBadCredentials    byte = 0x86
	ReasonCodeServerUnavailable byte = 0x88
)

// Error is the typed error every validator returns. Kind is ErrInvalidToken or ErrUnavailable. Reason is one of a
// fixed set of short constant texts (the Reason* constants), safe to log and to use as a metric label: it never
// contains the token or any value taken from it. Err, when set, carries the underlying detail (HTTP status,
// network error, claim value); it never contains the token either, but may contain issuer-controlled text.
type Error struct {
	Kind   error
	Reason string
	Err    error
}

// Error formats the kind, the reason and the detail.
func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%v: %s", e.Kind, e.Reason)
	}
	return fmt.Sprintf("%v: %s: %v", e.Kind, e.Reason, e.Err)
}

// Unwrap exposes both the kind and the detail to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ReasonCode is the MQTT reason code the broker answers with: 0x88 when the identity provider is unavailable,
// 0x86 for everything else, so an unknown failure never looks like a transient one the thing should retry.
func (e *Error) ReasonCode() byte {
	switch e.Kind {
	case ErrUnavailable:
		return ReasonCodeServerUnavailable
	case ErrBusy:
		return ReasonCodeRateExceeded
	}
	return ReasonCodeBadCredentials
}

// invalid builds an ErrInvalidToken error.
func invalid(reason string, detail error) *Error {
	return &Error{Kind: ErrInvalidToken, Reason: reason, Err: detail}
}

// unavailable builds an ErrUnavailable error.
func unavailable(reason string, detail error) *Error {
	return &Error{Kind: ErrUnavailable, Reason: reason, Err: detail}
}

// Reasons. Constant texts so that logs and metrics have a bounded vocabulary and tests can assert the exact cause.
const (
	// Shape of the compact serialization.
	ReasonEmptyToken       = "empty token"
	ReasonTokenTooLarge    = "token too large"
	ReasonNotJWS           = "not a compact JWS"
	ReasonJWE              = "encrypted token (JWE) where a JWS is expected"
	ReasonBadEncoding      = "malformed base64url"
	ReasonHeaderTooLarge   = "header too large"
	ReasonHeaderMalformed  = "malformed header JSON"
	ReasonDuplicateKey     = "duplicate JSON member"
	ReasonClaimsMalformed  = "malformed claims JSON"
	ReasonSignatureMissing = "missing signature"

	// Header parameters.
	ReasonAlgMissing       = "missing alg"
	ReasonAlgNone          = "alg none"
	ReasonAlgNotAllowed    = "alg not allowed"
	ReasonHMACNotAllowed   = "HMAC alg without a configured shared secret"
	ReasonCritPresent      = "crit header not supported"
	ReasonKeyInHeader      = "key or key URL in header (jku, x5u, jwk, x5c) not accepted"
	ReasonNestedJWT        = "nested JWT (cty) not accepted"
	ReasonUnsupportedParam = "unsupported header parameter (b64, zip)"
	ReasonTypMismatch      = "typ not accepted"
	ReasonKidMissing       = "missing kid"
	ReasonKidMalformed     = "malformed kid"
	ReasonKidUnknown       = "unknown kid"
	ReasonKidUnverifiable  = "kid unknown and the key set cannot be fetched"
	ReasonKidRateLimited   = "kid unknown and the key set was fetched moments ago; retry"

	// Key fit and signature.
	ReasonKeyAlgMismatch   = "key does not fit alg"
	ReasonKeyTooSmall      = "RSA key shorter than 2048 bits"
	ReasonSignatureLength  = "signature has wrong length"
	ReasonSignatureInvalid = "signature invalid"

	// Claims.
	ReasonIssuerMismatch   = "issuer not accepted"
	ReasonAudienceMismatch = "audience not accepted"
	ReasonExpMissing       = "missing exp"
	ReasonExpired          = "expired"
	ReasonNotYetValid      = "not yet valid (nbf)"
	ReasonIssuedInFuture   = "issued in the future (iat)"
	ReasonClaimType        = "claim has wrong type"
	ReasonSubMissing       = "missing sub"
	ReasonThingIDMissing   = "missing the configured thing id claim"
	ReasonNotAccessToken   = "not an access token (tokenName)"
	ReasonNotAccessType    = "not an access token (token_type)"

	// Introspection answers.
	ReasonInactive         = "token inactive"
	ReasonUnsupportedToken = "token type not supported by the introspection endpoint"

	// Unavailable.
	ReasonNoKeys            = "signing keys not loaded"
	ReasonKeysStale         = "signing keys stale"
	ReasonUpstreamStatus    = "identity provider answered an error status"
	ReasonUpstreamAuth      = "identity provider rejected the broker's client credentials"
	ReasonUpstreamNetwork   = "identity provider unreachable or timed out"
	ReasonUpstreamMalformed = "identity provider answered malformed JSON"
	ReasonActiveMissing     = "introspection answer without a boolean active"
	ReasonNoValidator       = "no validator for this token"
	ReasonNoEndpoint        = "introspection endpoint not known yet"
)
