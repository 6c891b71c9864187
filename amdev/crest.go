package amdev

import (
	"io"
	"net/http"
	"sync"
)

// The admin REST's resources share CREST's handling: who may call, which
// realm, and for the members of a collection (clients, publishers, trees,
// nodes) the GET / PUT / DELETE semantics. It lives here once; the
// handlers say only what their resource is.

// adminScope checks what every realm-config resource checks first: AM's
// resource version 1, the realm (of the path, else ?realm=), and an
// amAdmin session. It returns the realm.
func (s *Server) adminScope(r *http.Request, realm string, pathRealm bool) (string, error) {
	if err := checkResource(r, "1"); err != nil {
		return "", err
	}
	realm, err := s.adminRealm(r, realm, pathRealm)
	if err != nil {
		return "", err
	}
	if err := s.requireAdmin(r); err != nil {
		return "", err
	}
	return realm, nil
}

// serviceScope begins a request to a realm's service (oauth-oidc, iot):
// GET, PUT, DELETE, or POST ?_action=create, with which AM's automation
// adds the service to a new realm (in amdev every realm has it, so create
// sets it; create reports it). Then the checks of adminScope.
func (s *Server) serviceScope(r *http.Request, realm string, pathRealm bool) (string, bool, error) {
	create := r.Method == http.MethodPost && r.URL.Query().Get("_action") == "create"
	if !create {
		if err := requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete); err != nil {
			return "", false, err
		}
	}
	realm, err := s.adminScope(r, realm, pathRealm)
	return realm, create, err
}

// realmSetting is realm's entry of an overlay the admin REST changes, the
// configured value def when the realm has none.
func realmSetting[T any](mu *sync.RWMutex, overlay *map[string]T, realm string, def T) T {
	mu.RLock()
	defer mu.RUnlock()
	if v, ok := (*overlay)[realm]; ok {
		return v
	}
	return def
}

// crestItem is one member of a CREST collection, as serveItem drives it.
type crestItem struct {
	what string         // names it in a 412, e.g. "the OAuth2Client x"
	cur  map[string]any // its document; nil when it does not exist
	// remove deletes it (it exists, and the revision matched); an error
	// (such as 409 for a node in use) leaves it.
	remove func() error
	// save checks a PUT body and stores it; it answers the new document.
	save func(body []byte) (map[string]any, error)
}

// serveItem answers GET (404 when absent), DELETE (the last state;
// If-Match with another revision is 412) and PUT (If-None-Match: * only
// creates, If-Match only updates; 201 for a new one, else 200).
func serveItem(w http.ResponseWriter, r *http.Request, it crestItem) error {
	if err := requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete); err != nil {
		return err
	}
	if r.Method != http.MethodPut {
		if it.cur == nil {
			return errorf(http.StatusNotFound, "Not Found")
		}
		if r.Method == http.MethodDelete {
			if !revisionMatches(r, it.cur) {
				return errorf(http.StatusPreconditionFailed, "Precondition Failed: the resource has revision %s", it.cur["_rev"])
			}
			if err := it.remove(); err != nil {
				return err
			}
		}
		writeResource(w, http.StatusOK, it.cur)
		return nil
	}
	if err := preconditions(r, it.cur, it.what); err != nil {
		return err
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return errBadRequest("Unable to read request body").with(err)
	}
	doc, err := it.save(data)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if it.cur == nil {
		status = http.StatusCreated
	}
	writeResource(w, status, doc)
	return nil
}

// preconditions applies CREST's PUT headers: If-None-Match: * only
// creates, If-Match only updates a resource of that revision.
func preconditions(r *http.Request, cur map[string]any, what string) error {
	switch {
	case r.Header.Get("If-None-Match") == "*" && cur != nil:
		return errorf(http.StatusPreconditionFailed, "Precondition Failed: %s exists", what)
	case r.Header.Get("If-Match") != "" && cur == nil:
		return errorf(http.StatusNotFound, "Not Found")
	case cur != nil && !revisionMatches(r, cur):
		return errorf(http.StatusPreconditionFailed, "Precondition Failed: the resource has revision %s", cur["_rev"])
	}
	return nil
}

// serveQuery answers a collection's query: only _queryFilter=true, no paging.
func serveQuery(w http.ResponseWriter, r *http.Request, list func() []map[string]any) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	if f := r.URL.Query().Get("_queryFilter"); f != "true" {
		return errorf(http.StatusNotImplemented, "Query not supported: %s", f)
	}
	result := list()
	if result == nil {
		result = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, queryResponse(result))
	return nil
}

// objectBody decodes a PUT body that must be one JSON object.
func objectBody(data []byte) (map[string]any, error) {
	body, err := decodeObject(data)
	if err != nil {
		return nil, errBadRequest("The request body is not a JSON object").with(err)
	}
	return body, nil
}
