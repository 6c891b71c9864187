package amdev

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// normalizeRealmPath turns "/", "/a/b", "a/b/" into the canonical "/a/b" form.
func normalizeRealmPath(p string) (string, error) {
	if strings.ContainsAny(p, "?#*\\ ") {
		return "", fmt.Errorf("realm %q: invalid characters", p)
	}
	parts := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
	if len(parts) == 0 {
		return "/", nil
	}
	for _, seg := range parts {
		if seg == "." || seg == ".." {
			return "", fmt.Errorf("realm %q: relative segment", p)
		}
	}
	return "/" + strings.Join(parts, "/"), nil
}

// errUnknownRealm means a realm parameter names no configured realm or alias.
var errUnknownRealm = errors.New("unknown realm")

// resolveRealm maps a realm parameter (path, alias or empty) to a configured
// realm path. The full path is the key: a realm is never found by its last segment.
// Without a parameter, a DNS alias (the request's host name in RealmHosts) names
// the realm, as AM's DNS aliases do; otherwise it is the root realm.
func (s *Server) resolveRealm(param, host string) (string, error) {
	if param == "" {
		if r := s.hostRealm(host); r != "" {
			return r, nil
		}
		return "/", nil
	}
	if !strings.HasPrefix(param, "/") {
		if p, ok := s.settings.RealmAliases[param]; ok {
			return normalizeRealmPath(p)
		}
	}
	p, err := normalizeRealmPath(param)
	if err != nil {
		return "", err
	}
	if _, ok := s.realms[p]; !ok {
		return "", fmt.Errorf("%w %q", errUnknownRealm, param)
	}
	return p, nil
}

// realmURLPath is the "realms/root/realms/a/realms/b" form AM uses in URLs
// ("" for the root realm).
func realmURLPath(realm string) string {
	if realm == "/" {
		return ""
	}
	var b strings.Builder
	b.WriteString("/realms/root")
	for _, seg := range strings.Split(strings.TrimPrefix(realm, "/"), "/") {
		b.WriteString("/realms/")
		b.WriteString(seg)
	}
	return b.String()
}

// oauthBase is the realm's OAuth 2.0 base URL, also its token issuer.
func (s *Server) oauthBase(realm string) string {
	return s.baseURL + "/oauth2" + realmURLPath(realm)
}

// splitRealmPath consumes a leading "realms/root[/realms/x...]" from path
// segments; it returns the realm path and the remaining segments.
func splitRealmPath(segs []string) (realm string, rest []string, ok bool) {
	if len(segs) < 2 || segs[0] != "realms" || segs[1] != "root" {
		return "/", segs, true
	}
	var names []string
	segs = segs[2:]
	for len(segs) >= 2 && segs[0] == "realms" {
		if segs[1] == "" {
			return "", nil, false
		}
		names = append(names, segs[1])
		segs = segs[2:]
	}
	return "/" + strings.Join(names, "/"), segs, true
}

// hostRealm is the realm a DNS alias host name maps to, "" for none.
func (s *Server) hostRealm(host string) string {
	if len(s.settings.RealmHosts) == 0 {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	p, ok := s.settings.RealmHosts[strings.ToLower(host)]
	if !ok {
		return ""
	}
	r, err := normalizeRealmPath(p)
	if err != nil {
		return ""
	}
	return r
}
