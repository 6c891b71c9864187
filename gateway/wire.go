package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Content formats of the gateway protocol: JSON is CoAP's 50, JOSE is ForgeRock's unassigned 11650.
const (
	FormatJSON = message.MediaType(50)
	FormatJOSE = message.MediaType(11650)
)

// Media types AM expects for the two content formats.
const (
	mediaJSON = "application/json"
	mediaJOSE = "application/jose"
)

// maxPayload bounds any request body the gateway parses; AM's IoT requests are a few kilobytes.
const maxPayload = 64 << 10

// wrapper is a JSON request of the gateway protocol: the thing's session token and the body for AM
// as JSON text.
type wrapper struct {
	Token   string `json:"token"`
	Payload string `json:"payload,omitempty"`
}

// relayBody is a thing request decoded for AM: the session token to send as cookie and the body.
type relayBody struct {
	token       string
	contentType string
	body        []byte
}

// errBadRequest marks a request the gateway cannot make sense of (4.00).
var errBadRequest = errors.New("bad request")

// decodeThingRequest reads a things-endpoint request: a JSON wrapper or a JWS whose csrf claim is the
// token. The JWS is forwarded unchanged; its signature is AM's to check.
func decodeThingRequest(format message.MediaType, payload []byte) (relayBody, error) {
	if len(payload) > maxPayload {
		return relayBody{}, fmt.Errorf("%w: payload larger than %d bytes", errBadRequest, maxPayload)
	}
	switch format {
	case FormatJSON:
		var w wrapper
		if err := json.Unmarshal(payload, &w); err != nil {
			return relayBody{}, fmt.Errorf("%w: JSON wrapper: %w", errBadRequest, err)
		}
		if w.Token == "" {
			return relayBody{}, fmt.Errorf("%w: JSON wrapper without token", errBadRequest)
		}
		rb := relayBody{token: w.Token, contentType: mediaJSON}
		if w.Payload != "" {
			if !json.Valid([]byte(w.Payload)) {
				return relayBody{}, fmt.Errorf("%w: wrapper payload is not JSON text", errBadRequest)
			}
			rb.body = []byte(w.Payload)
		}
		return rb, nil
	case FormatJOSE:
		tok, err := csrfClaim(payload)
		if err != nil {
			return relayBody{}, err
		}
		return relayBody{token: tok, contentType: mediaJOSE, body: payload}, nil
	}
	return relayBody{}, fmt.Errorf("%w: content format %d: want 50 (JSON) or 11650 (JOSE)", errBadRequest, format)
}

// decodeSessionRequest reads a /session request: {"tokenId": …} as JSON (nothing is sent to AM but
// the cookie) or a JWS with the token in csrf, forwarded unchanged.
func decodeSessionRequest(format message.MediaType, payload []byte) (relayBody, error) {
	if len(payload) > maxPayload {
		return relayBody{}, fmt.Errorf("%w: payload larger than %d bytes", errBadRequest, maxPayload)
	}
	switch format {
	case FormatJSON:
		var s struct {
			TokenID string `json:"tokenId"`
		}
		if err := json.Unmarshal(payload, &s); err != nil {
			return relayBody{}, fmt.Errorf("%w: session request: %w", errBadRequest, err)
		}
		if s.TokenID == "" {
			return relayBody{}, fmt.Errorf("%w: session request without tokenId", errBadRequest)
		}
		return relayBody{token: s.TokenID, contentType: mediaJSON}, nil
	case FormatJOSE:
		return decodeThingRequest(format, payload)
	}
	return relayBody{}, fmt.Errorf("%w: content format %d: want 50 (JSON) or 11650 (JOSE)", errBadRequest, format)
}

// csrfClaim returns the csrf claim of a compact JWS without verifying it: AM verifies the signature
// of the very same bytes, the gateway only needs to know which session to send them in.
// It is read by hand, not by go-jose: AM's signed requests carry an integer nonce header, which
// go-jose's parser refuses (it wants a string), and the gateway must forward them unchanged.
func csrfClaim(jws []byte) (string, error) {
	parts := bytes.Split(bytes.TrimSpace(jws), []byte("."))
	if len(parts) != 3 {
		return "", fmt.Errorf("%w: JOSE payload is not a compact JWS", errBadRequest)
	}
	raw, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		return "", fmt.Errorf("%w: JWS payload: %w", errBadRequest, err)
	}
	var claims struct {
		CSRF string `json:"csrf"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return "", fmt.Errorf("%w: JWS claims: %w", errBadRequest, err)
	}
	if claims.CSRF == "" {
		return "", fmt.Errorf("%w: JWS without csrf claim", errBadRequest)
	}
	return claims.CSRF, nil
}

// authIDDigest is the key under which the gateway keeps an authId: std-base64(SHA-256(authId)).
func authIDDigest(authID string) string {
	sum := sha256.Sum256([]byte(authID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// parseAuthIDDigest checks that a digest a thing sent back is one the gateway could have made.
func parseAuthIDDigest(d string) (string, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(d)
	if err != nil {
		return "", fmt.Errorf("%w: auth_id_digest: %w", errBadRequest, err)
	}
	if len(raw) != sha256.Size {
		return "", fmt.Errorf("%w: auth_id_digest: %d bytes, want %d", errBadRequest, len(raw), sha256.Size)
	}
	return d, nil
}

// amCodes is the fixed AM status → CoAP code table of ForgeRock's gateway.
var amCodes = map[int]codes.Code{
	http.StatusBadRequest:            codes.BadRequest,
	http.StatusUnauthorized:          codes.Unauthorized,
	http.StatusForbidden:             codes.Forbidden,
	http.StatusNotFound:              codes.NotFound,
	http.StatusMethodNotAllowed:      codes.MethodNotAllowed,
	http.StatusNotAcceptable:         codes.NotAcceptable,
	http.StatusPreconditionFailed:    codes.PreconditionFailed,
	http.StatusRequestEntityTooLarge: codes.RequestEntityTooLarge,
	http.StatusUnsupportedMediaType:  codes.UnsupportedMediaType,
	http.StatusInternalServerError:   codes.InternalServerError,
	http.StatusNotImplemented:        codes.NotImplemented,
	http.StatusBadGateway:            codes.BadGateway,
	http.StatusServiceUnavailable:    codes.ServiceUnavailable,
	http.StatusGatewayTimeout:        codes.GatewayTimeout,
}

// coapCode maps an AM status: a success becomes ok, a listed error its CoAP twin, anything else 5.00.
func coapCode(status int, ok codes.Code) codes.Code {
	if status >= 200 && status < 300 {
		return ok
	}
	if c, found := amCodes[status]; found {
		return c
	}
	return codes.InternalServerError
}

// queryAction returns the value of _action in the URI-Query options.
func queryAction(queries []string) string {
	for _, q := range queries {
		if v, ok := strings.CutPrefix(q, "_action="); ok {
			return v
		}
	}
	return ""
}
