package amdev

import (
	"crypto"
	"net/http"
	"slices"
	"strings"
)

// secretCertVerification is AM's secret id of the keys that verify
// registration certificates (POP_WITH_CERTIFICATE).
const secretCertVerification = "am.services.iot.cert.verification"

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

// handleSecretMapping serves AM's secret mapping of the certificate
// verification secret in the default keystore
// (global-config/secrets/stores/KeyStoreSecretStore/default-keystore/mappings/…)
// for amAdmin: its aliases are the configured certificateAuthorities, and
// a PUT chooses which of them are trusted from now on (automation rotating
// a CA maps the new one and drops the old). amdev has no keystore to add a
// key to, so an alias that names no configured CA is 400; other secret ids
// are 501.
func (s *Server) handleSecretMapping(w http.ResponseWriter, r *http.Request, secretID string) error {
	if err := checkResource(r, "1"); err != nil {
		return err
	}
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	if secretID != secretCertVerification {
		return errorf(http.StatusNotImplemented, "amdev does not serve the secret mapping %s: it serves %s only; its token signing keys are its own (see docs/amdev.md)",
			quote(secretID), secretCertVerification)
	}
	if err := requireMethod(r, http.MethodGet, http.MethodPut); err != nil {
		return err
	}
	doc := func() map[string]any {
		s.caMu.RLock()
		defer s.caMu.RUnlock()
		aliases := []string{}
		for _, e := range s.caEntries {
			aliases = append(aliases, caAlias(e))
		}
		return withRevision(map[string]any{"_id": secretID, "secretId": secretID, "aliases": aliases,
			"_type": map[string]any{"_id": "mappings", "name": "Mappings", "collection": true}})
	}
	if r.Method == http.MethodGet {
		writeResource(w, http.StatusOK, doc())
		return nil
	}
	body, err := readObject(r)
	if err != nil {
		return err
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
	writeResource(w, http.StatusOK, doc())
	return nil
}
