package introspect

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// providerMetadata is the part of an OpenID Provider (or RFC 8414 authorization server) metadata document imb uses.
type providerMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// DiscoveryURL is where OIDC Discovery §4 says the metadata of issuer lives. For AM that is
// {base}/oauth2[/realms/root/realms/NAME]/.well-known/openid-configuration.
func DiscoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// discover fetches the provider metadata of issuer (from docURL when set) and checks that the document names
// exactly that issuer (OIDC Discovery §4.3), so a misconfigured or hijacked URL cannot substitute another issuer's
// keys.
func discover(ctx context.Context, client *http.Client, issuer, docURL string) (*providerMetadata, error) {
	if docURL == "" {
		docURL = DiscoveryURL(issuer)
	}
	body, err := fetchDocument(ctx, client, docURL, maxMetadataBytes)
	if err != nil {
		return nil, fmt.Errorf("introspect discovery: %w", err)
	}
	var md providerMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("introspect discovery %s: %w", docURL, err)
	}
	if md.Issuer != issuer {
		return nil, fmt.Errorf("introspect discovery %s: document names issuer %q, configured issuer is %q",
			docURL, md.Issuer, issuer)
	}
	for name, u := range map[string]string{"jwks_uri": md.JWKSURI, "introspection_endpoint": md.IntrospectionEndpoint} {
		if u == "" {
			continue
		}
		if err := checkHTTPURL(u); err != nil {
			return nil, fmt.Errorf("introspect discovery %s: %s: %w", docURL, name, err)
		}
	}
	return &md, nil
}

// checkHTTPURL accepts absolute http and https URLs only.
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return nil
}
