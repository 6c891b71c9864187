package amdev

import (
	"net/http"
	"strings"
)

// maxBody bounds every request body amdev reads.
const maxBody = 1 << 20

// route dispatches on the path below the base path. A hand-written router
// keeps AM's odd URLs exact: the literal "*" (or "%2A") of /json/things/* and
// the realms/root/realms/x segments of realm-scoped URLs.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	p, ok := strings.CutPrefix(r.URL.Path, s.basePath+"/")
	if !ok {
		writeError(w, errNotFound())
		return
	}
	segs := strings.Split(p, "/")
	var err error
	switch segs[0] {
	case "json":
		if err = s.routeJSON(w, r, segs[1:]); err == nil && isAdminWrite(r, segs[1:]) {
			s.saveAdminState()
		}
	case "oauth2":
		err = s.routeOAuth2(w, r, segs[1:])
	default:
		err = errNotFound()
	}
	if err != nil {
		s.logError(r, err)
		writeError(w, err)
	}
}

func (s *Server) routeJSON(w http.ResponseWriter, r *http.Request, segs []string) error {
	if n := len(segs); n > 1 && segs[n-1] == "" {
		segs = segs[:n-1] // CREST takes "sessions/" as "sessions"
	}
	realm, segs, ok := splitRealmPath(segs)
	if !ok || len(segs) == 0 {
		return errNotFound()
	}
	pathRealm := realm != "/"
	switch {
	case len(segs) == 2 && segs[0] == "serverinfo":
		return s.handleServerInfo(w, r, segs[1])
	case len(segs) == 1 && segs[0] == "authenticate":
		return s.handleAuthenticate(w, r, realm, pathRealm)
	case len(segs) == 1 && segs[0] == "sessions":
		return s.handleSessions(w, r)
	case len(segs) == 2 && segs[0] == "things" && segs[1] == "*":
		return s.handleThings(w, r)
	case segs[0] == "realm-config" && strings.Join(segs[1:], "/") == "services/"+iotServiceName:
		return s.handleIoTService(w, r, realm, pathRealm)
	case segs[0] == "realm-config" && strings.Join(segs[1:], "/") == "services/"+oauthProviderService:
		return s.handleOAuthProvider(w, r, realm, pathRealm)
	case !pathRealm && len(segs) >= 2 && segs[0] == "global-config" && segs[1] == "realms":
		// A realm id is base64 and may hold a "/" (sent as %2F, decoded by now).
		return s.handleRealms(w, r, strings.Join(segs[2:], "/"))
	case len(segs) >= 3 && len(segs) <= 4 && segs[0] == "realm-config" && segs[1] == "agents" && segs[2] == agentTypeOAuth2Client:
		id := ""
		if len(segs) == 4 {
			id = segs[3]
		}
		return s.handleOAuth2Clients(w, r, realm, pathRealm, id)
	case len(segs) >= 3 && len(segs) <= 4 && segs[0] == "realm-config" && segs[1] == "agents" && segs[2] == agentTypeSoftwarePublisher:
		id := ""
		if len(segs) == 4 {
			id = segs[3]
		}
		return s.handleSoftwarePublishers(w, r, realm, pathRealm, id)
	case segs[0] == "scripts" && len(segs) <= 2:
		id := ""
		if len(segs) == 2 {
			id = segs[1]
		}
		return s.handleScripts(w, r, realm, pathRealm, id)
	case len(segs) >= 4 && len(segs) <= 6 && segs[0] == "realm-config" && segs[1] == "authentication" && segs[2] == "authenticationtrees":
		return s.handleJourneys(w, r, realm, pathRealm, segs[3:])
	case !pathRealm && len(segs) >= 6 && len(segs) <= 7 && strings.Join(segs[:3], "/") == "global-config/secrets/stores" && segs[5] == "mappings":
		return s.handleSecretMappings(w, r, segs[3], segs[4], strings.Join(segs[6:], ""))
	case !pathRealm && len(segs) >= 2 && segs[0] == "global-config" && segs[1] == "servers":
		return s.handleServers(w, r, segs[2:])
	case segs[0] == "realm-config" || segs[0] == "global-config" || segs[0] == "scripts":
		return errNotServed(r)
	case segs[0] == "users" && (len(segs) == 3 || len(segs) == 4) && segs[2] == "pairings":
		return s.handlePairings(w, r, realm, segs[1], strings.Join(segs[3:], ""))
	case segs[0] == "users" && len(segs) <= 2:
		id := ""
		if len(segs) == 2 {
			id = segs[1]
		}
		return s.handleUsers(w, r, realm, pathRealm, id)
	}
	// AM's CREST router names the resource it has no route for.
	return errorf(http.StatusNotFound, "Resource '%s' not found", strings.Join(segs, "/"))
}

func (s *Server) routeOAuth2(w http.ResponseWriter, r *http.Request, segs []string) error {
	realm, segs, ok := splitRealmPath(segs)
	if !ok {
		return errNotFound()
	}
	if realm == "/" && r.URL.Query().Has("realm") {
		// AM also accepts the ?realm= form on the root OAuth URLs.
		var err error
		if realm, err = s.resolveRealm(r.URL.Query().Get("realm"), r.Host); err != nil {
			return errorf(http.StatusNotFound, "Realm not found").with(err)
		}
	} else if hr := s.hostRealm(r.Host); realm == "/" && hr != "" {
		realm = hr // a DNS alias: the root OAuth URLs of that host are its realm's
	} else if !s.realmExists(realm) {
		return errorf(http.StatusNotFound, "Realm not found")
	}
	switch strings.Join(segs, "/") {
	case ".well-known/openid-configuration":
		return s.handleDiscovery(w, r, realm)
	case "connect/jwk_uri":
		return s.handleJWKS(w, r)
	case "access_token":
		return s.handleToken(w, r, realm)
	case "introspect":
		return s.handleIntrospect(w, r, realm)
	case "token/revoke":
		return s.handleRevoke(w, r, realm)
	case "device/code":
		return s.handleDeviceCode(w, r, realm)
	case "device/user":
		return s.handleDeviceUser(w, r, realm)
	case "device/pairings":
		return s.handlePairingsPage(w, r, realm)
	case "ssf/jwks":
		return s.handleSSFJWKS(w, r)
	case "ssf/.well-known/ssf-configuration":
		return s.handleSSFConfiguration(w, r, realm)
	}
	return errNotFound()
}

// logError logs a failed request at a level that fits: client errors are
// routine in a development server, server errors are not.
func (s *Server) logError(r *http.Request, err error) {
	he, ok := err.(*httpError)
	if ok && he.status < 500 {
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
}

// requireMethod answers 405 unless the request uses one of the methods.
func requireMethod(r *http.Request, methods ...string) error {
	for _, m := range methods {
		if r.Method == m {
			return nil
		}
	}
	return errorf(http.StatusMethodNotAllowed, "Method %s not allowed", r.Method)
}
