package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseToken(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		name, body string
		scopes     []string
		expiry     time.Time
		wantErr    bool
	}{
		{"string scope", `{"access_token":"a","scope":"publish subscribe","expires_in":3599}`, []string{"publish", "subscribe"}, now.Add(3599 * time.Second), false},
		{"array scope", `{"access_token":"a","scope":["publish"],"expires_in":10}`, []string{"publish"}, now.Add(10 * time.Second), false},
		{"no expiry", `{"access_token":"a"}`, nil, time.Time{}, false},
		{"no access token", `{"scope":"x"}`, nil, time.Time{}, true},
		{"negative expiry", `{"access_token":"a","expires_in":-1}`, nil, time.Time{}, true},
		{"not json", `<html>`, nil, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := parseToken("test", []byte(tt.body), now)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if err == nil && (!slices.Equal(tok.Scopes, tt.scopes) || !tok.Expiry.Equal(tt.expiry)) {
				t.Fatalf("token %+v", tok)
			}
		})
	}
}

func TestAPIErrorMatching(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   error
	}{
		{403, `{"code":403,"reason":"Forbidden","message":"pending","detail":{"error":"authorization_pending"}}`, ErrAuthorizationPending},
		{403, `{"code":403,"detail":{"error":"slow_down"}}`, ErrSlowDown},
		{403, `{"code":403,"detail":{"error":"authorization_declined"}}`, ErrAuthorizationDeclined},
		{400, `{"code":400,"detail":{"error":"expired_token"}}`, ErrExpiredToken},
		{400, `{"error":"invalid_grant","error_description":"not yours"}`, ErrInvalidGrant},
		{400, `{"code":400,"message":"Unknown/invalid scope(s): [delete]"}`, ErrInvalidScope},
		{401, `{"code":401,"message":"Access Denied"}`, ErrUnauthorized},
		{403, `{"code":403,"message":"bad signature"}`, ErrForbidden},
	}
	for _, tt := range tests {
		err := error(newAPIError("op", tt.status, []byte(tt.body)))
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: does not match %v", tt.body, tt.want)
		}
		if tt.want != ErrForbidden && errors.Is(err, ErrForbidden) {
			t.Errorf("%s: an OAuth error is not a plain 403", tt.body)
		}
	}
}

func TestCallbackEchoKeepsUnknownFields(t *testing.T) {
	in := `{"authId":"x","callbacks":[{"type":"HiddenValueCallback","output":[{"name":"value","value":"n"},{"name":"id","value":"jwt-pop-authentication"}],"input":[{"name":"IDToken1","value":"jwt-pop-authentication"}],"_id":7}]}`
	var p authPayload
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	p.Callbacks[0].SetInput("jwt")
	out, _ := json.Marshal(p)
	var back map[string]any
	_ = json.Unmarshal(out, &back)
	cb := back["callbacks"].([]any)[0].(map[string]any)
	if cb["_id"] != float64(7) || cb["input"].([]any)[0].(map[string]any)["value"] != "jwt" || back["authId"] != "x" {
		t.Fatalf("echo %s", out)
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add([]byte(`{"access_token":"a","scope":"publish","expires_in":3599,"refresh_token":"r"}`))
	f.Add([]byte(`{"access_token":"a","scope":["x",1],"expires_in":1e3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseToken("fuzz", data, time.Now())
		if err == nil && tok.AccessToken == "" {
			t.Fatal("token without access token")
		}
	})
}

func FuzzParseAttributes(f *testing.F) {
	f.Add([]byte(`{"_id":"t","thingType":["device"],"thingConfig":"x","n":null,"o":{"a":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseAttributes(data)
		if err == nil && a.Values == nil {
			t.Fatal("nil values")
		}
	})
}

func FuzzParseIntrospection(f *testing.F) {
	f.Add([]byte(`{"active":true,"scope":"a b","sub":"(usr!t)","subname":"t","exp":1700000000}`))
	f.Add([]byte(`{"active":false}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := parseIntrospection(data)
		if err == nil {
			_ = in.SubjectName()
		}
	})
}

func FuzzAuthPayload(f *testing.F) {
	f.Add([]byte(`{"authId":"x","callbacks":[{"type":"HiddenValueCallback","output":[{"name":"id","value":"client_assertion"}],"input":[{"name":"IDToken1","value":""}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p authPayload
		if json.Unmarshal(data, &p) != nil {
			return
		}
		for i := range p.Callbacks {
			_ = p.Callbacks[i].ID()
			_ = p.Callbacks[i].Challenge()
		}
		if _, err := json.Marshal(p); err != nil {
			t.Fatalf("cannot echo what was parsed: %v", err)
		}
	})
}

func FuzzAPIError(f *testing.F) {
	f.Add(403, []byte(`{"detail":{"error":"slow_down"}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := newAPIError("fuzz", status, body)
		_ = e.Error()
		_ = errors.Is(e, ErrInvalidScope)
	})
}

func TestTokenNeverPrintsSecrets(t *testing.T) {
	tok := Token{AccessToken: "secret-access", RefreshToken: "secret-refresh", Scopes: []string{"publish"}}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("token", "tok", tok, "ptr", &tok)
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v", &tok, tok, tok), logged.String()} {
		if strings.Contains(s, "secret") {
			t.Fatalf("secret printed: %s", s)
		}
	}
}
