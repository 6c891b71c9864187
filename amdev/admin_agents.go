package amdev

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
)

// agentTypeOAuth2Client is the CREST type of AM's OAuth 2.0 client agents.
const agentTypeOAuth2Client = "OAuth2Client"

// handleOAuth2Clients serves AM's realm-config/agents/OAuth2Client
// collection for amAdmin: query (_queryFilter=true), read, create or
// update (PUT; If-None-Match: * only creates, If-Match only updates), and
// delete. A change takes effect at once for that realm's next client
// authentication; a configured client changed or deleted in one realm is
// unchanged in the others. Changes are kept in the store (admin_state.go).
func (s *Server) handleOAuth2Clients(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool, id string) error {
	realm, err := s.adminScope(r, realm, pathRealm)
	if err != nil {
		return err
	}
	if id == "" {
		return serveQuery(w, r, func() []map[string]any {
			var result []map[string]any
			for _, cid := range s.clientIDs(realm) {
				result = append(result, clientDoc(cid, s.clientEntry(realm, cid)))
			}
			return result
		})
	}
	// One admin change at a time: a read-modify-write under If-Match must not interleave.
	s.agents.edit.Lock()
	defer s.agents.edit.Unlock()
	cur := s.clientEntry(realm, id)
	it := crestItem{what: "the OAuth2Client " + id}
	if cur != nil {
		it.cur = clientDoc(id, cur)
	}
	it.remove = func() error {
		s.setClient(realm, id, nil)
		s.log.Info("oauth2 client deleted", "realm", realm, "client", id)
		return nil
	}
	it.save = func(data []byte) (map[string]any, error) {
		if cur == nil {
			if err := s.reservedClientID(realm, id); err != nil {
				return nil, err
			}
		}
		body, err := objectBody(data)
		if err != nil {
			return nil, err
		}
		if bid, ok := body["_id"]; ok && bid != id {
			return nil, errBadRequest("The _id %v in the body is not the id %s in the URL", bid, id)
		}
		next, err := applyClientDoc(cur, body)
		if err != nil {
			return nil, err
		}
		s.setClient(realm, id, next)
		s.log.Info("oauth2 client saved", "realm", realm, "client", id, "created", cur == nil,
			"scopes", next.Scopes, "grantTypes", next.GrantTypes)
		return clientDoc(id, next), nil
	}
	return serveItem(w, r, it)
}

// reservedClientID refuses a new client id that an identity of the realm
// or the administrator already has: a client's tokens name it as their
// subject, and the broker's {sub} placeholders would grant one what the
// other has.
func (s *Server) reservedClientID(realm, id string) error {
	if strings.EqualFold(id, s.settings.Admin.Username) {
		return errorf(http.StatusConflict, "The client id %s is taken by the administrator", quote(id))
	}
	_, err := s.getIdentity(realm, id)
	switch {
	case err == nil:
		return errorf(http.StatusConflict, "The client id %s is taken by an identity of the realm", quote(id))
	case !errors.Is(err, errNoIdentity):
		return err
	}
	return nil
}

// inheritable is an attribute in AM's agent form {"inherited": false, "value": v}.
func inheritable(v any) map[string]any { return map[string]any{"inherited": false, "value": v} }

// clientDoc is c in AM's OAuth2Client JSON, limited to the attributes amdev
// honours. The secret (userpassword) is never read back, as in AM.
func clientDoc(id string, c *Client) map[string]any {
	status := "Active"
	if c.Inactive {
		status = "Inactive"
	}
	list := func(v []string) []string {
		if v == nil {
			return []string{}
		}
		return v
	}
	return withRevision(map[string]any{
		"_id": id,
		"coreOAuth2ClientConfig": map[string]any{
			"status":              inheritable(status),
			"clientType":          inheritable("Confidential"),
			"scopes":              inheritable(list(c.Scopes)),
			"defaultScopes":       inheritable(list(c.DefaultScopes)),
			"accessTokenLifetime": inheritable(int64(time.Duration(c.AccessTokenLifetime) / time.Second)),
			"agentgroup":          "",
		},
		"advancedOAuth2ClientConfig": map[string]any{
			"grantTypes":              inheritable(list(c.GrantTypes)),
			"tokenEndpointAuthMethod": inheritable("client_secret_basic"),
		},
		"_type": map[string]any{"_id": agentTypeOAuth2Client, "name": "OAuth2 Clients", "collection": true},
	})
}

// applyClientDoc returns cur (nil: a new client) changed by the attributes of
// an OAuth2Client body that amdev honours: userpassword (required for a new
// client: amdev serves confidential clients), status, scopes, defaultScopes,
// accessTokenLifetime (0 inherits the provider's) and grantTypes. Each may
// be AM's {"inherited", "value"} form or a bare value. Scope
// am-introspect-all-tokens lets the client introspect every token of the
// realm, as in AM. Other attributes (redirect URIs, OIDC, signing…) are
// accepted so that an agent exported from AM can be imported, and have no
// effect; the answer shows what applies.
func applyClientDoc(cur *Client, body map[string]any) (*Client, error) {
	next := &Client{}
	if cur != nil {
		*next = *cur
		next.Scopes, next.DefaultScopes, next.GrantTypes = slices.Clone(cur.Scopes), slices.Clone(cur.DefaultScopes), slices.Clone(cur.GrantTypes)
	}
	attr := func(section, key string) (any, bool, error) {
		sec, ok := body[section]
		if !ok || sec == nil {
			return nil, false, nil
		}
		m, ok := sec.(map[string]any)
		if !ok {
			return nil, false, errBadRequest("%s must be an object", section)
		}
		v, ok := m[key]
		if w, isWrapped := v.(map[string]any); ok && isWrapped {
			v, ok = w["value"]
		}
		return v, ok && v != nil, nil
	}
	strs := func(section, key string, dst *[]string) error {
		v, ok, err := attr(section, key)
		if err != nil || !ok {
			return err
		}
		arr, isArr := v.([]any)
		if !isArr {
			return errBadRequest("%s.%s must be an array of strings", section, key)
		}
		out := []string{}
		for _, e := range arr {
			s, isStr := e.(string)
			if !isStr || s == "" {
				return errBadRequest("%s.%s must be an array of strings", section, key)
			}
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		*dst = out
		return nil
	}
	const core, adv = "coreOAuth2ClientConfig", "advancedOAuth2ClientConfig"
	if v, ok, err := attr(core, "userpassword"); err != nil {
		return nil, err
	} else if ok {
		pw, isStr := v.(string)
		if !isStr || pw == "" {
			return nil, errBadRequest("%s.userpassword must be a non-empty string", core)
		}
		next.Secret = pw
	}
	if next.Secret == "" {
		return nil, errBadRequest("%s.userpassword is required: amdev serves confidential clients only", core)
	}
	if v, ok, err := attr(core, "status"); err != nil {
		return nil, err
	} else if ok {
		switch v {
		case "Active":
			next.Inactive = false
		case "Inactive":
			next.Inactive = true
		default:
			return nil, errBadRequest(`%s.status must be "Active" or "Inactive"`, core)
		}
	}
	if v, ok, err := attr(core, "accessTokenLifetime"); err != nil {
		return nil, err
	} else if ok {
		n, isNum := v.(json.Number)
		i, err := n.Int64()
		if !isNum || err != nil || i < 0 || i > int64(100*365*24*3600) {
			return nil, errBadRequest("%s.accessTokenLifetime must be a whole number of seconds (0 inherits the provider's)", core)
		}
		next.AccessTokenLifetime = Duration(time.Duration(i) * time.Second)
	}
	for _, step := range []error{
		strs(core, "scopes", &next.Scopes),
		strs(core, "defaultScopes", &next.DefaultScopes),
		strs(adv, "grantTypes", &next.GrantTypes),
	} {
		if step != nil {
			return nil, step
		}
	}
	for _, d := range next.DefaultScopes {
		if !slices.Contains(next.Scopes, d) {
			return nil, errBadRequest("%s.defaultScopes: %s is not one of the client's scopes", core, quote(d))
		}
	}
	next.IntrospectAllTokens = slices.Contains(next.Scopes, scopeIntrospectAllTokens)
	return next, nil
}

// agentTypeSoftwarePublisher is the CREST type of AM's software publisher agents.
const agentTypeSoftwarePublisher = "SoftwarePublisher"

// handleSoftwarePublishers serves AM's realm-config/agents/SoftwarePublisher
// collection for amAdmin, as handleOAuth2Clients does for clients: the
// realm's next software statement is judged by what it holds.
func (s *Server) handleSoftwarePublishers(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool, id string) error {
	realm, err := s.adminScope(r, realm, pathRealm)
	if err != nil {
		return err
	}
	if id == "" {
		return serveQuery(w, r, func() []map[string]any {
			var out []map[string]any
			for _, pid := range s.publisherIDs(realm) {
				out = append(out, publisherDoc(pid, s.publisherEntry(realm, pid)))
			}
			return out
		})
	}
	s.agents.edit.Lock()
	defer s.agents.edit.Unlock()
	cur := s.publisherEntry(realm, id)
	it := crestItem{what: "the SoftwarePublisher " + id}
	if cur != nil {
		it.cur = publisherDoc(id, cur)
	}
	it.remove = func() error {
		s.setPublisher(realm, id, nil)
		s.log.Info("software publisher deleted", "realm", realm, "agent", id)
		return nil
	}
	it.save = func(data []byte) (map[string]any, error) {
		body, err := objectBody(data)
		if err != nil {
			return nil, err
		}
		next, err := applyPublisherDoc(cur, body)
		if err != nil {
			return nil, err
		}
		s.setPublisher(realm, id, next)
		s.log.Info("software publisher saved", "realm", realm, "agent", id, "issuer", next.Issuer)
		return publisherDoc(id, next), nil
	}
	return serveItem(w, r, it)
}

// publisherDoc is p in AM's SoftwarePublisher JSON, limited to what amdev honours.
func publisherDoc(id string, p *SoftwarePublisher) map[string]any {
	return withRevision(map[string]any{
		"_id": id, "issuer": p.Issuer, "publicKeyLocation": "jwks", "jwkSet": p.JWKS, "jwksUri": "", "agentgroup": "",
		"_type": map[string]any{"_id": agentTypeSoftwarePublisher, "name": "OAuth2 Software Publisher", "collection": true},
	})
}

// applyPublisherDoc returns cur (nil: a new publisher) changed by a body's
// issuer and jwkSet (a JWKS as JSON text or object; bare or in AM's
// {"value": …} form). Only publicKeyLocation "jwks" is served: amdev
// fetches no jwks_uri. Other attributes are accepted and have no effect.
func applyPublisherDoc(cur *SoftwarePublisher, body map[string]any) (*SoftwarePublisher, error) {
	next := &SoftwarePublisher{}
	if cur != nil {
		*next = *cur
	}
	val := func(key string) (any, bool) {
		v, ok := body[key]
		if w, isWrapped := v.(map[string]any); isWrapped {
			if inner, has := w["value"]; has {
				v = inner
			}
		}
		return v, ok && v != nil
	}
	if v, ok := val("publicKeyLocation"); ok && v != "jwks" {
		return nil, errBadRequest("publicKeyLocation %v is not supported: amdev reads the keys from jwkSet only", v)
	}
	if v, ok := val("issuer"); ok {
		iss, isStr := v.(string)
		if !isStr || iss == "" {
			return nil, errBadRequest("issuer must be a non-empty string")
		}
		next.Issuer = iss
	}
	if v, ok := val("jwkSet"); ok {
		text, isStr := v.(string)
		if !isStr {
			b, err := json.Marshal(v)
			if err != nil {
				return nil, errBadRequest("jwkSet must be a JSON Web Key Set")
			}
			text = string(b)
		}
		if set, err := parseThingKeys(text); err != nil || len(set.Keys) == 0 {
			return nil, errBadRequest("jwkSet must be a JSON Web Key Set with at least one key")
		}
		next.JWKS = text
	}
	if next.Issuer == "" || next.JWKS == "" {
		return nil, errBadRequest("a software publisher needs issuer and jwkSet")
	}
	return next, nil
}
