package amdev

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// ClientInfo describes an OAuth 2.0 client of the server (secrets included:
// development values, for printing connection instructions).
type ClientInfo struct {
	ID     string
	Secret string
	Scopes []string
}

// Client returns the configured client id, if any.
func (s *Server) Client(id string) (ClientInfo, bool) {
	c := s.client("/", id)
	if c == nil {
		return ClientInfo{}, false
	}
	return ClientInfo{ID: id, Secret: c.Secret, Scopes: slices.Clone(c.Scopes)}, true
}

// BrokerClient is the introspection client for the broker (BrokerClientID;
// it may introspect every token).
func (s *Server) BrokerClient() (ClientInfo, bool) { return s.Client(BrokerClientID) }

// CloudAppClient is the demo cloud application client (CloudAppClientID, client_credentials).
func (s *Server) CloudAppClient() (ClientInfo, bool) { return s.Client(CloudAppClientID) }

// TokenURL is the root realm's token endpoint.
func (s *Server) TokenURL() string { return s.Issuer() + "/access_token" }

// IntrospectionURL is the root realm's RFC 7662 introspection endpoint.
func (s *Server) IntrospectionURL() string { return s.Issuer() + "/introspect" }

// JWKSURL is the root realm's key set URL.
func (s *Server) JWKSURL() string { return s.Issuer() + "/connect/jwk_uri" }

// DemoThing describes a thing identity to create in the root realm.
type DemoThing struct {
	ID         string
	ThingType  string // "device" when empty
	ThingKeys  string // JWKS as JSON text; optional
	ClientName string // thingOAuth2ClientName; optional
	Config     string // thingConfig; optional
	// Attributes are further attributes to set, e.g. the attribute a
	// claimsFromAttributes mapping turns into a gateway's "things" claim.
	Attributes map[string][]string
}

// EnsureThing creates the thing identity in the root realm, or updates the
// given attributes of an existing one.
func (s *Server) EnsureThing(ctx context.Context, t DemoThing) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.ID == "" {
		return errors.New("amdev: thing id required")
	}
	ident, err := s.getIdentity("/", t.ID)
	if errors.Is(err, errNoIdentity) {
		ident, err = &identity{Realm: "/", ID: t.ID}, nil
	}
	if err != nil {
		return fmt.Errorf("amdev: thing %s: %w", t.ID, err)
	}
	if t.ThingKeys != "" {
		if _, err := parseThingKeys(t.ThingKeys); err != nil {
			return fmt.Errorf("amdev: thing %s: %w", t.ID, err)
		}
		ident.setAttr("thingKeys", t.ThingKeys)
	}
	tt := t.ThingType
	if tt == "" {
		tt = "device"
	}
	ident.setAttr("thingType", tt)
	if t.ClientName != "" {
		ident.setAttr("thingOAuth2ClientName", t.ClientName)
	}
	if t.Config != "" {
		ident.setAttr("thingConfig", t.Config)
	}
	for k, v := range t.Attributes {
		if isReservedAttr(k) || k == "thingKeys" {
			return fmt.Errorf("amdev: thing %s: attribute %s cannot be set here", t.ID, k)
		}
		ident.Attributes[k] = slices.Clone(v)
	}
	if err := s.putIdentity(ident); err != nil {
		return fmt.Errorf("amdev: thing %s: %w", t.ID, err)
	}
	return nil
}

// IssueAccessToken mints an access token in-process for a thing of the root
// realm, exactly as get_access_token would after the thing authenticated.
// clientID "" means the thing's client (thingOAuth2ClientName, else the IoT
// Service default); scopes must be allowed for that client, none means its
// default scopes.
func (s *Server) IssueAccessToken(ctx context.Context, thingID, clientID string, scopes []string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	ident, err := s.getIdentity("/", thingID)
	if err != nil {
		return "", fmt.Errorf("amdev: issue token for %s: %w", thingID, err)
	}
	id, client, err := s.thingClient(ident)
	if clientID != "" {
		id, client = clientID, s.client("/", clientID)
		if client == nil {
			err = fmt.Errorf("client %q not configured", clientID)
		}
	}
	if err != nil {
		return "", fmt.Errorf("amdev: issue token for %s: %w", thingID, err)
	}
	granted, err := grantScopes(client, scopes)
	if err != nil {
		return "", fmt.Errorf("amdev: issue token for %s: %w", thingID, err)
	}
	resp, err := s.issue(s.thingGrant(ident, id, granted, grantJWTBearer), false)
	if err != nil {
		return "", fmt.Errorf("amdev: issue token for %s: %w", thingID, err)
	}
	return resp.AccessToken, nil
}

// IssueClientToken mints a client_credentials token in-process (e.g. for the
// demo cloud application), as the token endpoint would.
func (s *Server) IssueClientToken(ctx context.Context, clientID string, scopes []string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	client := s.client("/", clientID)
	if client == nil {
		return "", fmt.Errorf("amdev: issue token: client %q not configured", clientID)
	}
	granted, err := grantScopes(client, scopes)
	if err != nil {
		return "", fmt.Errorf("amdev: issue token for client %s: %w", clientID, err)
	}
	resp, err := s.issue(grant{Realm: "/", ClientID: clientID, Subject: clientID, SubjectType: "age",
		Scopes: granted, GrantType: grantClientCredentials}, false)
	if err != nil {
		return "", fmt.Errorf("amdev: issue token for client %s: %w", clientID, err)
	}
	return resp.AccessToken, nil
}
