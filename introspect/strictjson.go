package introspect

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Errors of the strict decoder that are not plain syntax errors.
var (
	// errDuplicateMember marks a JSON object that names a member twice. Parsers disagree on which value wins, so
	// a token carrying two "alg" or two "sub" values could mean one thing here and another elsewhere: reject it.
	errDuplicateMember = errors.New("duplicate member")
	errTooDeep         = errors.New("JSON nested too deeply")
	errInvalidUTF8     = errors.New("invalid UTF-8")
	errNotObject       = errors.New("not a JSON object")
)

// maxJSONDepth bounds nesting in tokens and introspection answers; real claims nest two or three levels.
const maxJSONDepth = 32

// decodeStrictObject decodes a JSON object (RFC 8259) into the values encoding/json produces for an any (string,
// float64, bool, nil, []any, map[string]any), and rejects what encoding/json lets through: duplicate member names
// (compared after unescaping, so "a" and "\u0061" collide), invalid UTF-8, nesting deeper than maxJSONDepth.
// encoding/json's struct decoding also matches names case-insensitively, which is why headers and claims are read
// from this exact-key map. It is a small recursive-descent parser rather than json.Decoder.Token because the
// token API costs about as much as an ECDSA verification on a typical access token; FuzzStrictJSON checks it
// against encoding/json.
func decodeStrictObject(data []byte) (map[string]any, error) {
	if !utf8.Valid(data) {
		return nil, errInvalidUTF8
	}
	p := jsonParser{data: data}
	p.skipSpace()
	if p.pos >= len(data) || data[p.pos] != '{' {
		return nil, errNotObject
	}
	m, err := p.object(1)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(data) {
		return nil, p.syntaxError("data after the JSON object")
	}
	return m, nil
}

// jsonParser reads one JSON text.
type jsonParser struct {
	data []byte
	pos  int
}

func (p *jsonParser) syntaxError(msg string) error {
	return fmt.Errorf("JSON syntax error at offset %d: %s", p.pos, msg)
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value reads any value at nesting depth.
func (p *jsonParser) value(depth int) (any, error) {
	p.skipSpace()
	if p.pos >= len(p.data) {
		return nil, p.syntaxError("unexpected end")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		return p.string()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return nil, p.syntaxError("unexpected character")
}

// object reads an object; p.pos is at '{'.
func (p *jsonParser) object(depth int) (map[string]any, error) {
	if depth > maxJSONDepth {
		return nil, errTooDeep
	}
	p.pos++
	m := make(map[string]any, 8)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return m, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.syntaxError("expected a member name")
		}
		name, err := p.string()
		if err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("%w %q", errDuplicateMember, truncate(name, 32))
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.syntaxError("expected ':'")
		}
		p.pos++
		if m[name], err = p.value(depth); err != nil {
			return nil, err
		}
		if done, err := p.next('}'); done || err != nil {
			return m, err
		}
	}
}

// array reads an array; p.pos is at '['.
func (p *jsonParser) array(depth int) ([]any, error) {
	if depth > maxJSONDepth {
		return nil, errTooDeep
	}
	p.pos++
	a := make([]any, 0, 4)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return a, nil
	}
	for {
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		if done, err := p.next(']'); done || err != nil {
			return a, err
		}
	}
}

// next consumes the ',' before another element, or the closing delimiter (reporting done).
func (p *jsonParser) next(closing byte) (done bool, err error) {
	p.skipSpace()
	if p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ',':
			p.pos++
			return false, nil
		case closing:
			p.pos++
			return true, nil
		}
	}
	return false, p.syntaxError("expected ',' or '" + string(closing) + "'")
}

// literal consumes true, false or null.
func (p *jsonParser) literal(word string) error {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.syntaxError("invalid literal")
	}
	p.pos += len(word)
	return nil
}

// number reads a number with the RFC 8259 grammar, as a float64 like encoding/json.
func (p *jsonParser) number() (float64, error) {
	start := p.pos
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.data[p.pos] == '-' {
		p.pos++
	}
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return 0, p.syntaxError("invalid number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return 0, p.syntaxError("invalid number")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return 0, p.syntaxError("invalid number")
		}
	}
	f, err := strconv.ParseFloat(string(p.data[start:p.pos]), 64)
	if err != nil {
		return 0, p.syntaxError("number out of range")
	}
	return f, nil
}

// string reads a string; p.pos is at the opening quote.
func (p *jsonParser) string() (string, error) {
	p.pos++
	start := p.pos
	for p.pos < len(p.data) { // fast path: no escapes
		switch c := p.data[p.pos]; {
		case c == '"':
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		case c == '\\':
			return p.escapedString(start)
		case c < 0x20:
			return "", p.syntaxError("control character in string")
		}
		p.pos++
	}
	return "", p.syntaxError("unterminated string")
}

// escapedString continues a string with escapes from p.pos; start is where its content began.
func (p *jsonParser) escapedString(start int) (string, error) {
	var b strings.Builder
	b.Write(p.data[start:p.pos])
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c < 0x20:
			return "", p.syntaxError("control character in string")
		case c != '\\':
			b.WriteByte(c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.data) {
			break
		}
		p.pos += 2
		switch e := p.data[p.pos-1]; e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.syntaxError("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// Like encoding/json: a valid pair is one rune, anything else becomes U+FFFD.
				high, save := r, p.pos
				r = utf8.RuneError
				if p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
					p.pos += 2
					if low, ok := p.hex4(); ok {
						if dec := utf16.DecodeRune(high, low); dec != utf8.RuneError {
							r, save = dec, p.pos
						}
					}
				}
				p.pos = save
			}
			b.WriteRune(r)
		default:
			return "", p.syntaxError("invalid escape")
		}
	}
	return "", p.syntaxError("unterminated string")
}

// hex4 reads four hex digits.
func (p *jsonParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.data) {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// truncate shortens issuer-controlled text before it goes into an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
