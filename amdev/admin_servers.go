package amdev

import (
	"net/http"
	"strings"
)

// amdev is one server: AM's server id 01 at the base URL. Its properties
// come from the config file (cookieName) and the base URL, not from AM's
// server configuration, so they are read-only here.
const (
	serverID        = "01"
	serverDefaultID = "server-default"
)

// handleServers serves the part of AM's global-config/servers that says
// something true of amdev, for amAdmin: the server list (one server, at
// the base URL), the server, and its security properties (the cookie,
// whose name and Secure flag amdev takes from its config file and base
// URL), also under server-default. A change, and every other section, is
// 501 saying where amdev takes the setting from: a server property that
// automation set and amdev silently ignored would be a lie.
func (s *Server) handleServers(w http.ResponseWriter, r *http.Request, segs []string) error {
	if err := checkResource(r, "1"); err != nil {
		return err
	}
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	if r.Method != http.MethodGet {
		return errorf(http.StatusNotImplemented,
			"amdev does not serve %s %s: amdev is one server (%s at %s) whose properties come from its config file (cookieName) and "+
				"--base-url, not from AM's server configuration (see docs/amdev.md)", r.Method, r.URL.Path, serverID, s.baseURL)
	}
	server := map[string]any{"_id": serverID, "url": s.baseURL, "siteName": nil}
	switch {
	case len(segs) == 0:
		if f := r.URL.Query().Get("_queryFilter"); f != "true" {
			return errorf(http.StatusNotImplemented, "Query not supported: %s", f)
		}
		writeJSON(w, http.StatusOK, queryResponse([]map[string]any{withRevision(server)}))
		return nil
	case segs[0] != serverID && segs[0] != serverDefaultID:
		return errorf(http.StatusNotFound, "Server %s not found: amdev is server %s", quote(segs[0]), serverID)
	case len(segs) == 1 && segs[0] == serverID:
		writeResource(w, http.StatusOK, withRevision(server))
		return nil
	case len(segs) == 3 && segs[1] == "properties" && segs[2] == "security":
		writeResource(w, http.StatusOK, withRevision(map[string]any{
			"_id": segs[0] + "/properties/security",
			"amconfig.header.cookie": map[string]any{
				"com.iplanet.am.cookie.name":   s.settings.CookieName,
				"com.iplanet.am.cookie.secure": s.secureCookies,
				"com.iplanet.am.cookie.encode": false,
			},
		}))
		return nil
	}
	return errorf(http.StatusNotImplemented,
		"amdev does not serve GET %s: of AM's server properties it has only the cookie (properties/security); "+
			"the rest (%s) configure parts of AM that amdev does not have (see docs/amdev.md)", r.URL.Path, strings.Join(segs, "/"))
}
