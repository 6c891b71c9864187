package amdev

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// handleThings serves /json/things/*: the four actions (POST) and the attributes read (GET).
func (s *Server) handleThings(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet, http.MethodPost); err != nil {
		return err
	}
	if err := checkResource(r, "1"); err != nil {
		return err
	}
	ss := s.lookupSession(s.sessionToken(r))
	if ss == nil {
		return errAccessDenied()
	}
	q := r.URL.Query()
	if q.Has("realm") {
		realm, err := s.resolveRealm(q.Get("realm"), r.Host)
		if err != nil || realm != ss.realm {
			return errBadRequest("Realm %s does not match the session", quote(q.Get("realm")))
		}
	}
	body, err := s.readBody(r, ss)
	if err != nil {
		return err
	}
	ident, err := s.getIdentity(ss.realm, ss.uid)
	if errors.Is(err, errNoIdentity) {
		return errAccessDenied() // deleted behind the session's back
	}
	if err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		return s.thingAttributes(w, ident, q.Get("_fields"))
	}
	switch action := q.Get("_action"); action {
	case "get_access_token":
		if rt, ok := body["refresh_token"].(string); ok && rt != "" {
			return s.thingRefresh(w, ident, rt, body)
		}
		return s.thingAccessToken(w, ident, body)
	case "introspect_token":
		return s.thingIntrospect(w, ident, body)
	case "get_user_code":
		return s.thingUserCode(w, ident, body)
	case "get_user_token":
		return s.thingUserToken(w, ident, body)
	default:
		return errBadRequest("Action %s not supported", quote(action))
	}
}

// thingClient is the OAuth client a thing's tokens are issued to.
func (s *Server) thingClient(ident *identity) (string, *Client, error) {
	name := ident.attr("thingOAuth2ClientName")
	if name == "" {
		name = s.iotService(ident.Realm).OAuthClientName
	}
	c := s.client(ident.Realm, name)
	if c == nil {
		return "", nil, errorf(http.StatusBadRequest, "OAuth 2.0 client %s not found", quote(name))
	}
	return name, c, nil
}

// requestedScopes reads the scope array (or space-separated string) of a body.
func requestedScopes(body map[string]any) ([]string, error) {
	switch v := body["scope"].(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(v), nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			sc, ok := x.(string)
			if !ok {
				return nil, errBadRequest("scope must be an array of strings")
			}
			if sc = strings.TrimSpace(sc); sc != "" && !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
		return out, nil
	}
	return nil, errBadRequest("scope must be an array of strings")
}

// grantScopes validates requested scopes against the client: none requested
// means the client's defaults; any unknown scope fails as AM does.
func grantScopes(c *Client, requested []string) ([]string, error) {
	if len(requested) == 0 {
		if len(c.DefaultScopes) == 0 {
			return nil, oauthError(http.StatusBadRequest, "invalid_scope", "No scope requested and no default scope configured")
		}
		return slices.Clone(c.DefaultScopes), nil
	}
	var bad []string
	for _, sc := range requested {
		if !slices.Contains(c.Scopes, sc) {
			bad = append(bad, sc)
		}
	}
	if len(bad) > 0 {
		return nil, oauthError(http.StatusBadRequest, "invalid_scope",
			fmt.Sprintf("Unknown/invalid scope(s): [%s]", strings.Join(bad, ", ")))
	}
	return requested, nil
}

func (s *Server) thingGrant(ident *identity, clientID string, scopes []string, grantType string) grant {
	subject := ident.ID
	if attr := s.iotService(ident.Realm).OAuthSubjectAttribute; attr != "" && ident.attr(attr) != "" {
		subject = ident.attr(attr)
	}
	return grant{Realm: ident.Realm, ClientID: clientID, Subject: subject, SubjectType: "usr", ThingID: ident.ID,
		Claims: s.attributeClaims(ident), Scopes: scopes, GrantType: grantType}
}

// attributeClaims are the token claims taken from the thing's attributes, as
// an AM access-token modification script would add them: a single value as a
// string, several as an array.
func (s *Server) attributeClaims(ident *identity) map[string]any {
	var out map[string]any
	for claim, attr := range s.settings.OAuth2.ClaimsFromAttributes {
		vals := ident.Attributes[attr]
		if len(vals) == 0 {
			continue
		}
		if out == nil {
			out = map[string]any{}
		}
		if len(vals) == 1 {
			out[claim] = vals[0]
		} else {
			out[claim] = slices.Clone(vals)
		}
	}
	return out
}

// thingScopes resolves the thing's client and the scopes a request body may have.
func (s *Server) thingScopes(ident *identity, body map[string]any) (string, *Client, []string, error) {
	clientID, client, err := s.thingClient(ident)
	if err != nil {
		return "", nil, nil, err
	}
	requested, err := requestedScopes(body)
	if err != nil {
		return "", nil, nil, err
	}
	scopes, err := grantScopes(client, requested)
	if err != nil {
		return "", nil, nil, err
	}
	return clientID, client, scopes, nil
}

func (s *Server) thingAccessToken(w http.ResponseWriter, ident *identity, body map[string]any) error {
	clientID, client, scopes, err := s.thingScopes(ident, body)
	if err != nil {
		return err
	}
	cnfKey, _ := body["cnf_key"].(string)
	if _, present := body["cnf_key"]; present && cnfKey == "" {
		return errBadRequest("cnf_key must be a string")
	}
	cnf, err := s.tokenBinding(ident, cnfKey)
	if err != nil {
		return err
	}
	g := s.thingGrant(ident, clientID, scopes, grantJWTBearer)
	g.Cnf = cnf
	resp, err := s.issue(g, s.provider(ident.Realm).IssueRefreshTokens && slices.Contains(client.GrantTypes, grantRefreshToken))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// thingRefresh refreshes a token the thing holds (its own or a user's): the
// refresh token must belong to this thing, and the scope may only narrow.
func (s *Server) thingRefresh(w http.ResponseWriter, ident *identity, token string, body map[string]any) error {
	requested, err := requestedScopes(body)
	if err != nil {
		return err
	}
	resp, err := s.refresh(token, requested, func(g grant) bool { return g.ThingID == ident.ID && g.Realm == ident.Realm })
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// refresh runs the refresh_token grant: the old refresh token is spent and a
// new pair issued from the same grant.
func (s *Server) refresh(token string, requested []string, owns func(grant) bool) (tokenResponse, error) {
	info, err := s.lookupToken(token)
	if err != nil || !info.refresh || !owns(info.rec.Grant) {
		return tokenResponse{}, oauthError(http.StatusBadRequest, "invalid_grant", "grant is invalid")
	}
	g := info.rec.Grant
	if len(requested) > 0 {
		if !containsAll(g.Scopes, requested) {
			return tokenResponse{}, oauthError(http.StatusBadRequest, "invalid_scope",
				"Scope(s) requested exceed those originally granted")
		}
		g.Scopes = requested
	}
	if _, err := s.db.Delete(bucketRefresh, tokenHash(token)); err != nil {
		return tokenResponse{}, err
	}
	return s.issuePaired(g, true)
}

// thingIntrospect answers introspect_token for the tokens the thing obtained
// itself, in its own realm: its access and refresh tokens and the user tokens
// of its device-grant requests. Any other token, even an active one, is
// reported inactive, as the introspection endpoint does for a client that
// asks about another client's token; the session is no key to every token.
func (s *Server) thingIntrospect(w http.ResponseWriter, ident *identity, body map[string]any) error {
	token, _ := body["token"].(string)
	if token == "" {
		return errBadRequest("Missing token")
	}
	info, err := s.lookupToken(token)
	if err == nil && (info.rec.Grant.Realm != ident.Realm || info.rec.Grant.ThingID != ident.ID) {
		err = errInactive
	}
	if errors.Is(err, errInactive) {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.introspection(info))
	return nil
}

// thingAttributes answers the allow-listed attributes (narrowed by _fields)
// as AM does: _id a string, every other attribute an array of strings.
func (s *Server) thingAttributes(w http.ResponseWriter, ident *identity, fields string) error {
	names := s.iotService(ident.Realm).AttributeAllowlist
	if fields != "" {
		var picked []string
		for _, f := range strings.Split(fields, ",") {
			if f = strings.TrimSpace(f); slices.Contains(names, f) && !slices.Contains(picked, f) {
				picked = append(picked, f)
			}
		}
		names = picked
	}
	out := map[string]any{"_id": ident.ID}
	for _, n := range names {
		v := ident.Attributes[n]
		if v == nil {
			v = []string{}
		}
		out[n] = v
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
