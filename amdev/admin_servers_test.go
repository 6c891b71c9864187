package amdev

import (
	"strings"
	"testing"
)

// TestServersAdminREST: of AM's server configuration amdev answers what
// is true of it (one server at its base URL, its cookie) and refuses
// every change and every other section with 501 saying why.
func TestServersAdminREST(t *testing.T) {
	e := startEnv(t)
	h := crestHeaders(e.adminToken(), "protocol=1.0,resource=1.0")
	servers := e.srv.URL() + "/json/global-config/servers"

	status, q := e.call("GET", servers+"?_queryFilter=true", h, "")
	if status != 200 || q["resultCount"] != float64(1) {
		t.Fatalf("query servers: %d %v", status, q)
	}
	if s := q["result"].([]any)[0].(map[string]any); s["_id"] != "01" || s["url"] != e.srv.URL() {
		t.Fatalf("server list: %v", s)
	}
	if status, s := e.call("GET", servers+"/01", h, ""); status != 200 || s["url"] != e.srv.URL() || s["_rev"] == nil {
		t.Fatalf("read server 01: %d %v", status, s)
	}
	for _, id := range []string{"01", "server-default"} {
		status, p := e.call("GET", servers+"/"+id+"/properties/security", h, "")
		cookie, _ := p["amconfig.header.cookie"].(map[string]any)
		if status != 200 || cookie["com.iplanet.am.cookie.name"] != e.srv.Settings().CookieName || cookie["com.iplanet.am.cookie.secure"] != false {
			t.Fatalf("%s security properties: %d %v", id, status, p)
		}
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		msg                string
	}{
		{"PUT", "/01/properties/security", `{"amconfig.header.cookie": {"com.iplanet.am.cookie.name": "other"}}`, 501, "config file"},
		{"PUT", "/server-default/properties/advanced", `{"com.sun.identity.authentication.client.ipAddressHeader": "X-Forwarded-For"}`, 501, "config file"},
		{"POST", "?_action=create", `{"url": "http://am2.example.com:8080/am"}`, 501, "one server"},
		{"DELETE", "/01", "", 501, "one server"},
		{"GET", "/01/properties/cts", "", 501, "only the cookie"},
		{"GET", "/02", "", 404, "amdev is server 01"},
		{"GET", "?_queryFilter=url+eq+%22x%22", "", 501, "Query not supported"},
	} {
		status, body := e.call(tc.method, servers+tc.path, h, tc.body)
		if msg, _ := body["message"].(string); status != tc.status || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, status, body)
		}
	}
	if status, body := e.call("GET", servers+"/01", nil, ""); status != 401 {
		t.Fatalf("without a session: %d %v", status, body)
	}
	if got := e.srv.Settings().CookieName; got != "iPlanetDirectoryPro" {
		t.Fatalf("a refused PUT changed the cookie name: %s", got)
	}
}
