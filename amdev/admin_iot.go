package amdev

import (
	"net/http"
	"slices"
)

// iotServiceName is the CREST name of AM's IoT Service.
const iotServiceName = "iot"

// iotService is realm's IoT Service: the configured one unless the admin
// REST changed it for that realm.
func (s *Server) iotService(realm string) IoTService {
	return realmSetting(&s.provMu, &s.iotServices, realm, s.settings.IoT)
}

// iotDoc is v in AM's iot service JSON, limited to what amdev honours.
func iotDoc(v IoTService) map[string]any {
	list := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	return withRevision(normalizeJSON(map[string]any{
		"_id": "", "oauthClientName": v.OAuthClientName, "oauthSubjectAttribute": v.OAuthSubjectAttribute,
		"attributeAllowlist": list(v.AttributeAllowlist), "restrictedThingTypes": list(v.RestrictedThingTypes),
		"_type": map[string]any{"_id": iotServiceName, "name": "IoT Service", "collection": false},
	}))
}

// handleIoTService serves AM's realm-config/services/iot for amAdmin: GET,
// PUT and POST ?_action=create change the realm's IoT Service at once,
// DELETE returns it to the configured one. oauthClientName must name a
// client of the realm; AM's createOAuthClient, createOAuthJwtIssuer and
// oauthJwtIssuerName are accepted and have no effect (amdev's IoT Service
// needs no client or JWT issuer of its own).
func (s *Server) handleIoTService(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool) error {
	realm, create, err := s.serviceScope(r, realm, pathRealm)
	if err != nil {
		return err
	}
	cur := s.iotService(realm)
	doc := iotDoc(cur)
	status := http.StatusOK
	switch {
	case r.Method == http.MethodDelete:
		s.provMu.Lock()
		delete(s.iotServices, realm)
		s.provMu.Unlock()
	case create || r.Method == http.MethodPut:
		if r.Method == http.MethodPut && !revisionMatches(r, doc) {
			return errorf(http.StatusPreconditionFailed, "Precondition Failed: the resource has revision %s", doc["_rev"])
		}
		body, err := readObject(r)
		if err != nil {
			return err
		}
		next := cur
		next.AttributeAllowlist, next.RestrictedThingTypes = slices.Clone(cur.AttributeAllowlist), slices.Clone(cur.RestrictedThingTypes)
		for key, dst := range map[string]*string{"oauthClientName": &next.OAuthClientName, "oauthSubjectAttribute": &next.OAuthSubjectAttribute} {
			if v, ok := body[key]; ok {
				str, isStr := v.(string)
				if !isStr {
					return errBadRequest("%s must be a string", key)
				}
				*dst = str
			}
		}
		for key, dst := range map[string]*[]string{"attributeAllowlist": &next.AttributeAllowlist, "restrictedThingTypes": &next.RestrictedThingTypes} {
			if v, ok := body[key]; ok {
				arr, isArr := v.([]any)
				if !isArr {
					return errBadRequest("%s must be an array of strings", key)
				}
				*dst = []string{}
				for _, e := range arr {
					str, isStr := e.(string)
					if !isStr || str == "" {
						return errBadRequest("%s must be an array of strings", key)
					}
					*dst = append(*dst, str)
				}
			}
		}
		if s.client(realm, next.OAuthClientName) == nil {
			return errBadRequest("oauthClientName %s names no active OAuth2 client of the realm; create it first (realm-config/agents/OAuth2Client)",
				quote(next.OAuthClientName))
		}
		s.provMu.Lock()
		if s.iotServices == nil {
			s.iotServices = map[string]IoTService{}
		}
		s.iotServices[realm] = next
		s.provMu.Unlock()
		doc = iotDoc(next)
		if create {
			status = http.StatusCreated
		}
		s.log.Info("iot service updated", "realm", realm, "oauthClientName", next.OAuthClientName)
	}
	writeResource(w, status, doc)
	return nil
}
