package amdev

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// oauthProviderService is the CREST name of AM's OAuth2 Provider service.
const oauthProviderService = "oauth-oidc"

// provider is realm's OAuth2 Provider: the configured settings unless the
// admin REST changed them for that realm.
func (s *Server) provider(realm string) OAuth2Provider {
	s.provMu.RLock()
	defer s.provMu.RUnlock()
	if p, ok := s.providers[realm]; ok {
		return p
	}
	return s.settings.OAuth2
}

// errNotServed answers the parts of AM's admin REST amdev does not implement:
// 501 and a message, so automation stops with a reason instead of a bare 404.
func errNotServed(r *http.Request) *httpError {
	return errorf(http.StatusNotImplemented,
		"amdev does not serve %s %s; of AM's admin REST it serves realm-config/services/oauth-oidc only (see docs/amdev.md)",
		r.Method, r.URL.Path)
}

// handleOAuthProvider serves AM's realm-config/services/oauth-oidc resource
// for amAdmin: GET reads the realm's OAuth2 Provider, PUT changes it at once
// for new tokens, DELETE returns the realm to the configured settings.
func (s *Server) handleOAuthProvider(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool) error {
	if err := requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete); err != nil {
		return err
	}
	if err := checkResource(r, "1"); err != nil {
		return err
	}
	if !pathRealm {
		var err error
		if realm, err = s.resolveRealm(r.URL.Query().Get("realm"), r.Host); err != nil {
			return errorf(http.StatusNotFound, "Realm not found").with(err)
		}
	} else if !s.realms[realm] {
		return errorf(http.StatusNotFound, "Realm not found")
	}
	caller := s.lookupSession(s.sessionToken(r))
	if caller == nil {
		return errAccessDenied()
	}
	if caller.kind != kindAdmin {
		return errForbidden("Access Denied")
	}
	s.provMu.Lock()
	defer s.provMu.Unlock()
	cur, changed := s.providers[realm]
	if !changed {
		cur = s.settings.OAuth2
	}
	doc := providerDoc(cur)
	if m := r.Header.Get("If-Match"); r.Method != http.MethodGet && m != "" && m != "*" && m != doc["_rev"] {
		return errorf(http.StatusPreconditionFailed, "Precondition Failed: the resource has revision %s", doc["_rev"])
	}
	switch r.Method {
	case http.MethodPut:
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return errBadRequest("Unable to read request body").with(err)
		}
		body, err := decodeObject(data)
		if err != nil {
			return errBadRequest("The request body is not a JSON object").with(err)
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
	w.Header().Set("ETag", `"`+doc["_rev"].(string)+`"`)
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, doc)
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
			"tokenSigningAlgorithm":  "ES256",
			"tokenEncryptionEnabled": false,
		},
		"deviceCodeConfig": map[string]any{
			"deviceCodeLifetime": secs(p.DeviceCodeLifetime),
			"devicePollInterval": secs(p.DevicePollInterval),
		},
		"_type": map[string]any{"_id": oauthProviderService, "name": "OAuth2 Provider", "collection": false},
	}
	b, _ := json.Marshal(doc) // maps of plain values always encode
	sum := sha256.Sum256(b)
	doc["_rev"] = hex.EncodeToString(sum[:8])
	return doc
}

// applyProviderDoc returns cur changed by the attributes of an oauth-oidc
// body that amdev honours. A value amdev cannot honour (another signing
// algorithm, encrypted tokens, a lifetime that is not a positive number of
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
	if v, ok := adv["tokenSigningAlgorithm"]; ok && v != "ES256" {
		return cur, errBadRequest("advancedOAuth2Config.tokenSigningAlgorithm %v is not supported: amdev signs client-based tokens with ES256 only", v)
	}
	encrypt := false
	if err := boolean(adv, "advancedOAuth2Config", "tokenEncryptionEnabled", &encrypt); err != nil {
		return cur, err
	}
	if encrypt {
		return cur, errBadRequest("advancedOAuth2Config.tokenEncryptionEnabled true is not supported: amdev does not encrypt tokens")
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
