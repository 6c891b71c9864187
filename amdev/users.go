package amdev

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
)

// isReservedAttr names the fields the admin REST never stores as plain attributes.
func isReservedAttr(name string) bool {
	switch name {
	case "_id", "_rev", "username", "userPassword", "realm", "objectClass", "dn", "universalid", "createTimestamp", "uid":
		return true
	}
	return false
}

// handleUsers serves the admin identity REST: PUT/GET/DELETE
// /json/realms/root[/realms/x]/users/{id}, the older /json/users/{id}?realm=
// form, and the CREST create action POST /json/users?_action=create.
func (s *Server) handleUsers(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool, id string) error {
	if err := requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost); err != nil {
		return err
	}
	if err := checkResource(r, "1", "2", "3", "4"); err != nil {
		return err
	}
	if !pathRealm {
		var err error
		if realm, err = s.resolveRealm(r.URL.Query().Get("realm"), r.Host); err != nil {
			return errBadRequest("Invalid realm")
		}
	} else if !s.realmExists(realm) {
		return errNotFound()
	}
	caller := s.lookupSession(s.sessionToken(r))
	if caller == nil {
		return errAccessDenied()
	}
	if r.Method == http.MethodPost {
		if id != "" || r.URL.Query().Get("_action") != "create" {
			return errBadRequest("Action not supported")
		}
	} else if id == "" {
		return errBadRequest("Identity id required")
	}
	isAdmin := caller.kind == kindAdmin
	if !isAdmin && !(r.Method == http.MethodGet && caller.uid == id && caller.realm == realm) {
		return errorf(http.StatusForbidden, "Access Denied")
	}
	switch r.Method {
	case http.MethodGet:
		ident, err := s.getIdentity(realm, id)
		if errors.Is(err, errNoIdentity) {
			return errNotFound()
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, identityJSON(ident))
		return nil
	case http.MethodDelete:
		ident, err := s.getIdentity(realm, id)
		if errors.Is(err, errNoIdentity) {
			return errNotFound()
		}
		if err != nil {
			return err
		}
		if _, err := s.deleteIdentity(realm, id); err != nil {
			return err
		}
		s.identityDeleted(realm, ident)
		writeJSON(w, http.StatusOK, identityJSON(ident))
		return nil
	}
	body, err := readIdentityBody(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodPost {
		id, _ = body["username"].(string)
		if id == "" {
			return errBadRequest("username is required")
		}
		if _, err := s.getIdentity(realm, id); err == nil {
			return errorf(http.StatusConflict, "Resource already exists")
		}
	}
	if strings.ContainsAny(id, "/\\?#*\x00") || len(id) > 256 {
		return errBadRequest("Invalid identity id")
	}
	if err := s.reservedName(id); err != nil {
		return errorf(http.StatusConflict, "Invalid identity id: %v", err)
	}
	existing, err := s.getIdentity(realm, id)
	switch {
	case err == nil && r.Header.Get("If-None-Match") == "*":
		return errorf(http.StatusPreconditionFailed, "Resource already exists")
	case err != nil && !errors.Is(err, errNoIdentity):
		return err
	}
	ident, err := s.applyIdentityBody(realm, id, existing, body)
	if err != nil {
		return err
	}
	if err := s.putIdentity(ident); err != nil {
		return err
	}
	s.identityStatusChanged(realm, existing, ident)
	status := http.StatusCreated
	if existing != nil {
		status = http.StatusOK
	}
	out := identityJSON(ident)
	if r.Method == http.MethodPost {
		out["_id"] = []string{ident.ID} // the form the reference test framework reads
	}
	writeJSON(w, status, out)
	return nil
}

func readIdentityBody(r *http.Request) (map[string]any, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, errBadRequest("Unable to read request body").with(err)
	}
	body, err := decodeObject(data)
	if err != nil {
		return nil, errBadRequest("The request body is not a JSON object").with(err)
	}
	return body, nil
}

// applyIdentityBody builds the identity a PUT or create describes. Attribute
// values are strings or arrays of strings; thingKeys may also be a JWKS
// object (the reference test framework sends one) and is stored as text.
func (s *Server) applyIdentityBody(realm, id string, existing *identity, body map[string]any) (*identity, error) {
	ident := &identity{Realm: realm, ID: id, Attributes: map[string][]string{}}
	if existing != nil {
		ident.Created, ident.PasswordHash = existing.Created, existing.PasswordHash
	}
	for k, v := range body {
		if k == "userPassword" {
			pw, ok := v.(string)
			if !ok || pw == "" {
				return nil, errBadRequest("userPassword must be a non-empty string")
			}
			hash, err := hashPassword(pw)
			if err != nil {
				return nil, err
			}
			ident.PasswordHash = hash
			continue
		}
		if isReservedAttr(k) {
			continue
		}
		if k == "thingKeys" {
			text, err := thingKeysText(v)
			if err != nil {
				return nil, errBadRequest("thingKeys: %v", err)
			}
			ident.setAttr(k, text)
			continue
		}
		switch val := v.(type) {
		case nil:
		case string:
			ident.setAttr(k, val)
		case []any:
			var vals []string
			for _, x := range val {
				sv, ok := x.(string)
				if !ok {
					return nil, errBadRequest("Attribute %s must hold strings", k)
				}
				vals = append(vals, sv)
			}
			if len(vals) > 0 {
				ident.Attributes[k] = vals
			}
		default:
			return nil, errBadRequest("Attribute %s must be a string or an array of strings", k)
		}
	}
	return ident, nil
}

// thingKeysText accepts thingKeys as JSON text, a one-element array of it, or a JWKS object.
func thingKeysText(v any) (string, error) {
	var text string
	switch val := v.(type) {
	case string:
		text = val
	case []any:
		if len(val) != 1 {
			return "", errors.New("want one JWKS")
		}
		return thingKeysText(val[0])
	case map[string]any:
		b, err := json.Marshal(val)
		if err != nil {
			return "", err
		}
		text = string(b)
	default:
		return "", errors.New("want a JWKS")
	}
	if _, err := parseThingKeys(text); err != nil {
		return "", err
	}
	return text, nil
}

// identityJSON renders an identity as AM's identity resource.
func identityJSON(ident *identity) map[string]any {
	out := map[string]any{
		"_id": ident.ID, "_rev": "-1", "realm": ident.Realm, "username": ident.ID,
		"objectClass": []string{"iplanet-am-managed-person", "inetuser", "fr-iot", "inetorgperson",
			"organizationalperson", "person", "top"},
		"dn":              []string{"uid=" + ident.ID + ",ou=people,dc=openam,dc=forgerock,dc=org"},
		"cn":              []string{ident.ID},
		"sn":              []string{ident.ID},
		"uid":             []string{ident.ID},
		"universalid":     []string{"id=" + ident.ID + ",ou=user,dc=openam,dc=forgerock,dc=org"},
		"inetUserStatus":  []string{"Active"},
		"createTimestamp": []string{ident.Created.UTC().Format("20060102150405Z")},
	}
	keys := make([]string, 0, len(ident.Attributes))
	for k := range ident.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out[k] = ident.Attributes[k]
	}
	return out
}
