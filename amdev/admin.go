package amdev

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// oauthProviderService is the CREST name of AM's OAuth2 Provider service.
const oauthProviderService = "oauth-oidc"

// provider is realm's OAuth2 Provider: the configured settings unless the
// admin REST changed them for that realm.
func (s *Server) provider(realm string) OAuth2Provider {
	return realmSetting(&s.provMu, &s.providers, realm, s.settings.OAuth2)
}

// servedAdminREST names the admin REST resources amdev serves, for the
// message of those it does not.
const servedAdminREST = "global-config/realms, realm-config/services/oauth-oidc and iot, realm-config/agents/OAuth2Client " +
	"and SoftwarePublisher, realm-config/authentication/authenticationtrees (trees, nodes), /json/scripts (it runs none) " +
	"and the secret mappings of the default keystore (token signing and encryption keys, " + secretCertVerification + ")"

// errNotServed answers the parts of AM's admin REST amdev does not implement:
// 501 and a message, so automation stops with a reason instead of a bare 404.
func errNotServed(r *http.Request) *httpError {
	return errorf(http.StatusNotImplemented,
		"amdev does not serve %s %s; of AM's admin REST it serves %s (see docs/amdev.md)",
		r.Method, r.URL.Path, servedAdminREST)
}

// adminRealm is the realm of a realm-config request: the realm path of the
// URL, else its ?realm= parameter (or the DNS alias it was sent to).
func (s *Server) adminRealm(r *http.Request, realm string, pathRealm bool) (string, error) {
	if !pathRealm {
		p, err := s.resolveRealm(r.URL.Query().Get("realm"), r.Host)
		if err != nil {
			return "", errorf(http.StatusNotFound, "Realm not found").with(err)
		}
		return p, nil
	}
	if !s.realmExists(realm) {
		return "", errorf(http.StatusNotFound, "Realm not found")
	}
	return realm, nil
}

// handleOAuthProvider serves AM's realm-config/services/oauth-oidc resource
// for amAdmin: GET reads the realm's OAuth2 Provider, PUT changes it at once
// for new tokens, DELETE returns the realm to the configured settings.
func (s *Server) handleOAuthProvider(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool) error {
	realm, create, err := s.serviceScope(r, realm, pathRealm)
	if err != nil {
		return err
	}
	s.provMu.Lock()
	defer s.provMu.Unlock()
	cur, changed := s.providers[realm]
	if !changed {
		cur = s.settings.OAuth2
	}
	doc := providerDoc(cur)
	if r.Method != http.MethodGet && !revisionMatches(r, doc) {
		return errorf(http.StatusPreconditionFailed, "Precondition Failed: the resource has revision %s", doc["_rev"])
	}
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		body, err := readObject(r)
		if err != nil {
			return err
		}
		next, err := applyProviderDoc(cur, body)
		if err != nil {
			return err
		}
		if s.providers == nil {
			s.providers = map[string]OAuth2Provider{}
		}
		s.providers[realm] = next
		doc = providerDoc(next)
		s.log.Info("oauth2 provider updated", "realm", realm, "tokenFormat", next.TokenFormat,
			"accessTokenLifetime", time.Duration(next.AccessTokenLifetime).String())
	case http.MethodDelete:
		delete(s.providers, realm)
		s.log.Info("oauth2 provider reset to the configured settings", "realm", realm)
	}
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	writeResource(w, status, doc)
	return nil
}

// providerDoc is p in AM's oauth-oidc JSON, limited to the attributes amdev
// honours. Lifetimes are whole seconds, as in AM.
func providerDoc(p OAuth2Provider) map[string]any {
	secs := func(d Duration) int64 { return int64(time.Duration(d) / time.Second) }
	doc := map[string]any{
		"_id": "",
		"coreOAuth2Config": map[string]any{
			"accessTokenLifetime":    secs(p.AccessTokenLifetime),
			"refreshTokenLifetime":   secs(p.RefreshTokenLifetime),
			"issueRefreshToken":      p.IssueRefreshTokens,
			"statelessTokensEnabled": p.TokenFormat == "jwt",
		},
		"advancedOAuth2Config": map[string]any{
			"tokenSigningAlgorithm":  p.SigningAlgorithm,
			"tokenEncryptionEnabled": p.TokenEncryption,
		},
		"deviceCodeConfig": map[string]any{
			"deviceCodeLifetime": secs(p.DeviceCodeLifetime),
			"devicePollInterval": secs(p.DevicePollInterval),
		},
		"_type": map[string]any{"_id": oauthProviderService, "name": "OAuth2 Provider", "collection": false},
	}
	return withRevision(doc)
}

// applyProviderDoc returns cur changed by the attributes of an oauth-oidc
// body that amdev honours. A value amdev cannot honour (another signing
// algorithm, a lifetime that is not a positive number of
// seconds) is refused with 400 naming the attribute, and nothing changes.
// Attributes amdev does not model (AM's OIDC, consent, plugin settings…) are
// accepted so that a document read from AM can be written back, and have no
// effect: the answer shows what amdev applied.
func applyProviderDoc(cur OAuth2Provider, body map[string]any) (OAuth2Provider, error) {
	next := cur
	section := func(name string) (map[string]any, error) {
		v, ok := body[name]
		if !ok || v == nil {
			return nil, nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errBadRequest("%s must be an object", name)
		}
		return m, nil
	}
	seconds := func(sec map[string]any, secName, key string, minimum int64, dst *Duration) error {
		v, ok := sec[key]
		if !ok {
			return nil
		}
		n, isNum := v.(json.Number)
		i, err := n.Int64()
		if !isNum || err != nil || i < minimum || i > int64(100*365*24*3600) {
			return errBadRequest("%s.%s must be a whole number of seconds, at least %d", secName, key, minimum)
		}
		*dst = Duration(time.Duration(i) * time.Second)
		return nil
	}
	boolean := func(sec map[string]any, secName, key string, dst *bool) error {
		v, ok := sec[key]
		if !ok {
			return nil
		}
		b, isBool := v.(bool)
		if !isBool {
			return errBadRequest("%s.%s must be true or false", secName, key)
		}
		*dst = b
		return nil
	}
	core, err := section("coreOAuth2Config")
	if err != nil {
		return cur, err
	}
	stateless := cur.TokenFormat == "jwt"
	for _, step := range []error{
		seconds(core, "coreOAuth2Config", "accessTokenLifetime", 1, &next.AccessTokenLifetime),
		seconds(core, "coreOAuth2Config", "refreshTokenLifetime", 1, &next.RefreshTokenLifetime),
		boolean(core, "coreOAuth2Config", "issueRefreshToken", &next.IssueRefreshTokens),
		boolean(core, "coreOAuth2Config", "statelessTokensEnabled", &stateless),
	} {
		if step != nil {
			return cur, step
		}
	}
	next.TokenFormat = "opaque"
	if stateless {
		next.TokenFormat = "jwt"
	}
	adv, err := section("advancedOAuth2Config")
	if err != nil {
		return cur, err
	}
	if v, ok := adv["tokenSigningAlgorithm"]; ok {
		alg, _ := v.(string)
		if !slices.Contains(tokenSigningAlgorithms, alg) {
			return cur, errBadRequest("advancedOAuth2Config.tokenSigningAlgorithm %v is not supported: amdev signs client-based tokens with %s",
				v, strings.Join(tokenSigningAlgorithms, ", "))
		}
		next.SigningAlgorithm = alg
	}
	if err := boolean(adv, "advancedOAuth2Config", "tokenEncryptionEnabled", &next.TokenEncryption); err != nil {
		return cur, err
	}
	dev, err := section("deviceCodeConfig")
	if err != nil {
		return cur, err
	}
	if err := seconds(dev, "deviceCodeConfig", "deviceCodeLifetime", 1, &next.DeviceCodeLifetime); err != nil {
		return cur, err
	}
	if err := seconds(dev, "deviceCodeConfig", "devicePollInterval", 0, &next.DevicePollInterval); err != nil {
		return cur, err
	}
	return next, nil
}

// handleScripts serves AM's /json/scripts for amAdmin as far as amdev can
// honour it: amdev runs no scripts, so it holds none. A query answers an
// empty result, a read 404, and a script sent to be stored 501 with a
// message that names it and says what to use instead, so that automation
// never believes a script is in force that amdev would silently ignore.
func (s *Server) handleScripts(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool, id string) error {
	if _, err := s.adminScope(r, realm, pathRealm); err != nil {
		return err
	}
	switch {
	case r.Method == http.MethodGet && id == "":
		writeJSON(w, http.StatusOK, queryResponse([]map[string]any{}))
		return nil
	case r.Method == http.MethodGet || r.Method == http.MethodDelete:
		return errorf(http.StatusNotFound, "Script %s not found", quote(id))
	case r.Method == http.MethodPost && id == "" && r.URL.Query().Get("_action") == "create",
		r.Method == http.MethodPut && id != "":
	default:
		return requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete)
	}
	var body struct {
		ID       string `json:"_id"`
		Name     string `json:"name"`
		Context  string `json:"context"`
		Language string `json:"language"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body) // the message names what it can; the answer is 501 either way
	name := body.Name
	if name == "" {
		name = cmp.Or(id, body.ID)
	}
	what := quote(name)
	if body.Context != "" || body.Language != "" {
		what += " (" + strings.Trim(body.Context+", "+body.Language, ", ") + ")"
	}
	s.log.Warn("script refused: amdev runs no scripts", "script", name, "context", body.Context)
	return errorf(http.StatusNotImplemented,
		"amdev cannot run scripts: the script %s was not stored. The IoT access-token modification script's effect "+
			"(claims from thing attributes) is oauth2.claimsFromAttributes in amdev's config file; a scripted decision "+
			"node's claim checks are the Authenticate node's requiredClaims (see docs/amdev.md)", what)
}

// readObject reads an admin request's body, which must be one JSON object, and
// answers 400 in AM's shape when it is not.
func readObject(r *http.Request) (map[string]any, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, errBadRequest("Unable to read request body").with(err)
	}
	return objectBody(data)
}
