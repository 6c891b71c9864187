package amdev

import (
	"net/http"
	"strings"
)

// apiVersion is a parsed Accept-API-Version header.
type apiVersion struct {
	raw      string
	protocol string
	resource string
}

// parseAPIVersion parses "protocol=1.0,resource=2.1" in any order, with any
// spacing. Unknown keys are ignored as AM does.
func parseAPIVersion(h string) apiVersion {
	v := apiVersion{raw: h}
	for _, part := range strings.Split(h, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "protocol":
			v.protocol = strings.TrimSpace(val)
		case "resource":
			v.resource = strings.TrimSpace(val)
		}
	}
	return v
}

// checkResource refuses a request whose resource major version is not among
// those AM serves for the endpoint (an absent header means "latest", as in AM).
func checkResource(r *http.Request, majors ...string) *httpError {
	v := parseAPIVersion(r.Header.Get("Accept-API-Version"))
	if v.resource == "" {
		return nil
	}
	major, _, _ := strings.Cut(v.resource, ".")
	for _, a := range majors {
		if major == a {
			return nil
		}
	}
	return errorf(http.StatusNotFound, "Accept-API-Version: Requested version \"%s\" does not match any routes", v.resource)
}
