package sdk

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// realmPattern accepts the realm forms AM knows: empty (the host is a DNS alias of the realm), a path
// ("/", "/a", "/a/b") or an alias ("alias-xyz"). Other characters are refused because the things URLs
// carry the realm unencoded, exactly as AM compares them in signed requests.
var realmPattern = regexp.MustCompile(`^(/|(/[A-Za-z0-9._-]+)+|[A-Za-z0-9._-]+)?$`)

func checkRealm(realm string) error {
	if !realmPattern.MatchString(realm) {
		return fmt.Errorf("realm %q: want \"\", \"/\", a path like \"/a/b\" or an alias", realm)
	}
	return nil
}

// realmPath is the realm as PoP JWTs name it in aud: the path for path realms, "/" when no realm is
// given, and "" for an alias (whose path the SDK cannot know).
func realmPath(realm string) string {
	switch {
	case realm == "":
		return "/"
	case strings.HasPrefix(realm, "/"):
		return realm
	}
	return ""
}

// endpoints builds AM's URLs by hand where AM compares them byte for byte (signed requests).
type endpoints struct {
	base  string // AM base URL with deployment path, no trailing slash
	realm string
}

func (e endpoints) serverInfo() string {
	return e.base + "/json/serverinfo/*?_fields=cookieName"
}

// authenticate percent-encodes the realm; url.Values sorts the keys as AM's SDK does.
func (e endpoints) authenticate(tree string) string {
	v := url.Values{}
	v.Set("authIndexType", "service")
	v.Set("authIndexValue", tree)
	if e.realm != "" {
		v.Set("realm", e.realm)
	}
	return e.base + "/json/authenticate?" + v.Encode()
}

// authenticateRealmOnly is the header-login URL with the realm percent-encoded.
func (e endpoints) authenticateRealmOnly() string {
	return e.base + "/json/authenticate?" + url.Values{"realm": {e.realm}}.Encode()
}

// thingsAction puts _action first and the realm raw after it.
func (e endpoints) thingsAction(action string) string {
	u := e.base + "/json/things/*?_action=" + action
	if e.realm != "" {
		u += "&realm=" + e.realm
	}
	return u
}

// attributes is "?realm=R&_fields=a,b" with both values raw.
func (e endpoints) attributes(names []string) string {
	u := e.base + "/json/things/*"
	sep := "?"
	if e.realm != "" {
		u += sep + "realm=" + e.realm
		sep = "&"
	}
	if len(names) > 0 {
		u += sep + "_fields=" + strings.Join(names, ",")
	}
	return u
}

func (e endpoints) sessions(action string) string {
	return e.base + "/json/sessions?_action=" + action
}

func (e endpoints) discovery() string {
	u := e.base + "/oauth2/.well-known/openid-configuration"
	if e.realm != "" {
		u += "?realm=" + e.realm
	}
	return u
}

// oauthBase is the realm's OAuth 2.0 base URL: {base}/oauth2 for the root realm or a DNS alias,
// {base}/oauth2/realms/root/realms/a/realms/b for /a/b.
func (e endpoints) oauthBase() string {
	u := e.base + "/oauth2"
	if strings.HasPrefix(e.realm, "/") {
		for _, part := range strings.Split(strings.Trim(e.realm, "/"), "/") {
			if part != "" {
				if u == e.base+"/oauth2" {
					u += "/realms/root"
				}
				u += "/realms/" + part
			}
		}
	}
	return u
}
