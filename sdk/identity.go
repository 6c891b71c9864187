package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// apiUsers is the Accept-API-Version of AM's identity REST API (PUT …/users/{id}).
const apiUsers = "resource=4.0, protocol=2.1"

// Identity is what an administrator stores for a manually registered thing.
type Identity struct {
	ThingType ThingType
	// ThingKeys is the thing's public keys as JWKS text (see Key.PublicJWKS).
	ThingKeys string
	// Password, optional, lets the identity also log in through username/password trees.
	Password string
	// OAuth2ClientName, optional, selects the thing's OAuth client instead of the IoT Service default.
	OAuth2ClientName string
	// Config and Properties fill thingConfig and thingProperties.
	Config, Properties string
}

// CreateIdentity registers a thing manually through AM's identity REST API: PUT
// {base}/json/realms/root[/realms/…]/users/{id} with an administrator's session (see Login). It creates
// the identity or replaces its attributes.
func (c *Client) CreateIdentity(ctx context.Context, admin *Session, id string, ident Identity) error {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return fmt.Errorf("create identity %q: invalid id", id)
	}
	if admin == nil {
		return errors.New("create identity: administrator session required")
	}
	body := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			body[k] = v
		}
	}
	set("thingType", string(ident.ThingType))
	set("thingKeys", ident.ThingKeys)
	set("userPassword", ident.Password)
	set("thingOAuth2ClientName", ident.OAuth2ClientName)
	set("thingConfig", ident.Config)
	set("thingProperties", ident.Properties)
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("create identity %s: %w", id, err)
	}
	_, err = c.send(ctx, "create identity", httpRequest{
		method: http.MethodPut, url: c.ep.users(id), api: apiUsers, contentType: contentJSON, body: data, ssoToken: admin.token,
	})
	if err != nil {
		return fmt.Errorf("create identity %s: %w", id, err)
	}
	return nil
}

// users is the identity URL of the realm: …/json/realms/root/realms/a/users/{id}. A realm alias or a
// DNS alias (empty realm) is addressed as the root realm's path, as AM resolves it from the host.
func (e endpoints) users(id string) string {
	u := e.base + "/json/realms/root"
	if strings.HasPrefix(e.realm, "/") {
		for _, part := range strings.Split(strings.Trim(e.realm, "/"), "/") {
			if part != "" {
				u += "/realms/" + part
			}
		}
	}
	return u + "/users/" + url.PathEscape(id)
}
