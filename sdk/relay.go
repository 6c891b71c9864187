package sdk

import "context"

// AMInfo is what a thing behind a gateway needs to know about AM: the URLs it signs as aud in
// proof-of-possession requests and the API versions it sends. The field names are part of the
// gateway wire protocol (ForgeRock's gateway marshals its Go struct without JSON tags), so they must
// not get tags.
type AMInfo struct {
	Realm              string
	AccessTokenURL     string
	IntrospectURL      string
	AttributesURL      string
	ThingsVersion      string
	UserCodeURL        string
	UserTokenURL       string
	SessionsVersion    string
	SessionValidateURL string
	SessionLogoutURL   string
}

// AMInfo returns the URLs of the client's realm exactly as the SDK signs them.
func (c *Client) AMInfo() AMInfo {
	realm := c.realm
	if realm == "" {
		realm = "/"
	}
	return AMInfo{
		Realm:              realm,
		AccessTokenURL:     c.ep.thingsAction("get_access_token"),
		IntrospectURL:      c.ep.thingsAction("introspect_token"),
		AttributesURL:      c.ep.attributes(nil),
		ThingsVersion:      apiThings,
		UserCodeURL:        c.ep.thingsAction("get_user_code"),
		UserTokenURL:       c.ep.thingsAction("get_user_token"),
		SessionsVersion:    apiSessions,
		SessionValidateURL: c.ep.sessions("validate"),
		SessionLogoutURL:   c.ep.sessions("logout"),
	}
}

// RelayRequest is a request a gateway forwards to AM on behalf of a thing: the body is sent as it
// came (a signed JWS must reach AM byte for byte) with the thing's session as the SSO cookie.
type RelayRequest struct {
	// Method is the HTTP method.
	Method string
	// URL is the full AM URL, normally one from AMInfo or AuthenticateURL.
	URL string
	// API is the Accept-API-Version header; empty for none.
	API string
	// ContentType is "application/json" or "application/jose".
	ContentType string
	// Body is sent unchanged; nil for none.
	Body []byte
	// SSOToken is the thing's session token, sent as AM's session cookie; empty for none.
	SSOToken string
}

// Relay sends r to AM and returns AM's status and body whatever the status. The error is only for
// transport failures (AM unreachable, timeout), which a gateway reports as 5.03.
func (c *Client) Relay(ctx context.Context, op string, r RelayRequest) (int, []byte, error) {
	return c.roundTrip(ctx, op, httpRequest{
		method: r.Method, url: r.URL, api: r.API, contentType: r.ContentType, body: r.Body, ssoToken: r.SSOToken,
	})
}

// AuthenticateURL is the /json/authenticate URL of tree in the client's realm, and the
// Accept-API-Version the SDK sends with it.
func (c *Client) AuthenticateURL(tree string) (url, api string) {
	return c.ep.authenticate(tree), apiAuthenticate
}

// AttributesURL is the things GET URL restricted to names (all attributes when none).
func (c *Client) AttributesURL(names []string) string { return c.ep.attributes(names) }
