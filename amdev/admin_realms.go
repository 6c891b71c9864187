package amdev

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
)

// realmNameForbidden are the characters AM refuses in a realm name or alias
// (its RealmResource blacklist, which also keeps LDAP happy).
const realmNameForbidden = `$&+,/:;=?@ #%<>"\`

// realmID is AM's CREST id of a realm: the full path in standard base64
// ("Lw==" for the root realm).
func realmID(path string) string { return base64.StdEncoding.EncodeToString([]byte(path)) }

// requireAdmin answers 401 without an SSO token and 403 for a session that is
// not amAdmin's, as AM's admin REST does.
func (s *Server) requireAdmin(r *http.Request) *httpError {
	caller := s.lookupSession(s.sessionToken(r))
	if caller == nil {
		return errAccessDenied()
	}
	if caller.kind != kindAdmin {
		return errForbidden("Access Denied")
	}
	return nil
}

// handleRealms serves AM's global-config/realms collection for amAdmin:
// query (_queryFilter=true), read, create (_action=create), update, delete,
// and the template and schema actions. Like the rest of the admin REST's
// changes, the realm table is kept in the store (see admin_state.go).
func (s *Server) handleRealms(w http.ResponseWriter, r *http.Request, id string) error {
	if err := checkResource(r, "1"); err != nil {
		return err
	}
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	q := r.URL.Query()
	if id == "" {
		switch {
		case r.Method == http.MethodGet:
			if f := q.Get("_queryFilter"); f != "true" {
				return errorf(http.StatusNotImplemented, "Query not supported: %s", f)
			}
			if q.Has("_pagedResultsCookie") || q.Has("_pagedResultsOffset") || q.Has("_pageSize") {
				return errorf(http.StatusNotImplemented, "Query paging not currently supported")
			}
			return s.queryRealms(w)
		case r.Method == http.MethodPost && q.Get("_action") == "create":
			return s.createRealm(w, r)
		case r.Method == http.MethodPost && q.Get("_action") == "template":
			writeJSON(w, http.StatusOK, map[string]any{"parentPath": "/", "active": true})
			return nil
		case r.Method == http.MethodPost && q.Get("_action") == "schema":
			writeJSON(w, http.StatusOK, realmSchema)
			return nil
		case r.Method == http.MethodPost:
			return errBadRequest("Action %s not supported", q.Get("_action"))
		case r.Method == http.MethodPut:
			return errorf(http.StatusNotImplemented, "Cannot provide ID for Realm resource")
		}
		return requireMethod(r, http.MethodGet, http.MethodPost)
	}
	raw, err := base64.StdEncoding.DecodeString(id)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(id); err != nil {
			return errBadRequest("Realm id %q is not base64", id)
		}
	}
	path, err := normalizeRealmPath(string(raw))
	if err != nil || path != string(raw) {
		return errorf(http.StatusNotFound, "Realm cannot be read: %s", raw)
	}
	switch r.Method {
	case http.MethodGet:
		doc, ok := s.realmDoc(path)
		if !ok {
			return errorf(http.StatusNotFound, "Realm cannot be read: %s", path)
		}
		writeResource(w, http.StatusOK, doc)
		return nil
	case http.MethodPut:
		return s.updateRealm(w, r, path)
	case http.MethodDelete:
		return s.deleteRealm(w, path)
	}
	return requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete)
}

// realmSchema is the JSON schema AM publishes for the realm resource.
var realmSchema = map[string]any{
	"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "title": "Realm",
	"description": "Represents a Realm Resource",
	"properties": map[string]any{
		"name":       map[string]any{"type": "string", "title": "Name", "description": "The name of the Realm"},
		"active":     map[string]any{"type": "boolean", "title": "Active", "description": "True if the Realm is active"},
		"parentPath": map[string]any{"type": "string", "title": "Parent", "description": "The path of the Realm's parent Realm"},
		"aliases": map[string]any{"type": "array", "title": "Aliases", "items": map[string]any{"type": "string"},
			"description": "Aliases which can be used reference to the Realm"},
	},
	"required": []string{"name", "active", "parentPath", "aliases"},
}

// writeResource answers a CREST resource with its revision as ETag.
func writeResource(w http.ResponseWriter, status int, doc map[string]any) {
	if rev, ok := doc["_rev"].(string); ok {
		w.Header().Set("ETag", `"`+rev+`"`)
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, status, doc)
}

// withRevision sets doc's _rev to a hash of its content: it changes exactly
// when the resource does.
func withRevision(doc map[string]any) map[string]any {
	delete(doc, "_rev")
	b, _ := json.Marshal(doc) // maps of plain values always encode
	sum := sha256.Sum256(b)
	doc["_rev"] = hex.EncodeToString(sum[:8])
	return doc
}

// realmDoc is a realm in AM's JSON: _id, name (its last segment, "/" for
// the root realm), parentPath (null for the root realm), active, aliases.
func (s *Server) realmDoc(path string) (map[string]any, bool) {
	s.realmTab.mu.RLock()
	defer s.realmTab.mu.RUnlock()
	return s.realmDocLocked(path)
}

func (s *Server) realmDocLocked(path string) (map[string]any, bool) {
	ri := s.realmTab.realms[path]
	if ri == nil {
		return nil, false
	}
	var parent any // JSON null for the root realm
	name := "/"
	if path != "/" {
		parent = parentRealm(path)
		name = path[strings.LastIndex(path, "/")+1:]
	}
	aliases := slices.Clone(ri.aliases)
	if aliases == nil {
		aliases = []string{}
	}
	return withRevision(map[string]any{
		"_id": realmID(path), "parentPath": parent, "active": ri.active, "name": name, "aliases": aliases,
	}), true
}

func (s *Server) queryRealms(w http.ResponseWriter) error {
	s.realmTab.mu.RLock()
	paths := make([]string, 0, len(s.realmTab.realms))
	for p := range s.realmTab.realms {
		paths = append(paths, p)
	}
	slices.Sort(paths) // "/" first, each realm before its sub-realms
	result := make([]map[string]any, 0, len(paths))
	for _, p := range paths {
		doc, _ := s.realmDocLocked(p)
		result = append(result, doc)
	}
	s.realmTab.mu.RUnlock()
	writeJSON(w, http.StatusOK, queryResponse(result))
	return nil
}

// queryResponse is CREST's answer to a query without paging.
func queryResponse[T any](result []T) map[string]any {
	return map[string]any{"result": result, "resultCount": len(result), "pagedResultsCookie": nil,
		"totalPagedResultsPolicy": "NONE", "totalPagedResults": -1, "remainingPagedResults": -1}
}

// realmBody is a realm resource as a client sends it.
type realmBody struct {
	name, parentPath string
	active           bool
	aliases          []string
}

// readRealmBody reads and checks a realm create or update body with AM's
// messages. Aliases may be absent on update (AM keeps none then).
func readRealmBody(r *http.Request, create bool) (realmBody, error) {
	var b realmBody
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return b, errBadRequest("Unable to read request body").with(err)
	}
	m, err := decodeObject(data)
	if err != nil {
		return b, errBadRequest("The request body is not a JSON object").with(err)
	}
	str := func(key string) (string, error) {
		v, ok := m[key].(string)
		if !ok || strings.TrimSpace(v) == "" {
			return "", errBadRequest("No %s parameter provided", key)
		}
		return v, nil
	}
	if b.name, err = str("name"); err != nil {
		return b, err
	}
	if b.parentPath, err = str("parentPath"); err != nil {
		return b, err
	}
	switch v := m["active"].(type) {
	case bool:
		b.active = v
	case nil:
		if create {
			return b, errBadRequest("No active parameter provided")
		}
		return b, errBadRequest("Invalid attribute values")
	default:
		if create {
			return b, errBadRequest("Wrong parameter type provided in active. Expected boolean")
		}
		return b, errBadRequest("Invalid attribute values")
	}
	switch v := m["aliases"].(type) {
	case nil:
		if create {
			return b, errBadRequest("No aliases parameter provided")
		}
	case []any:
		for _, a := range v {
			alias, ok := a.(string)
			if !ok || strings.TrimSpace(alias) == "" {
				return b, errBadRequest("No aliases parameter provided")
			}
			if strings.ContainsAny(alias, realmNameForbidden) {
				return b, errBadRequest("Realm alias cannot contain: %s", realmNameForbidden)
			}
			if !slices.Contains(b.aliases, alias) {
				b.aliases = append(b.aliases, alias)
			}
		}
	default:
		return b, errBadRequest("Wrong parameter type provided in aliases. Expected list")
	}
	if create && strings.ContainsAny(b.name, realmNameForbidden) {
		return b, errBadRequest("Realm names cannot contain: %s", realmNameForbidden)
	}
	return b, nil
}

// fullPath is the realm path a body names.
func (b realmBody) fullPath() (string, error) {
	return normalizeRealmPath(strings.TrimSuffix(b.parentPath, "/") + "/" + strings.TrimPrefix(b.name, "/"))
}

// aliasTakenLocked is the other realm that already has one of aliases, "" if none.
func (s *Server) aliasTakenLocked(path string, aliases []string) (alias, owner string) {
	for p, ri := range s.realmTab.realms {
		if p == path {
			continue
		}
		for _, a := range aliases {
			if slices.ContainsFunc(ri.aliases, func(b string) bool { return strings.EqualFold(a, b) }) {
				return a, p
			}
		}
	}
	return "", ""
}

func (s *Server) createRealm(w http.ResponseWriter, r *http.Request) error {
	b, err := readRealmBody(r, true)
	if err != nil {
		return err
	}
	if err := s.awaitRealmEnd(r, b); err != nil {
		return err
	}
	parent, err := normalizeRealmPath(b.parentPath)
	if err != nil {
		return errorf(http.StatusNotFound, "Realm cannot be read: %s", b.parentPath)
	}
	path, err := b.fullPath()
	if err != nil {
		return errBadRequest("Invalid realm name %q", b.name).with(err)
	}
	s.realmTab.mu.Lock()
	if s.realmTab.realms[parent] == nil {
		s.realmTab.mu.Unlock()
		return errorf(http.StatusNotFound, "Realm cannot be read: %s", b.parentPath)
	}
	if s.realmTab.realms[path] != nil {
		s.realmTab.mu.Unlock()
		return errorf(http.StatusConflict, "The realm %s already exists", path)
	}
	if alias, owner := s.aliasTakenLocked(path, b.aliases); alias != "" {
		s.realmTab.mu.Unlock()
		return errBadRequest("The alias %s is already used by the realm %s", alias, owner)
	}
	s.realmTab.realms[path] = &realmInfo{active: b.active, aliases: b.aliases}
	delete(s.realmTab.deleted, path)
	doc, _ := s.realmDocLocked(path)
	s.realmTab.mu.Unlock()
	s.log.Info("realm created", "realm", path, "active", b.active, "aliases", b.aliases)
	writeResource(w, http.StatusCreated, doc)
	return nil
}

func (s *Server) updateRealm(w http.ResponseWriter, r *http.Request, path string) error {
	b, err := readRealmBody(r, false)
	if err != nil {
		return err
	}
	if named, err := b.fullPath(); err != nil || named != path {
		return errBadRequest("Realm name specified in URL does not match realm name specified in JSON")
	}
	s.realmTab.mu.Lock()
	defer s.realmTab.mu.Unlock()
	ri := s.realmTab.realms[path]
	if ri == nil {
		return errorf(http.StatusNotFound, "Realm cannot be read: %s", path)
	}
	if cur, _ := s.realmDocLocked(path); !revisionMatches(r, cur) {
		return errorf(http.StatusPreconditionFailed, "Precondition Failed: the resource has revision %s", cur["_rev"])
	}
	if path == "/" && !b.active {
		return errBadRequest("The root realm cannot be made inactive")
	}
	if alias, owner := s.aliasTakenLocked(path, b.aliases); alias != "" {
		return errBadRequest("The alias %s is already used by the realm %s", alias, owner)
	}
	ri.active, ri.aliases = b.active, b.aliases
	doc, _ := s.realmDocLocked(path)
	s.log.Info("realm updated", "realm", path, "active", b.active, "aliases", b.aliases)
	writeResource(w, http.StatusOK, doc)
	return nil
}

// revisionMatches applies If-Match: absent or "*" matches any revision.
func revisionMatches(r *http.Request, cur map[string]any) bool {
	m := strings.Trim(r.Header.Get("If-Match"), `"`)
	return m == "" || m == "*" || m == cur["_rev"]
}

// deleteRealm removes a realm without sub-realms (AM refuses the others
// with 409) and everything amdev keeps for it: its configuration changes,
// its SSO sessions, its identities (users and things), and its tokens,
// which a mark in the store refuses from then on, JWTs included, so that a
// realm created again at the same path starts empty.
func (s *Server) deleteRealm(w http.ResponseWriter, path string) error {
	if path == "/" {
		return errorf(http.StatusUnauthorized, "Unauthorized-Cannot delete root suffix")
	}
	s.realmTab.mu.Lock()
	doc, ok := s.realmDocLocked(path)
	if !ok {
		s.realmTab.mu.Unlock()
		return errorf(http.StatusNotFound, "Realm cannot be read: %s", path)
	}
	for p := range s.realmTab.realms {
		if strings.HasPrefix(p, path+"/") {
			s.realmTab.mu.Unlock()
			return errorf(http.StatusConflict, "The realm %s has sub-realms; delete %s first", path, p)
		}
	}
	delete(s.realmTab.realms, path)
	s.realmTab.deleted[path] = true
	s.realmTab.mu.Unlock()
	if err := s.endRealm(path); err != nil {
		return err
	}
	s.provMu.Lock()
	delete(s.providers, path)
	delete(s.iotServices, path)
	s.provMu.Unlock()
	s.dropRealmClients(path)
	s.dropRealmJourneys(path)
	s.mu.Lock()
	for tok, ss := range s.sessions {
		if ss.realm == path {
			delete(s.sessions, tok)
		}
	}
	for code, d := range s.deviceCodes {
		if d.realm == path {
			delete(s.deviceCodes, code)
			delete(s.userCodes, d.userCode)
		}
	}
	s.mu.Unlock()
	s.log.Info("realm deleted", "realm", path)
	writeResource(w, http.StatusOK, doc)
	return nil
}
