package amdev

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// addressedOrigins are the origins (scheme://host[:port]) a request may have
// been sent to: the configured base URL's, the request's own Host (AM's
// default base URL source is the request), and, only when the TCP peer is a
// trusted proxy, the first X-Forwarded-Proto and X-Forwarded-Host. Without
// that trust a forwarding header is ignored: anyone can send one, and an
// audience taken from it would let an assertion made for another server work
// here. Signed requests and client assertions both judge their audience
// against these origins, so the two rules cannot drift apart.
func (s *Server) addressedOrigins(r *http.Request) []string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	out := []string{s.origin}
	add := func(scheme, host string) {
		if o := scheme + "://" + host; validHost(host) && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	add(scheme, r.Host)
	if s.trustedProxy(r) {
		host := firstForwarded(r.Header.Get("X-Forwarded-Host"))
		proto := strings.ToLower(firstForwarded(r.Header.Get("X-Forwarded-Proto")))
		if proto == "" {
			proto = scheme
		}
		if host != "" && (proto == "http" || proto == "https") {
			add(proto, host)
		}
	}
	return out
}

// firstForwarded is the first value of a comma-separated forwarding header:
// the one the outermost proxy set, i.e. what the client addressed.
func firstForwarded(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// validHost accepts host[:port] as it may stand in a URL and nothing that could
// smuggle a path, user info or a second URL into an audience.
func validHost(host string) bool {
	if host == "" || strings.ContainsAny(host, "/?#@ \\") {
		return false
	}
	u, err := url.Parse("http://" + host)
	return err == nil && u.Host == host
}

// trustedProxy reports whether the request's TCP peer is one of the
// trustedProxies, whose forwarding headers name the URL the client addressed.
func (s *Server) trustedProxy(r *http.Request) bool {
	if len(s.settings.TrustedProxies) == 0 {
		return false
	}
	addr, err := netip.ParseAddr(sourceAddr(r))
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range s.settings.TrustedProxies {
		if pfx, err := parseProxy(p); err == nil && pfx.Contains(addr) {
			return true
		}
	}
	return false
}

// parseProxy reads a trustedProxies entry: an address or a CIDR prefix.
func parseProxy(p string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(p); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	pfx, err := netip.ParsePrefix(p)
	if err != nil {
		return netip.Prefix{}, err
	}
	return pfx.Masked(), nil
}

// isRequestURL reports whether aud is the URL of this request as the client
// addressed it (a signed request's aud, §7.2), under any addressed origin.
// "*" and "%2A" count as equal.
func (s *Server) isRequestURL(r *http.Request, aud string) bool {
	if aud == "" {
		return false
	}
	norm := func(u string) string { return strings.ReplaceAll(strings.ReplaceAll(u, "%2A", "*"), "%2a", "*") }
	uri := r.URL.EscapedPath()
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		uri += "?" + r.URL.RawQuery
	}
	for _, o := range s.addressedOrigins(r) {
		if norm(aud) == norm(o+uri) {
			return true
		}
	}
	return false
}

// oauthAudiences are the audiences AM accepts in a client assertion for realm:
// the realm's OAuth base and its token endpoint under every addressed origin
// and every DNS alias of the realm (at the addressed scheme and port). On a
// host that is a DNS alias of the realm the base has no realm path, as AM's
// is there (https://alias/am/oauth2); the full realm path is accepted too.
func (s *Server) oauthAudiences(r *http.Request, realm string) []string {
	var out []string
	add := func(base string) {
		if !slices.Contains(out, base) {
			out = append(out, base, base+"/access_token")
		}
	}
	aliases := s.realmAliasHosts(realm)
	for _, o := range s.addressedOrigins(r) {
		u, err := url.Parse(o)
		if err != nil {
			continue
		}
		hosts := []string{u.Host}
		for _, a := range aliases {
			if p := u.Port(); p != "" {
				a = net.JoinHostPort(a, p)
			}
			hosts = append(hosts, a)
		}
		for _, h := range hosts {
			origin := u.Scheme + "://" + h
			add(origin + s.basePath + "/oauth2" + realmURLPath(realm))
			if s.hostRealm(h) == realm {
				add(origin + s.basePath + "/oauth2")
			}
		}
	}
	return out
}
