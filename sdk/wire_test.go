package sdk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordedRequest is what the recording server saw of one request.
type recordedRequest struct {
	method, uri, api, contentType, cookie string
	header                                map[string]any
	payload                               map[string]any
}

// recorder is an HTTP server that answers like AM for one PoP thing and records every request, to
// check the wire format byte for byte (aud, api, nonce sequence, raw realm, GET with a body).
type recorder struct {
	mu       sync.Mutex
	requests []recordedRequest
	// fail401 makes the next things call answer 401 and validate say "not valid".
	fail401 bool
	logins  int
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rr := recordedRequest{method: r.Method, uri: r.URL.RequestURI(), api: r.Header.Get("Accept-API-Version"),
		contentType: r.Header.Get("Content-Type")}
	if c, err := r.Cookie("amCookie"); err == nil {
		rr.cookie = c.Value
	}
	if rr.contentType == contentJOSE {
		parts := strings.Split(string(body), ".")
		if len(parts) == 3 {
			hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
			pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
			_ = json.Unmarshal(hb, &rr.header)
			_ = json.Unmarshal(pb, &rr.payload)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.requests = append(rec.requests, rr)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(r.URL.Path, "/am/json/serverinfo/"):
		_, _ = io.WriteString(w, `{"cookieName":"amCookie"}`)
	case r.URL.Path == "/am/json/authenticate":
		var p authPayload
		_ = json.Unmarshal(body, &p)
		if p.AuthID == "" {
			_, _ = io.WriteString(w, `{"authId":"a1","callbacks":[{"type":"HiddenValueCallback","output":[{"name":"value","value":"nonce-1"},{"name":"id","value":"jwt-pop-authentication"}],"input":[{"name":"IDToken1","value":"jwt-pop-authentication"}],"_id":0}]}`)
			return
		}
		rec.logins++
		_, _ = io.WriteString(w, `{"tokenId":"sso-`+string(rune('0'+rec.logins))+`","successUrl":"/am/console","realm":"/a/b"}`)
	case r.URL.Path == "/am/json/sessions":
		if rec.fail401 {
			rec.fail401 = false
			_, _ = io.WriteString(w, `{"valid":false}`)
			return
		}
		_, _ = io.WriteString(w, `{"valid":true}`)
	case r.URL.Path == "/am/json/things/*" && r.Method == http.MethodGet:
		_, _ = io.WriteString(w, `{"_id":"rec-thing","thingType":["device"],"thingConfig":"host=a;port=1"}`)
	case r.URL.Path == "/am/json/things/*":
		if rec.fail401 {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"code":401,"reason":"Unauthorized","message":"Access Denied"}`)
			return
		}
		_, _ = io.WriteString(w, `{"access_token":"at","refresh_token":"rt","scope":"publish","token_type":"Bearer","expires_in":3599}`)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (rec *recorder) take() []recordedRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.requests
	rec.requests = nil
	return out
}

func TestSignedRequestsOnTheWire(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := NewClient(ctx, Config{BaseURL: srv.URL + "/am/", Realm: "/a/b"})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := GenerateKey(ES256)
	thing := c.NewThing("auth-tree", &Authenticator{ThingID: "rec-thing", Key: key})
	if _, err := thing.AccessToken(ctx, "publish"); err != nil {
		t.Fatal(err)
	}
	if _, err := thing.Attributes(ctx, "thingType", "thingConfig"); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.fail401 = true // the session dies: the next call gets 401, validate says not valid
	rec.mu.Unlock()
	if _, err := thing.AccessToken(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := rec.take()
	want := []struct {
		method, uri, api string
		nonce            float64 // -1: not signed
		sso              string
	}{
		{"GET", "/am/json/serverinfo/*?_fields=cookieName", "resource=1.1", -1, ""},
		{"GET", "/am/oauth2/.well-known/openid-configuration?realm=/a/b", "", -1, ""},
		{"POST", "/am/json/authenticate?authIndexType=service&authIndexValue=auth-tree&realm=%2Fa%2Fb", "protocol=1.0,resource=2.1", -1, ""},
		{"POST", "/am/json/authenticate?authIndexType=service&authIndexValue=auth-tree&realm=%2Fa%2Fb", "protocol=1.0,resource=2.1", -1, ""},
		{"POST", "/am/json/things/*?_action=get_access_token&realm=/a/b", "protocol=2.0,resource=1.0", 0, "sso-1"},
		{"GET", "/am/json/things/*?realm=/a/b&_fields=thingType,thingConfig", "protocol=2.0,resource=1.0", 1, "sso-1"},
		{"POST", "/am/json/things/*?_action=get_access_token&realm=/a/b", "protocol=2.0,resource=1.0", 2, "sso-1"},
		{"POST", "/am/json/sessions?_action=validate", "resource=4.0", 3, "sso-1"},
		{"POST", "/am/json/authenticate?authIndexType=service&authIndexValue=auth-tree&realm=%2Fa%2Fb", "protocol=1.0,resource=2.1", -1, ""},
		{"POST", "/am/json/authenticate?authIndexType=service&authIndexValue=auth-tree&realm=%2Fa%2Fb", "protocol=1.0,resource=2.1", -1, ""},
		{"POST", "/am/json/things/*?_action=get_access_token&realm=/a/b", "protocol=2.0,resource=1.0", 0, "sso-2"},
	}
	if len(reqs) != len(want) {
		for _, r := range reqs {
			t.Logf("%s %s", r.method, r.uri)
		}
		t.Fatalf("%d requests, want %d", len(reqs), len(want))
	}
	for i, w := range want {
		r := reqs[i]
		if r.method != w.method || r.uri != w.uri || r.api != w.api {
			t.Errorf("request %d: %s %s api=%q, want %s %s api=%q", i, r.method, r.uri, r.api, w.method, w.uri, w.api)
			continue
		}
		if w.nonce < 0 {
			continue
		}
		if r.contentType != contentJOSE || r.cookie != w.sso {
			t.Errorf("request %d: content type %q cookie %q", i, r.contentType, r.cookie)
		}
		if r.header["nonce"] != w.nonce || r.header["aud"] != srv.URL+w.uri || r.header["api"] != w.api || r.header["kid"] != nil {
			t.Errorf("request %d: header %v", i, r.header)
		}
		if r.payload["csrf"] != w.sso {
			t.Errorf("request %d: payload %v", i, r.payload)
		}
	}
	if scope, _ := reqs[4].payload["scope"].([]any); len(scope) != 1 || scope[0] != "publish" {
		t.Errorf("scope %v", reqs[4].payload["scope"])
	}
}
