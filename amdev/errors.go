package amdev

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// httpError is an error answered with AM's CREST envelope
// {"code":401,"reason":"Unauthorized","message":"…","detail":{…}}. OAuth
// endpoints add RFC 6749's "error"/"error_description" to the same body so
// that standard OAuth clients and CREST clients both understand it.
type httpError struct {
	status  int
	message string
	detail  map[string]any
	oauth   string // RFC 6749 error code, for /oauth2 endpoints and things actions
	cause   error  // logged, never sent
	// retryAfter, when set, is sent as Retry-After (seconds).
	retryAfter string
}

func (e *httpError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%d %s: %v", e.status, e.message, e.cause)
	}
	return fmt.Sprintf("%d %s", e.status, e.message)
}

func (e *httpError) Unwrap() error { return e.cause }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, message: fmt.Sprintf(format, args...)}
}

// oauthError is an OAuth error: its code goes to detail.error as AM does on the things endpoint.
func oauthError(status int, code, description string) *httpError {
	return &httpError{status: status, message: description, oauth: code,
		detail: map[string]any{"error": code, "error_description": description}}
}

func (e *httpError) with(cause error) *httpError { e.cause = cause; return e }

// Errors AM answers often.
func errLoginFailure() *httpError { return errorf(http.StatusUnauthorized, "Login failure") }
func errAccessDenied() *httpError { return errorf(http.StatusUnauthorized, "Access Denied") }
func errForbidden(msg string) *httpError {
	return errorf(http.StatusForbidden, "%s", msg)
}
func errBadRequest(format string, args ...any) *httpError {
	return errorf(http.StatusBadRequest, format, args...)
}
func errNotFound() *httpError { return errorf(http.StatusNotFound, "Not Found") }

// reasonPhrase is AM's "reason" text for a status.
func reasonPhrase(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "Error"
}

// writeError answers err as a CREST error; unknown errors become a 500.
func writeError(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{status: http.StatusInternalServerError, message: "Internal Server Error"}
	}
	body := map[string]any{"code": he.status, "reason": reasonPhrase(he.status), "message": he.message}
	if he.detail != nil {
		body["detail"] = he.detail
	}
	if he.oauth != "" {
		body["error"] = he.oauth
		body["error_description"] = he.message
	}
	if he.status == http.StatusUnauthorized && he.oauth == "invalid_client" {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth2"`)
	}
	if he.retryAfter != "" {
		w.Header().Set("Retry-After", he.retryAfter)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, he.status, body)
}

// writeJSON answers v as JSON with the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away: nothing left to tell it
}
