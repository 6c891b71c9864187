package sdk

import (
	"net/http"
	"slices"
	"testing"
)

func TestEndpointsFromInfo(t *testing.T) {
	for _, realm := range []string{"/", "/a/b", "alias-x", ""} {
		c := &Client{ep: endpoints{base: "http://am.test/am", realm: realm}, realm: realm}
		ep, err := endpointsFromInfo(c.AMInfo())
		if err != nil {
			t.Fatalf("realm %q: %v", realm, err)
		}
		for _, action := range []string{"get_access_token", "get_user_code", "introspect_token"} {
			if got, want := ep.thingsAction(action), c.ep.thingsAction(action); got != want {
				t.Errorf("realm %q: %s URL %q, want %q (signed aud must match AM's byte for byte)", realm, action, got, want)
			}
		}
	}
	if _, err := endpointsFromInfo(AMInfo{SessionValidateURL: "http://x/other"}); err == nil {
		t.Error("foreign SessionValidateURL accepted")
	}
}

func TestRouteFor(t *testing.T) {
	base := "http://am.test/am"
	tests := []struct {
		name    string
		r       httpRequest
		path    string
		queries []string
		format  uint16
	}{
		{"authenticate", httpRequest{url: base + "/json/authenticate?authIndexType=service&authIndexValue=t", body: []byte(`{}`)}, "/authenticate", nil, 50},
		{"access token JOSE", httpRequest{url: base + "/json/things/*?_action=get_access_token&realm=/", contentType: contentJOSE, body: []byte("a.b.c")}, "/accesstoken", nil, 11650},
		{"user token JSON", httpRequest{url: base + "/json/things/*?_action=get_user_token", contentType: contentJSON, body: []byte(`{}`), ssoToken: "s"}, "/usertoken", nil, 50},
		{"attributes", httpRequest{method: http.MethodGet, url: base + "/json/things/*?realm=/&_fields=a,b", ssoToken: "s"}, "/attributes", []string{"a", "b"}, 50},
		{"logout", httpRequest{url: base + "/json/sessions?_action=logout", ssoToken: "s"}, "/session", []string{"_action=logout"}, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := routeFor(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if rt.path != tt.path || !slices.Equal(rt.queries, tt.queries) || uint16(rt.format) != tt.format {
				t.Fatalf("route %+v", rt)
			}
		})
	}
	if _, err := routeFor(httpRequest{url: base + "/json/things/*?_action=delete"}); err == nil {
		t.Error("unknown things action routed")
	}
}

func FuzzEndpointsFromInfo(f *testing.F) {
	f.Add("/", "http://am/json/things/*?_action=get_access_token&realm=/", "http://am/json/sessions?_action=validate")
	f.Fuzz(func(t *testing.T, realm, access, validate string) {
		ep, err := endpointsFromInfo(AMInfo{Realm: realm, AccessTokenURL: access, SessionValidateURL: validate})
		if err == nil && ep.thingsAction("get_access_token") != access {
			t.Fatalf("endpoints do not reproduce AccessTokenURL %q", access)
		}
	})
}
