package amdev

import (
	"crypto"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// secretCertVerification is AM's secret id of the keys that verify
// registration certificates (POP_WITH_CERTIFICATE).
const secretCertVerification = "am.services.iot.cert.verification"

// The one secret store amdev has: AM's default keystore.
const (
	secretStoreType = "KeyStoreSecretStore"
	secretStoreID   = "default-keystore"
)

// aliasPattern bounds the keystore aliases a mapping may name.
var aliasPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// caAlias is the keystore alias amdev reports for a certificateAuthorities
// entry: AM's test alias for the embedded walk-through key, else the path.
func caAlias(entry string) string {
	if entry == builtinES256Test {
		return "es256test"
	}
	return entry
}

// trustedCAs are the keys that verify registration certificates now.
func (s *Server) trustedCAs() []crypto.PublicKey {
	s.caMu.RLock()
	defer s.caMu.RUnlock()
	return s.caKeys
}

// mappingDoc is a secret mapping in AM's JSON.
func mappingDoc(secretID string, aliases []string) map[string]any {
	if aliases == nil {
		aliases = []string{}
	}
	return withRevision(map[string]any{"_id": secretID, "secretId": secretID, "aliases": aliases,
		"_type": map[string]any{"_id": "mappings", "name": "Mappings", "collection": true}})
}

// handleSecretMappings serves AM's secret mappings of the default keystore
// (global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings[/{secretId}])
// for amAdmin: the token signing and encryption secrets (rotation: the
// first alias signs, every alias verifies) and the certificate
// verification secret. Other stores are 404, other secret ids 501.
func (s *Server) handleSecretMappings(w http.ResponseWriter, r *http.Request, storeType, storeID, secretID string) error {
	if err := checkResource(r, "1"); err != nil {
		return err
	}
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	if storeType != secretStoreType || storeID != secretStoreID {
		return errorf(http.StatusNotFound, "Secret store %s/%s not found: amdev has one, %s/%s", storeType, storeID,
			secretStoreType, secretStoreID)
	}
	var body map[string]any
	create := false
	if secretID == "" {
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodGet && q.Get("_queryFilter") == "true":
			docs := []map[string]any{s.certMappingDoc()}
			for _, t := range tokenSecrets {
				docs = append(docs, mappingDoc(t.id, s.secretAliases(t.id)))
			}
			writeJSON(w, http.StatusOK, queryResponse(docs))
			return nil
		case r.Method == http.MethodGet:
			return errorf(http.StatusNotImplemented, "Query not supported: %s", q.Get("_queryFilter"))
		case r.Method != http.MethodPost || q.Get("_action") != "create":
			return requireMethod(r, http.MethodGet)
		}
		var err error
		if body, err = readObject(r); err != nil {
			return err
		}
		secretID, _ = body["secretId"].(string)
		if secretID == "" {
			return errBadRequest("secretId is required")
		}
		create = true
	} else if err := requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete); err != nil {
		return err
	}
	if secretID == secretCertVerification {
		return s.certMapping(w, r, body, create)
	}
	t, ok := lookupTokenSecret(secretID)
	if !ok {
		return errorf(http.StatusNotImplemented, "amdev does not serve the secret mapping %s: it serves %s and %s (see docs/amdev.md)",
			quote(secretID), strings.Join(tokenSecretIDs(), ", "), secretCertVerification)
	}
	cur := mappingDoc(t.id, s.secretAliases(t.id))
	if r.Method == http.MethodGet {
		writeResource(w, http.StatusOK, cur)
		return nil
	}
	if !revisionMatches(r, cur) {
		return errorf(http.StatusPreconditionFailed, "Precondition Failed: the resource has revision %s", cur["_rev"])
	}
	if r.Method == http.MethodDelete {
		if err := s.mapSecret(t.id, nil); err != nil {
			return err
		}
		s.log.Info("secret mapping reset to its default alias", "secretId", t.id, "alias", t.defaultAlias)
		writeResource(w, http.StatusOK, cur)
		return nil
	}
	if r.Header.Get("If-None-Match") == "*" {
		return errorf(http.StatusPreconditionFailed, "Precondition Failed: the mapping %s exists", t.id)
	}
	if body == nil {
		var err error
		if body, err = readObject(r); err != nil {
			return err
		}
	}
	aliases, err := mappingAliases(body, t.id)
	if err != nil {
		return err
	}
	if err := s.mapSecret(t.id, aliases); err != nil {
		return err
	}
	s.log.Info("secret mapping updated", "secretId", t.id, "active", aliases[0], "aliases", aliases)
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	writeResource(w, status, mappingDoc(t.id, aliases))
	return nil
}

func tokenSecretIDs() []string {
	var ids []string
	for _, t := range tokenSecrets {
		ids = append(ids, t.id)
	}
	return ids
}

// mappingAliases reads a mapping body's aliases: a non-empty list of
// keystore alias names, duplicates dropped; a secretId, if sent, must be
// the mapping's.
func mappingAliases(body map[string]any, secretID string) ([]string, error) {
	if id, ok := body["secretId"]; ok && id != secretID {
		return nil, errBadRequest("secretId %v does not match the mapping %s", id, secretID)
	}
	raw, ok := body["aliases"].([]any)
	if !ok || len(raw) == 0 {
		return nil, errBadRequest("aliases must be a non-empty array of keystore aliases")
	}
	var out []string
	for _, a := range raw {
		alias, _ := a.(string)
		if !aliasPattern.MatchString(alias) {
			return nil, errBadRequest("alias %v is not a keystore alias (letters, digits, '.', '_', '-'; at most 128)", a)
		}
		if !slices.Contains(out, alias) {
			out = append(out, alias)
		}
	}
	return out, nil
}

func (s *Server) certMappingDoc() map[string]any {
	s.caMu.RLock()
	defer s.caMu.RUnlock()
	aliases := []string{}
	for _, e := range s.caEntries {
		aliases = append(aliases, caAlias(e))
	}
	return mappingDoc(secretCertVerification, aliases)
}

// certMapping serves the certificate verification mapping: its aliases
// are the configured certificateAuthorities, and a PUT chooses which of
// them are trusted from now on (automation rotating a CA maps the new one
// and drops the old). amdev has no keystore to add a CA to, so an alias
// that names no configured CA is 400.
func (s *Server) certMapping(w http.ResponseWriter, r *http.Request, body map[string]any, create bool) error {
	if r.Method == http.MethodGet {
		writeResource(w, http.StatusOK, s.certMappingDoc())
		return nil
	}
	if !create {
		if err := requireMethod(r, http.MethodGet, http.MethodPut); err != nil {
			return err
		}
		var err error
		if body, err = readObject(r); err != nil {
			return err
		}
	}
	raw, ok := body["aliases"].([]any)
	if !ok || len(raw) == 0 {
		return errBadRequest("aliases must be a non-empty array of keystore aliases")
	}
	var entries []string
	for _, a := range raw {
		alias, _ := a.(string)
		i := slices.IndexFunc(s.settings.CertificateAuthorities, func(e string) bool { return caAlias(e) == alias })
		if i < 0 {
			var known []string
			for _, e := range s.settings.CertificateAuthorities {
				known = append(known, caAlias(e))
			}
			return errBadRequest("alias %s is not in amdev's keystore, which holds the configured certificateAuthorities: %s",
				quote(alias), strings.Join(known, ", "))
		}
		if !slices.Contains(entries, s.settings.CertificateAuthorities[i]) {
			entries = append(entries, s.settings.CertificateAuthorities[i])
		}
	}
	keys, err := loadCAKeys(entries)
	if err != nil {
		return err
	}
	s.caMu.Lock()
	s.caEntries, s.caKeys = entries, keys
	s.caMu.Unlock()
	s.log.Info("certificate verification mapping updated", "aliases", len(entries))
	status := http.StatusOK
	if create {
		status = http.StatusCreated
	}
	writeResource(w, status, s.certMappingDoc())
	return nil
}
