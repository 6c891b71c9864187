package httpdoor

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/paho"
)

// Request headers that carry MQTT 5 PUBLISH properties (docs/http.md). Content-Type is HTTP's own.
const (
	HeaderMessageExpiry   = "MQTT-Message-Expiry"   // seconds, 0..4294967295
	HeaderResponseTopic   = "MQTT-Response-Topic"   // a topic name, no wildcards
	HeaderCorrelationData = "MQTT-Correlation-Data" // base64 (RFC 4648 §4, padding optional)
	HeaderUserProperty    = "MQTT-User-Property"    // key=value, percent-encoded; one header line each
	HeaderPayloadFormat   = "MQTT-Payload-Format"   // "utf-8" (indicator 1) or "bytes" (0)
)

// maxUserProperties bounds the user properties of one request; more are a 400.
const maxUserProperties = 32

// errBadHeader is a header the door cannot turn into an MQTT property.
var errBadHeader = errors.New("bad header")

// publishOptions are what a POST's query string says: qos 0 or 1 (default 1, so that the broker's
// verdict reaches the caller) and retain.
type publishOptions struct {
	qos    byte
	retain bool
}

// parseQuery reads ?qos=0|1&retain=true|false; anything else is refused so that a typo is not a
// silent default.
func parseQuery(q url.Values) (publishOptions, error) {
	o := publishOptions{qos: 1}
	for k, vs := range q {
		if len(vs) != 1 {
			return o, fmt.Errorf("query %s given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "qos":
			switch v {
			case "0":
				o.qos = 0
			case "1":
				o.qos = 1
			default:
				return o, fmt.Errorf("qos=%q: want 0 or 1", v)
			}
		case "retain":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("retain=%q: want true or false", v)
			}
			o.retain = b
		default:
			return o, fmt.Errorf("unknown query parameter %q: want qos and retain", k)
		}
	}
	return o, nil
}

// mqttString reports whether s may be an MQTT UTF-8 string (§1.5.4): valid UTF-8, no U+0000, at
// most 65535 bytes.
func mqttString(s string) bool {
	return len(s) <= 65535 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// checkTopicName refuses what cannot be an MQTT topic name to publish to.
func checkTopicName(what, t string) error {
	switch {
	case t == "":
		return fmt.Errorf("%s is empty", what)
	case strings.ContainsAny(t, "+#"):
		return fmt.Errorf("%s %q has a wildcard (+ or #): publish to one topic, subscribe with GET", what, t)
	case !mqttString(t):
		return fmt.Errorf("%s is not an MQTT string (valid UTF-8 without NUL, at most 65535 bytes)", what)
	}
	return nil
}

// parseProperties turns the request headers into MQTT 5 PUBLISH properties.
func parseProperties(h http.Header) (*paho.PublishProperties, error) {
	p := &paho.PublishProperties{}
	if v := h.Values("Content-Type"); len(v) > 0 {
		if len(v) > 1 || !mqttString(v[0]) {
			return nil, fmt.Errorf("%w: Content-Type: want one value", errBadHeader)
		}
		p.ContentType = v[0]
	}
	if v, err := single(h, HeaderMessageExpiry); err != nil {
		return nil, err
	} else if v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %q: want seconds, 0 to 4294967295", errBadHeader, HeaderMessageExpiry, v)
		}
		e := uint32(n)
		p.MessageExpiry = &e
	}
	if v, err := single(h, HeaderResponseTopic); err != nil {
		return nil, err
	} else if v != "" {
		if err := checkTopicName(HeaderResponseTopic, v); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadHeader, err)
		}
		p.ResponseTopic = v
	}
	if v, err := single(h, HeaderCorrelationData); err != nil {
		return nil, err
	} else if v != "" {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "="))
		if err != nil || len(b) > 65535 {
			return nil, fmt.Errorf("%w: %s: want base64 of at most 65535 bytes", errBadHeader, HeaderCorrelationData)
		}
		p.CorrelationData = b
	}
	if v, err := single(h, HeaderPayloadFormat); err != nil {
		return nil, err
	} else if v != "" {
		var f byte
		switch strings.ToLower(v) {
		case "utf-8", "utf8", "1":
			f = 1
		case "bytes", "0":
		default:
			return nil, fmt.Errorf("%w: %s %q: want utf-8 or bytes", errBadHeader, HeaderPayloadFormat, v)
		}
		p.PayloadFormat = &f
	}
	ups := h.Values(HeaderUserProperty)
	if len(ups) > maxUserProperties {
		return nil, fmt.Errorf("%w: %d %s headers: at most %d", errBadHeader, len(ups), HeaderUserProperty, maxUserProperties)
	}
	for _, up := range ups {
		k, v, ok := strings.Cut(up, "=")
		key, err1 := url.PathUnescape(strings.TrimSpace(k))
		val, err2 := url.PathUnescape(strings.TrimSpace(v))
		if !ok || key == "" || err1 != nil || err2 != nil || !mqttString(key) || !mqttString(val) {
			return nil, fmt.Errorf("%w: %s %q: want key=value, percent-encoded UTF-8", errBadHeader, HeaderUserProperty, up)
		}
		p.User = append(p.User, paho.UserProperty{Key: key, Value: val})
	}
	return p, nil
}

// single is the one value of header name ("" when absent); a repeated header is refused.
func single(h http.Header, name string) (string, error) {
	v := h.Values(name)
	switch len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	}
	return "", fmt.Errorf("%w: %s given %d times", errBadHeader, name, len(v))
}

// packetSize is an upper bound of the PUBLISH packet's size on the wire (MQTT 5 §3.3), to answer
// 413 before the broker's Maximum Packet Size closes the connection.
func packetSize(topic string, p *paho.PublishProperties, payload int) int {
	n := 5 + 2 + len(topic) + 2 + 4 + payload // fixed header, topic, packet id, property length
	if p == nil {
		return n
	}
	if p.ContentType != "" {
		n += 3 + len(p.ContentType)
	}
	if p.ResponseTopic != "" {
		n += 3 + len(p.ResponseTopic)
	}
	if p.CorrelationData != nil {
		n += 3 + len(p.CorrelationData)
	}
	if p.MessageExpiry != nil {
		n += 5
	}
	if p.PayloadFormat != nil {
		n += 2
	}
	for _, u := range p.User {
		n += 5 + len(u.Key) + len(u.Value)
	}
	return n
}

// bearerToken reads the access token of an Authorization header (RFC 6750 §2.1; the scheme is
// case-insensitive) or of the DPoP scheme (RFC 9449 §7.1). ok is false when there is none.
func bearerToken(h http.Header) (scheme, token string, ok bool, err error) {
	vs := h.Values("Authorization")
	if len(vs) == 0 {
		return "", "", false, nil
	}
	if len(vs) > 1 {
		return "", "", false, errors.New("more than one Authorization header")
	}
	scheme, token, found := strings.Cut(vs[0], " ")
	scheme = strings.ToLower(scheme)
	if !found || (scheme != "bearer" && scheme != "dpop") {
		return "", "", false, errors.New("want Authorization: Bearer <token>")
	}
	token = strings.TrimLeft(token, " ")
	if !b64token(token) {
		return "", "", false, errors.New("the token is not a b64token (RFC 6750 §2.1)")
	}
	return scheme, token, true, nil
}

// b64token reports whether s is 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func b64token(s string) bool {
	t := strings.TrimRight(s, "=")
	if t == "" || len(s) > 16<<10 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
		default:
			return false
		}
	}
	return true
}
