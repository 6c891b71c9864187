// Package ssf receives Security Event Tokens (RFC 8417) pushed to the broker as RFC 8935 describes, the delivery
// of the OpenID Shared Signals Framework: it verifies each SET against the transmitter's keys (signature, typ,
// issuer, audience, iat within a maximum age, jti never accepted twice), reads the CAEP and RISC events the broker
// acts on and hands them to the broker, and answers as RFC 8935 §2.3 and §2.4 require. It knows nothing of MQTT.
package ssf

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"
)

// Event types the broker acts on.
const (
	// CAEP (OpenID Continuous Access Evaluation Profile 1.0).
	SessionRevoked    = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	CredentialChange  = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	TokenClaimsChange = "https://schemas.openid.net/secevent/caep/event-type/token-claims-change"
	// RISC (OpenID Risk Incident Sharing and Coordination Profile 1.0).
	AccountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	AccountPurged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	// TokenRevoked is imb's own event: one access token is revoked, named by the hex SHA-256 of the token as
	// presented ("token_sha256" member), so that neither the SET nor a log line carries the token. No standard
	// event names a token (CAEP's session-revoked names a session or a subject).
	TokenRevoked = "urn:imb:secevent:event-type:token-revoked"
)

// Subject formats (RFC 9493 Subject Identifiers) the broker understands.
const (
	FormatIssSub = "iss_sub"
	FormatOpaque = "opaque"
	FormatEmail  = "email"
)

// Subject is what an event is about.
type Subject struct {
	Format string // FormatIssSub, FormatOpaque or FormatEmail
	Issuer string // iss_sub: the subject's issuer
	ID     string // iss_sub: sub; opaque: id; email: the address
}

// Event is one event of a SET that the broker acts on.
type Event struct {
	Type    string
	Subject Subject   // zero for TokenRevoked
	Token   string    // TokenRevoked: hex SHA-256 of the token
	Claims  any       // TokenClaimsChange: the new claim values (a JSON object)
	At      time.Time // event_timestamp, else the SET's iat
	Reason  string    // reason_admin (en), reason_user or the change type, for the audit line and the DISCONNECT
	Ignored bool      // an event type the broker does not act on
}

// SET is a verified Security Event Token's content.
type SET struct {
	ID       string // jti
	Issuer   string
	IssuedAt time.Time
	TxnID    string
	Events   []Event
}

// maxEvents bounds the events of one SET (RFC 8417 allows several; transmitters send one).
const maxEvents = 16

// errInvalidRequest marks a SET whose content does not conform (RFC 8935 "invalid_request").
var errInvalidRequest = errors.New("invalid_request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalidRequest, fmt.Sprintf(format, args...))
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// parseSET reads the claims of a verified SET (iss, aud and the signature already checked). It checks the shape
// RFC 8417 requires (jti, iat, events) and the events the broker acts on; an event type it does not know is kept
// with Ignored set.
func parseSET(claims map[string]any, now time.Time) (*SET, error) {
	s := &SET{}
	var ok bool
	if s.ID, ok = claims["jti"].(string); !ok || s.ID == "" || len(s.ID) > 256 {
		return nil, badRequest("jti missing or not a string of at most 256 bytes")
	}
	s.Issuer, _ = claims["iss"].(string)
	iat, ok := numericDate(claims["iat"])
	if !ok {
		return nil, badRequest("iat missing or not a NumericDate")
	}
	s.IssuedAt = iat
	if v, present := claims["txn"]; present {
		if s.TxnID, ok = v.(string); !ok {
			return nil, badRequest("txn is not a string")
		}
	}
	if v, present := claims["exp"]; present {
		// RFC 8417 leaves exp out of SETs; one that has it is refused once it has passed.
		if exp, ok := numericDate(v); !ok || !exp.After(now) {
			return nil, badRequest("exp present and not in the future")
		}
	}
	events, ok := claims["events"].(map[string]any)
	if !ok || len(events) == 0 {
		return nil, badRequest("events missing or not an object with at least one member")
	}
	if len(events) > maxEvents {
		return nil, badRequest("%d events, at most %d", len(events), maxEvents)
	}
	var top *Subject
	if v, present := claims["sub_id"]; present {
		sub, err := parseSubject(v)
		if err != nil {
			return nil, badRequest("sub_id: %v", err)
		}
		top = &sub
	}
	for typ, body := range events {
		payload, ok := body.(map[string]any)
		if !ok {
			return nil, badRequest("event %s: payload is not an object", typ)
		}
		ev, err := parseEvent(typ, payload, top, iat)
		if err != nil {
			return nil, badRequest("event %s: %v", typ, err)
		}
		s.Events = append(s.Events, ev)
	}
	return s, nil
}

// parseEvent reads one event's payload.
func parseEvent(typ string, p map[string]any, top *Subject, iat time.Time) (Event, error) {
	ev := Event{Type: typ, At: iat}
	switch typ {
	case SessionRevoked, CredentialChange, TokenClaimsChange, AccountDisabled, AccountPurged, TokenRevoked:
	default:
		ev.Ignored = true
		return ev, nil
	}
	if v, present := p["event_timestamp"]; present {
		at, ok := numericDate(v)
		if !ok {
			return ev, errors.New("event_timestamp is not a NumericDate")
		}
		ev.At = at
	}
	ev.Reason = reasonOf(p)
	if typ == TokenRevoked {
		h, _ := p["token_sha256"].(string)
		if !hexSHA256.MatchString(h) {
			return ev, errors.New("token_sha256 missing or not 64 lower-case hex digits")
		}
		ev.Token = h
		return ev, nil
	}
	switch v, present := p["subject"]; {
	case present:
		sub, err := parseSubject(v)
		if err != nil {
			return ev, fmt.Errorf("subject: %w", err)
		}
		ev.Subject = sub
	case top != nil:
		ev.Subject = *top
	default:
		return ev, errors.New("no subject (neither the event's subject nor the SET's sub_id)")
	}
	if typ == TokenClaimsChange {
		c, ok := p["claims"].(map[string]any)
		if !ok || len(c) == 0 {
			return ev, errors.New("claims missing or not a non-empty object")
		}
		ev.Claims = c
	}
	if typ == CredentialChange && ev.Reason == "" {
		ev.Reason, _ = p["change_type"].(string)
	}
	return ev, nil
}

// parseSubject reads a subject identifier of a format the broker matches sessions by.
func parseSubject(v any) (Subject, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Subject{}, errors.New("not an object")
	}
	format, _ := m["format"].(string)
	str := func(name string) (string, error) {
		s, ok := m[name].(string)
		if !ok || s == "" || len(s) > 1024 {
			return "", fmt.Errorf("format %s needs %s, a string of 1 to 1024 bytes", format, name)
		}
		return s, nil
	}
	var err error
	sub := Subject{Format: format}
	switch format {
	case FormatIssSub:
		if sub.Issuer, err = str("iss"); err == nil {
			sub.ID, err = str("sub")
		}
	case FormatOpaque:
		sub.ID, err = str("id")
	case FormatEmail:
		sub.ID, err = str("email")
	default:
		return Subject{}, fmt.Errorf("format %q not supported (iss_sub, opaque or email)", truncate(format, 64))
	}
	return sub, err
}

// reasonOf is the event's reason for people: reason_admin, else reason_user (CAEP: a string or an object of
// language tags, "en" preferred).
func reasonOf(p map[string]any) string {
	for _, name := range []string{"reason_admin", "reason_user"} {
		switch r := p[name].(type) {
		case string:
			return truncate(r, 200)
		case map[string]any:
			if en, ok := r["en"].(string); ok {
				return truncate(en, 200)
			}
			for _, v := range r {
				if s, ok := v.(string); ok {
					return truncate(s, 200)
				}
			}
		}
	}
	return ""
}

// numericDate reads a JSON number of seconds since the epoch (RFC 7519 §2).
func numericDate(v any) (time.Time, bool) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	if math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
