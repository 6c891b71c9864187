package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors to test for with errors.Is. APIError matches the ones that stem from an AM reply.
var (
	// ErrAuthenticationFailed: the authentication tree ended in failure (any non-200 reply from
	// /json/authenticate), or it gave up after too many rounds.
	ErrAuthenticationFailed = errors.New("sdk: authentication failed")
	// ErrUnauthorized: AM answered 401 (dead or unknown session).
	ErrUnauthorized = errors.New("sdk: unauthorized")
	// ErrForbidden: AM answered 403 without an OAuth error code (for example a rejected signed request).
	ErrForbidden = errors.New("sdk: forbidden")
	// ErrInvalidScope: a requested scope is not allowed for the thing's OAuth client, or a refresh asked
	// for more than was granted ("Unknown/invalid scope(s)", invalid_scope).
	ErrInvalidScope = errors.New("sdk: invalid scope")
	// ErrInvalidGrant: a refresh token or device code is unknown, expired or belongs to someone else.
	ErrInvalidGrant = errors.New("sdk: invalid grant")
	// ErrAuthorizationPending: the user has not yet answered a device authorization request.
	ErrAuthorizationPending = errors.New("sdk: authorization_pending")
	// ErrSlowDown: the thing polls for a user token faster than AM allows.
	ErrSlowDown = errors.New("sdk: slow_down")
	// ErrExpiredToken: the device code expired before the user answered.
	ErrExpiredToken = errors.New("sdk: expired_token")
	// ErrAuthorizationDeclined: the user denied a device authorization request.
	ErrAuthorizationDeclined = errors.New("sdk: authorization_declined")
)

// maxBody bounds how much of an AM reply is read; AM's largest replies (authId JWTs, JWKS) are a few kB.
const maxBody = 1 << 20

// APIError is a non-success reply from AM. Its message is the raw response body, which is where AM
// and amdev put the human-readable cause; Code is the OAuth error code from the CREST envelope's
// detail.error (or a top-level "error"), empty if there is none.
type APIError struct {
	Op         string // what the SDK was doing, e.g. "get_access_token"
	StatusCode int
	Code       string // OAuth error code, e.g. "authorization_pending"
	Message    string // the envelope's message, if any
	Body       string // the raw response body (bounded)
}

// Error returns the operation, status and raw body.
func (e *APIError) Error() string {
	body := strings.TrimSpace(e.Body)
	if body == "" {
		body = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.StatusCode, body)
}

// Is lets errors.Is match an APIError against the Err* values by OAuth code and status.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrAuthorizationPending:
		return e.Code == "authorization_pending"
	case ErrSlowDown:
		return e.Code == "slow_down"
	case ErrExpiredToken:
		return e.Code == "expired_token"
	case ErrAuthorizationDeclined:
		return e.Code == "authorization_declined" || e.Code == "access_denied"
	case ErrInvalidGrant:
		return e.Code == "invalid_grant"
	case ErrInvalidScope:
		return e.Code == "invalid_scope" || strings.Contains(e.Body, "Unknown/invalid scope(s)")
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden && e.Code == ""
	}
	return false
}

// newAPIError builds an APIError, reading the OAuth error code from AM's CREST envelope
// {"code":403,"message":"…","detail":{"error":"…"}} or from a plain OAuth error {"error":"…"}.
func newAPIError(op string, status int, body []byte) *APIError {
	e := &APIError{Op: op, StatusCode: status, Body: string(body)}
	var envelope struct {
		Message string `json:"message"`
		Error   string `json:"error"`
		Detail  struct {
			Error string `json:"error"`
		} `json:"detail"`
	}
	if json.Unmarshal(body, &envelope) == nil {
		e.Message = envelope.Message
		e.Code = envelope.Detail.Error
		if e.Code == "" {
			e.Code = envelope.Error
		}
	}
	return e
}
