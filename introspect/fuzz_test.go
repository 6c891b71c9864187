package introspect

import (
	"context"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary strings to the full JWT validation (parse, header rules, key lookup, signature,
// claims) with keys from a file. It must never panic, must answer only *Error values of kind ErrInvalidToken, and
// must accept nothing but the tokens the issuer actually signed.
func FuzzParse(f *testing.F) {
	es := newECKey(f, "es", elliptic.P256(), "ES256")
	ed := newEdKey(f, "ed")
	file := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(file, keySetJSON(f, es, ed), 0o600); err != nil {
		f.Fatal(err)
	}
	const iss = "http://am.localtest.me:8080/am/oauth2"
	v, err := NewJWT(context.Background(), JWTConfig{Issuer: iss, JWKSFile: file, MinRefetchInterval: time.Hour,
		Audience: []string{"forgerock-iot-oauth2-client"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { v.Close() })
	claims := claimsFor(iss, "thing-1")
	claims["exp"] = time.Now().Add(24 * time.Hour).Unix()
	issued := map[string]bool{
		signJOSE(f, es, "JWT", claims):    true,
		signJOSE(f, ed, "at+jwt", claims): true,
	}
	for tok := range issued {
		f.Add(tok)
		f.Add(strings.TrimSuffix(tok, tok[strings.LastIndexByte(tok, '.'):]) + ".")
		f.Add(replacePart(tok, 0, enc(`{"alg":"none"}`)))
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add("a.b.c.d.e")
	f.Add(enc(`{"alg":"ES256","kid":"es","kid":"ed"}`) + "." + enc(`{}`) + ".AA")
	f.Add(enc(`{"alg":"ES256","kid":"es"}`) + "." + enc(`{"sub":"a","sub":"b"}`) + ".AA")
	f.Add(enc(`{"alg":"ES256","kid":"es","crit":["x"]}`) + "." + enc(`[]`) + ".AA")
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := v.Validate(context.Background(), token)
		if err == nil {
			if tok == nil || !issued[token] {
				t.Fatalf("accepted a token the issuer never signed: %q", token)
			}
			return
		}
		if tok != nil {
			t.Fatal("token returned with an error")
		}
		var e *Error
		if !errors.As(err, &e) || e.Kind != ErrInvalidToken || e.Reason == "" {
			t.Fatalf("error %v is not an ErrInvalidToken *Error", err)
		}
		if len(token) >= 32 && strings.Contains(err.Error(), token) {
			t.Fatal("error message contains the token")
		}
	})
}

// FuzzStrictJSON checks the strict decoder against encoding/json both ways: whatever it accepts decodes to the
// same value with encoding/json, and whatever it rejects is refused by encoding/json too, unless the rejection is
// one of its own strict rules (duplicate member, depth, UTF-8, not an object).
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"\u0061":1,"a":2}`,
		`{"a":1}x`, `[1]`, `{"a":"\ud800"}`, `{"a":1e999}`, `{"a":"\ud83d\ude00\ud800\u0041"}`, `{"a":-0.5e+3}`,
		` {"a" : [ true , false , null ] } `, `{"a":"\"\\\/\b\f\n\r\t"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeStrictObject(data)
		if err != nil {
			for _, strict := range []error{errDuplicateMember, errTooDeep, errInvalidUTF8, errNotObject} {
				if errors.Is(err, strict) {
					return
				}
			}
			var ref map[string]any
			if json.Unmarshal(data, &ref) == nil {
				t.Fatalf("rejected JSON encoding/json decodes: %v", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		var ref map[string]any
		if err := json.Unmarshal(data, &ref); err != nil {
			t.Fatalf("encoding/json refuses what the strict decoder accepted: %v", err)
		}
		a, _ := json.Marshal(m)
		b, _ := json.Marshal(ref)
		if string(a) != string(b) {
			t.Fatalf("decoded differently: %s vs %s", a, b)
		}
	})
}

// FuzzIntrospectionAnswer feeds arbitrary bodies through the introspection answer checks: no panic, and a Token
// only for an answer that says active: true.
func FuzzIntrospectionAnswer(f *testing.F) {
	in := &Introspector{cfg: IntrospectionConfig{Leeway: DefaultLeeway, Now: time.Now}}
	for _, s := range []string{`{"active":true,"sub":"(usr!a)","scope":"x y","exp":9999999999}`, `{"active":false}`,
		`{"active":"true"}`, `{"active":true,"sub":"a","scope":[1]}`, `{"active":true,"sub":"a","cnf":{"jwk":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		claims, err := decodeStrictObject(body)
		if err != nil {
			return
		}
		tok, err := in.checkAnswer(claims)
		if err == nil && (tok == nil || claims["active"] != true || tok.Subject == "") {
			t.Fatalf("accepted %q", body)
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
