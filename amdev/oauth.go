package amdev

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// authenticateClient checks client credentials sent with HTTP Basic
// (URL-encoded id and secret, RFC 6749 §2.3.1) or in the form (client_secret_post).
func (s *Server) authenticateClient(r *http.Request, realm string) (string, *Client, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return "", nil, oauthError(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c := s.client(realm, id)
	if id == "" || c == nil || subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return "", nil, oauthError(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
	}
	return id, c, nil
}

// parseForm reads an application/x-www-form-urlencoded POST body.
func parseForm(r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	if err := r.ParseForm(); err != nil {
		return oauthError(http.StatusBadRequest, "invalid_request", "Invalid form body")
	}
	return nil
}

// clientForm parses a form POST and authenticates the client that sent it.
func (s *Server) clientForm(r *http.Request, realm string) (string, *Client, error) {
	if err := parseForm(r); err != nil {
		return "", nil, err
	}
	return s.authenticateClient(r, realm)
}

// formToken looks up the form's token parameter; info is nil when the token is not active.
func (s *Server) formToken(r *http.Request) (token string, info *tokenInfo, err error) {
	token = r.PostForm.Get("token")
	if token == "" {
		return "", nil, oauthError(http.StatusBadRequest, "invalid_request", "Missing token")
	}
	info, err = s.lookupToken(token)
	if errors.Is(err, errInactive) {
		return token, nil, nil
	}
	return token, info, err
}

// handleToken serves the token endpoint: client_credentials, jwt-bearer,
// refresh_token and device_code grants.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, realm string) error {
	clientID, client, err := s.clientForm(r, realm)
	if err != nil {
		return err
	}
	gt := r.PostForm.Get("grant_type")
	if gt == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "Missing grant_type")
	}
	if !slices.Contains(client.GrantTypes, gt) {
		return oauthError(http.StatusBadRequest, "unauthorized_client", fmt.Sprintf("Grant type %s is not allowed for this client", gt))
	}
	requested := strings.Fields(r.PostForm.Get("scope"))
	withRefresh := s.provider(realm).IssueRefreshTokens && slices.Contains(client.GrantTypes, grantRefreshToken)
	var resp tokenResponse
	switch gt {
	case grantClientCredentials:
		scopes, err := grantScopes(client, requested)
		if err != nil {
			return err
		}
		resp, err = s.issue(grant{Realm: realm, ClientID: clientID, Subject: clientID, SubjectType: "age",
			Scopes: scopes, GrantType: gt}, false)
		if err != nil {
			return err
		}
	case grantJWTBearer:
		ident, err := s.verifyBearerAssertion(r, realm, r.PostForm.Get("assertion"))
		if err != nil {
			return err
		}
		scopes, err := grantScopes(client, requested)
		if err != nil {
			return err
		}
		cnf, err := s.tokenBinding(ident, r.PostForm.Get("cnf_key"))
		if err != nil {
			return err
		}
		g := s.thingGrant(ident, clientID, scopes, gt)
		g.Cnf = cnf
		if resp, err = s.issue(g, false); err != nil {
			return err
		}
	case grantRefreshToken:
		resp, err = s.refresh(r.PostForm.Get("refresh_token"), requested,
			func(g grant) bool { return g.ClientID == clientID && g.Realm == realm })
		if err != nil {
			return err
		}
	case grantDeviceCode:
		dc, err := s.pollDevice(r.PostForm.Get("device_code"), func(d *deviceCode) bool {
			return d.clientID == clientID && d.realm == realm
		})
		if err != nil {
			return err
		}
		if resp, err = s.issuePaired(userGrant(dc), withRefresh); err != nil {
			return err
		}
	default:
		return oauthError(http.StatusBadRequest, "unsupported_grant_type", "Grant type is not supported")
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// verifyBearerAssertion checks an RFC 7523 authorization grant made by a
// thing: iss = sub = thing id, signed by a key of its thingKeys (header kid),
// audience the realm's OAuth base or token endpoint as addressed (oauthAudiences), not expired, a lifetime
// within assertionMaxLifetime, and a jti not used before.
func (s *Server) verifyBearerAssertion(r *http.Request, realm, raw string) (*identity, error) {
	invalid := func(cause error) error {
		return oauthError(http.StatusBadRequest, "invalid_grant", "JWT is not valid").with(cause)
	}
	jws, err := parseCompactJWS(raw)
	if err != nil {
		return nil, invalid(err)
	}
	claims, err := jws.claims()
	if err != nil {
		return nil, invalid(err)
	}
	iss, _ := claims["iss"].(string)
	sub, _ := claims["sub"].(string)
	if sub == "" || iss != sub {
		return nil, invalid(errors.New("iss must equal sub"))
	}
	ident, err := s.getIdentity(realm, sub)
	if err != nil {
		return nil, invalid(err)
	}
	keys, err := ident.keys()
	if err != nil {
		return nil, invalid(err)
	}
	kid := jws.headerString("kid")
	if kid == "" {
		kid = cnfKID(claims)
	}
	matched := keys.Key(kid)
	if len(matched) == 0 {
		return nil, invalid(errors.New("no thing key with the JWT's kid"))
	}
	if err := jws.verify(matched[0].Key); err != nil {
		return nil, invalid(err)
	}
	if !audienceOK(claims["aud"], s.oauthAudiences(r, realm)) {
		return nil, invalid(errors.New("audience not accepted"))
	}
	if err := s.checkJWTTimes(claims); err != nil {
		return nil, invalid(err)
	}
	if err := s.rememberJTI(claims, jws, true); err != nil {
		return nil, invalid(err)
	}
	return ident, nil
}

// handleIntrospect serves RFC 7662 introspection. A client sees its own
// tokens; one with introspectAllTokens sees every token; anything else is inactive.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request, realm string) error {
	clientID, client, err := s.clientForm(r, realm)
	if err != nil {
		return err
	}
	_, info, err := s.formToken(r)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	if info == nil || info.rec.Grant.Realm != realm || (!client.IntrospectAllTokens && info.rec.Grant.ClientID != clientID) {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return nil
	}
	writeJSON(w, http.StatusOK, s.introspection(info))
	return nil
}

// handleRevoke serves RFC 7009 revocation: 200 whether or not the token was
// known, as the RFC requires; only the client a token was issued to can revoke it.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, realm string) error {
	clientID, _, err := s.clientForm(r, realm)
	if err != nil {
		return err
	}
	token, info, err := s.formToken(r)
	if err != nil {
		return err
	}
	if info != nil && info.rec.Grant.ClientID == clientID && info.rec.Grant.Realm == realm {
		if err := s.revoke(info, token); err != nil {
			return err
		}
		s.log.Debug("revoked token", "client", clientID, "token", fingerprint(token))
		s.tokenRevoked(info, token)
	}
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

// handleDeviceCode serves the RFC 8628 device authorization endpoint.
func (s *Server) handleDeviceCode(w http.ResponseWriter, r *http.Request, realm string) error {
	clientID, client, err := s.clientForm(r, realm)
	if err != nil {
		return err
	}
	if !slices.Contains(client.GrantTypes, grantDeviceCode) {
		return oauthError(http.StatusBadRequest, "unauthorized_client", "The device code grant is not allowed for this client")
	}
	scopes, err := grantScopes(client, strings.Fields(r.PostForm.Get("scope")))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.startDeviceFlow(realm, clientID, "", scopes))
	return nil
}
