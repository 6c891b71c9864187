package httpdoor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"imb/internal/asthing"
)

// answer is how the door answers one outcome: the HTTP status, the RFC 6750 error code for
// WWW-Authenticate (empty: no challenge), the seconds for Retry-After (0: none) and the short name
// of the reason in the JSON body.
type answer struct {
	status     int
	bearer     string
	retryAfter int
	name       string
}

// Retry-After values: a rate or quota refusal clears within a second or so (the token buckets
// refill continuously), an unreachable identity provider usually takes longer to come back.
const (
	retryLimited     = 1
	retryUnavailable = 5
)

// reasons maps the broker's MQTT 5 reason codes (CONNACK, PUBACK, SUBACK, DISCONNECT) onto HTTP:
// the one table of the door. A code not listed is 502: the broker answered something the door
// cannot explain to an HTTP client.
var reasons = map[byte]answer{
	0x80: {http.StatusBadGateway, "", 0, "unspecified_error"},
	0x81: {http.StatusBadRequest, "", 0, "malformed_packet"},
	0x82: {http.StatusBadRequest, "", 0, "protocol_error"},
	0x85: {http.StatusUnauthorized, "invalid_token", 0, "client_identifier_not_valid"},
	0x86: {http.StatusUnauthorized, "invalid_token", 0, "bad_token"},
	0x87: {http.StatusForbidden, "insufficient_scope", 0, "not_authorized"},
	0x88: {http.StatusServiceUnavailable, "", retryUnavailable, "server_unavailable"},
	0x89: {http.StatusServiceUnavailable, "", retryUnavailable, "server_busy"},
	0x8C: {http.StatusUnauthorized, "invalid_token", 0, "bad_authentication_method"},
	0x8E: {http.StatusConflict, "", 0, "session_taken_over"},
	0x8F: {http.StatusBadRequest, "", 0, "topic_filter_invalid"},
	0x90: {http.StatusBadRequest, "", 0, "topic_name_invalid"},
	0x95: {http.StatusRequestEntityTooLarge, "", 0, "packet_too_large"},
	0x96: {http.StatusTooManyRequests, "", retryLimited, "message_rate_too_high"},
	0x97: {http.StatusTooManyRequests, "", retryLimited, "quota_exceeded"},
	0x99: {http.StatusBadRequest, "", 0, "payload_format_invalid"},
	0x9A: {http.StatusBadRequest, "", 0, "retain_not_supported"},
	0x9B: {http.StatusBadRequest, "", 0, "qos_not_supported"},
	0x9E: {http.StatusBadRequest, "", 0, "shared_subscriptions_not_supported"},
	0x9F: {http.StatusTooManyRequests, "", retryLimited, "connection_rate_exceeded"},
	0xA0: {http.StatusUnauthorized, "invalid_token", 0, "token_expired"},
	0xA2: {http.StatusBadRequest, "", 0, "wildcard_subscriptions_not_supported"},
}

// answerFor is the HTTP answer for a failed outcome.
func answerFor(o asthing.Outcome) answer {
	switch {
	case o.TimedOut():
		return answer{http.StatusGatewayTimeout, "", retryUnavailable, "broker_timeout"}
	case o.Err != nil:
		return answer{http.StatusServiceUnavailable, "", retryUnavailable, "broker_unavailable"}
	}
	if a, ok := reasons[o.Code]; ok {
		return a
	}
	return answer{http.StatusBadGateway, "", 0, "unexpected_reason"}
}

// errorBody is the JSON body of every refusal: the short reason name, the MQTT 5 reason code when
// the broker gave one, and a sentence.
type errorBody struct {
	Error       string `json:"error"`
	Code        string `json:"mqtt_reason_code,omitempty"`
	Description string `json:"error_description"`
}

// writeError answers a refusal with the status, the RFC 6750 challenge when there is one,
// Retry-After when it helps, and the JSON body.
func writeError(w http.ResponseWriter, a answer, code string, desc string) {
	writeErrorFor(w, "Bearer", a, code, desc)
}

// writeErrorFor is writeError with the challenge for scheme: Bearer, or DPoP (RFC 9449 §7.1).
func writeErrorFor(w http.ResponseWriter, scheme string, a answer, code string, desc string) {
	h := w.Header()
	if a.status == http.StatusUnauthorized || a.bearer != "" {
		h.Set("WWW-Authenticate", scheme+strings.TrimPrefix(challenge(a.bearer, desc), "Bearer"))
	}
	if a.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(a.status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: a.name, Code: code, Description: desc})
}

// challenge is the WWW-Authenticate value (RFC 6750 §3): without an error code when the request
// had no credentials at all (§3.1).
func challenge(bearerErr, desc string) string {
	if bearerErr == "" {
		return `Bearer realm="imb"`
	}
	return fmt.Sprintf(`Bearer realm="imb", error=%q, error_description=%q`, bearerErr, quotable(desc))
}

// quotable keeps a description inside the characters RFC 6750 allows in error_description
// (%x20-21 / %x23-5B / %x5D-7E): no quote or backslash, printable ASCII only.
func quotable(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7E || c == '"' || c == '\\' {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}

// refuse answers a failed outcome.
func refuse(w http.ResponseWriter, o asthing.Outcome) {
	code := ""
	if o.Err == nil {
		code = fmt.Sprintf("0x%02x", o.Code)
	}
	writeError(w, answerFor(o), code, describe(o))
}

// describe is the sentence for a failed outcome: the broker's reason string when it gave one. A
// local error's detail stays in the log (it can name internal addresses).
func describe(o asthing.Outcome) string {
	if o.Err != nil {
		return fmt.Sprintf("%s: the broker did not answer", o.Step)
	}
	s := fmt.Sprintf("%s refused with reason 0x%02x", o.Step, o.Code)
	if o.Reason != "" {
		s += ": " + o.Reason
	}
	return s
}

// badRequest answers a request the door refuses before it reaches the broker.
func badRequest(w http.ResponseWriter, status int, name, desc string) {
	writeError(w, answer{status: status, name: name}, "", desc)
}

// never is a deadline that does not expire, for the SSE stream's write deadline.
var never = time.Time{}
