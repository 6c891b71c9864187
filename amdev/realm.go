package amdev

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
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

// resolveRealm maps a realm parameter (path, alias or empty) to a realm path.
// The full path is the key: a realm is never found by its last segment.
// Without a parameter, a DNS alias (the request's host name among a realm's
// aliases) names the realm, as AM's DNS aliases do; otherwise it is the root realm.
func (s *Server) resolveRealm(param, host string) (string, error) {
	if param == "" {
		if r := s.hostRealm(host); r != "" {
			return r, nil
		}
		return "/", nil
	}
	if !strings.HasPrefix(param, "/") {
		if p := s.aliasRealm(param); p != "" {
			return p, nil
		}
	}
	p, err := normalizeRealmPath(param)
	if err != nil {
		return "", err
	}
	if !s.realmExists(p) {
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

// realmInfo is one realm of the realm table.
type realmInfo struct {
	active bool
	// aliases are the realm's aliases as AM keeps them, in one list: a
	// ?realm= parameter may name one, and a request whose Host is one (a DNS
	// alias) is in the realm when it names no other.
	aliases []string
}

// realmTable is the set of realms: seeded from the settings (realms,
// realmAliases, realmHosts), changed at run time by the admin REST
// (global-config/realms). Every realm lookup goes through it.
type realmTable struct {
	mu     sync.RWMutex
	realms map[string]*realmInfo // by full path; "/" always
	// deleted are the realms the admin REST deleted and has not created
	// again: a config file realm among them stays deleted across restarts.
	deleted map[string]bool
}

// newRealmTable seeds the table from validated settings: each realm and its
// parents, each alias and DNS alias on its realm.
func newRealmTable(st Settings) *realmTable {
	t := &realmTable{realms: map[string]*realmInfo{"/": {active: true}}, deleted: map[string]bool{}}
	for _, r := range st.Realms {
		p, _ := normalizeRealmPath(r) // validated
		for cur := p; cur != "/"; cur = parentRealm(cur) {
			if t.realms[cur] == nil {
				t.realms[cur] = &realmInfo{active: true}
			}
		}
	}
	add := func(m map[string]string) {
		for _, alias := range slices.Sorted(maps.Keys(m)) {
			p, _ := normalizeRealmPath(m[alias]) // validated
			if ri := t.realms[p]; ri != nil && !slices.Contains(ri.aliases, alias) {
				ri.aliases = append(ri.aliases, alias)
			}
		}
	}
	add(st.RealmAliases)
	add(st.RealmHosts)
	return t
}

// realmExists reports whether p is an active realm: an inactive realm
// serves nothing, as in AM.
func (s *Server) realmExists(p string) bool {
	s.realmTab.mu.RLock()
	defer s.realmTab.mu.RUnlock()
	ri := s.realmTab.realms[p]
	return ri != nil && ri.active
}

// aliasRealm is the active realm that has alias among its aliases, "" for none.
func (s *Server) aliasRealm(alias string) string {
	return s.realmWith(func(a string) bool { return a == alias })
}

// hostRealm is the realm a DNS alias host name maps to, "" for none. Host
// names compare without case and port.
func (s *Server) hostRealm(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" {
		return ""
	}
	return s.realmWith(func(a string) bool { return strings.EqualFold(a, host) })
}

func (s *Server) realmWith(match func(alias string) bool) string {
	s.realmTab.mu.RLock()
	defer s.realmTab.mu.RUnlock()
	for p, ri := range s.realmTab.realms {
		if ri.active && slices.ContainsFunc(ri.aliases, match) {
			return p
		}
	}
	return ""
}

// realmAliasHosts are the aliases of realm, sorted: each may be a DNS alias
// the client addressed.
func (s *Server) realmAliasHosts(realm string) []string {
	s.realmTab.mu.RLock()
	defer s.realmTab.mu.RUnlock()
	ri := s.realmTab.realms[realm]
	if ri == nil {
		return nil
	}
	out := make([]string, 0, len(ri.aliases))
	for _, a := range ri.aliases {
		out = append(out, strings.ToLower(a))
	}
	slices.Sort(out)
	return out
}
