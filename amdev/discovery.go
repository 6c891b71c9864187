package amdev

import (
	"net/http"
)

// amVersion is the AM release whose protocol amdev follows (ForgeRock's IoT
// SDK v7.4 and its functional tests).
const amVersion = "7.4.0"

// handleServerInfo answers GET /json/serverinfo/* (AM's server information;
// the SDK reads cookieName).
func (s *Server) handleServerInfo(w http.ResponseWriter, r *http.Request, id string) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	if err := checkResource(r, "1"); err != nil {
		return err
	}
	if id == "version" {
		// Administration clients (Frodo) pick their API dialect from it.
		writeJSON(w, http.StatusOK, map[string]any{"_id": "version", "version": amVersion,
			"fullVersion": "ForgeRock Access Management " + amVersion + " Build amdev (amdev, AM-compatible development server)",
			"revision":    "amdev", "date": "2023-September-20 00:00"})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_id":                                   "*",
		"cookieName":                            s.settings.CookieName,
		"domains":                               []string{},
		"protectedUserAttributes":               []string{},
		"forgotPassword":                        "false",
		"selfRegistration":                      "false",
		"lang":                                  "en",
		"successfulUserRegistrationDestination": "default",
		"socialImplementations":                 []string{},
		"referralsEnabled":                      "false",
		"zeroPageLogin":                         map[string]any{"enabled": true, "refererWhitelist": []string{}, "allowedWithoutReferer": true},
		"realm":                                 "/",
		"xuiUserSessionValidationEnabled":       true,
		"fileBasedConfiguration":                true,
		"userIdAttributes":                      []string{},
	})
	return nil
}

// handleDiscovery answers the realm's OpenID Connect discovery document.
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request, realm string) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	base := s.oauthBase(realm)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                        base,
		"authorization_endpoint":                        base + "/authorize",
		"token_endpoint":                                base + "/access_token",
		"introspection_endpoint":                        base + "/introspect",
		"revocation_endpoint":                           base + "/token/revoke",
		"device_authorization_endpoint":                 base + "/device/code",
		"jwks_uri":                                      base + "/connect/jwk_uri",
		"scopes_supported":                              s.supportedScopes(realm),
		"grant_types_supported":                         []string{grantClientCredentials, grantJWTBearer, grantDeviceCode, grantRefreshToken},
		"response_types_supported":                      []string{"token"},
		"token_endpoint_auth_methods_supported":         []string{"client_secret_basic", "client_secret_post"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"id_token_signing_alg_values_supported":         []string{"ES256"},
		"subject_types_supported":                       []string{"public"},
	})
	return nil
}

// handleJWKS answers the key set that verifies access tokens.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.jwks())
	return nil
}

func (s *Server) supportedScopes(realm string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range s.clientIDs(realm) {
		c := s.client(realm, id)
		if c == nil {
			continue
		}
		for _, sc := range c.Scopes {
			if !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	sortStrings(out)
	return out
}
