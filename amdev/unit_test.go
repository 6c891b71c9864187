package amdev

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestParseAPIVersion(t *testing.T) {
	cases := []struct{ in, protocol, resource string }{
		{"protocol=1.0,resource=2.1", "1.0", "2.1"},
		{"resource=2.0, protocol=1.0", "1.0", "2.0"},
		{" resource = 4.0 ", "", "4.0"},
		{"garbage", "", ""},
		{"", "", ""},
	}
	for _, c := range cases {
		v := parseAPIVersion(c.in)
		if v.protocol != c.protocol || v.resource != c.resource || v.raw != c.in {
			t.Errorf("%q: %+v", c.in, v)
		}
	}
}

func TestRealmForms(t *testing.T) {
	for in, want := range map[string]string{"/": "/", "": "/", "/a/b": "/a/b", "a/b/": "/a/b", "//a": "/a"} {
		if got, err := normalizeRealmPath(in); err != nil || got != want {
			t.Errorf("normalize %q = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"/a/../b", "/a*", "/a b"} {
		if _, err := normalizeRealmPath(bad); err == nil {
			t.Errorf("normalize %q accepted", bad)
		}
	}
	cases := []struct {
		segs  []string
		realm string
		rest  []string
		ok    bool
	}{
		{[]string{"users", "x"}, "/", []string{"users", "x"}, true},
		{[]string{"realms", "root", "users", "x"}, "/", []string{"users", "x"}, true},
		{[]string{"realms", "root", "realms", "a", "realms", "b", "authenticate"}, "/a/b", []string{"authenticate"}, true},
		{[]string{"realms", "root", "realms", "", "x"}, "", nil, false},
	}
	for _, c := range cases {
		realm, rest, ok := splitRealmPath(c.segs)
		if ok != c.ok || realm != c.realm || !slices.Equal(rest, c.rest) {
			t.Errorf("%v: %q %v %v", c.segs, realm, rest, ok)
		}
	}
	if got := realmURLPath("/a/b"); got != "/realms/root/realms/a/realms/b" {
		t.Errorf("realmURLPath: %s", got)
	}
}

func TestRecovererAnswersCREST(t *testing.T) {
	s := &Server{log: discard()}
	h := s.recoverer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 500 || !slices.Contains([]string{`{"code":500,"message":"Internal Server Error","reason":"Internal Server Error"}` + "\n"}, w.Body.String()) {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
}
