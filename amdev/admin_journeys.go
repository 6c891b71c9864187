package amdev

import (
	"io"
	"net/http"
	"strings"
)

// handleJourneys serves AM's realm-config/authentication/authenticationtrees
// for amAdmin: trees/{name} and nodes/{type}/{id}, each with GET, PUT
// (If-None-Match: * only creates) and DELETE, and the query
// (_queryFilter=true) of trees and of one node type. segs follow
// "authenticationtrees".
func (s *Server) handleJourneys(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool, segs []string) error {
	if err := checkResource(r, "1"); err != nil {
		return err
	}
	realm, err := s.adminRealm(r, realm, pathRealm)
	if err != nil {
		return err
	}
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	s.journeys.edit.Lock()
	defer s.journeys.edit.Unlock()
	switch {
	case segs[0] == "trees" && len(segs) == 1:
		return s.queryJourneyDocs(w, r, func() []map[string]any {
			var out []map[string]any
			for _, n := range s.treeNames(realm) {
				out = append(out, treeAnswer(n, s.treeDoc(realm, n)))
			}
			return out
		})
	case segs[0] == "trees" && len(segs) == 2:
		return s.handleTree(w, r, realm, segs[1])
	case segs[0] == "nodes" && len(segs) == 2:
		typ := segs[1]
		return s.queryJourneyDocs(w, r, func() []map[string]any {
			var out []map[string]any
			for _, key := range s.nodeKeys(realm, typ) {
				id := strings.TrimPrefix(key, typ+"/")
				out = append(out, nodeDoc(id, s.node(realm, typ, id)))
			}
			return out
		})
	case segs[0] == "nodes" && len(segs) == 3:
		return s.handleNode(w, r, realm, segs[1], segs[2])
	}
	return errNotServed(r)
}

func (s *Server) queryJourneyDocs(w http.ResponseWriter, r *http.Request, list func() []map[string]any) error {
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

// treeAnswer is a stored tree document with its _id and _rev.
func treeAnswer(name string, doc map[string]any) map[string]any {
	out := normalizeJSON(doc)
	out["_id"] = name
	return withRevision(out)
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

func (s *Server) handleTree(w http.ResponseWriter, r *http.Request, realm, name string) error {
	if err := requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete); err != nil {
		return err
	}
	var cur map[string]any
	if doc := s.treeDoc(realm, name); doc != nil {
		cur = treeAnswer(name, doc)
	}
	switch r.Method {
	case http.MethodGet:
		if cur == nil {
			return errorf(http.StatusNotFound, "Not Found")
		}
		writeResource(w, http.StatusOK, cur)
		return nil
	case http.MethodDelete:
		if cur == nil {
			return errorf(http.StatusNotFound, "Not Found")
		}
		s.setJourneyTree(realm, name, nil)
		s.log.Info("tree deleted", "realm", realm, "tree", name)
		writeResource(w, http.StatusOK, cur)
		return nil
	}
	if err := preconditions(r, cur, "the tree "+quote(name)); err != nil {
		return err
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return errBadRequest("Unable to read request body").with(err)
	}
	doc, err := decodeObject(data)
	if err != nil {
		return errBadRequest("The request body is not a JSON object").with(err)
	}
	if id, ok := doc["_id"]; ok && id != name {
		return errBadRequest("The _id %v in the body is not the tree %s in the URL", id, quote(name))
	}
	delete(doc, "_rev")
	doc["_id"] = name
	if _, err := s.compileTree(realm, name, doc); err != nil {
		return err
	}
	s.setJourneyTree(realm, name, normalizeJSON(doc))
	status := http.StatusOK
	if cur == nil {
		status = http.StatusCreated
	}
	s.log.Info("tree saved", "realm", realm, "tree", name, "created", cur == nil)
	writeResource(w, status, treeAnswer(name, doc))
	return nil
}

func (s *Server) handleNode(w http.ResponseWriter, r *http.Request, realm, typ, id string) error {
	if err := requireMethod(r, http.MethodGet, http.MethodPut, http.MethodDelete); err != nil {
		return err
	}
	if implementedNodeTypes[typ] == "" {
		if r.Method == http.MethodPut {
			return errNodeTypeNotImplemented(typ, "node "+id+" was not stored")
		}
		return errorf(http.StatusNotFound, "Not Found")
	}
	var cur map[string]any
	n := s.node(realm, typ, id)
	if n != nil {
		cur = nodeDoc(id, n)
	}
	switch r.Method {
	case http.MethodGet:
		if cur == nil {
			return errorf(http.StatusNotFound, "Not Found")
		}
		writeResource(w, http.StatusOK, cur)
		return nil
	case http.MethodDelete:
		if cur == nil {
			return errorf(http.StatusNotFound, "Not Found")
		}
		if tree := s.treeUsing(realm, typ, id); tree != "" {
			return errorf(http.StatusConflict, "The node %s is used by the tree %s; change or delete the tree first", id, quote(tree))
		}
		s.setJourneyNode(realm, typ, id, nil)
		s.log.Info("node deleted", "realm", realm, "type", typ, "node", id)
		writeResource(w, http.StatusOK, cur)
		return nil
	}
	if err := preconditions(r, cur, "the node "+id); err != nil {
		return err
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return errBadRequest("Unable to read request body").with(err)
	}
	next, err := nodeSettings(typ, data)
	if err != nil {
		return err
	}
	// A configured tree that uses the node becomes the realm's own, so that
	// it runs with the changed node from now on.
	s.materializeTreesUsing(realm, typ, id)
	s.setJourneyNode(realm, typ, id, next)
	if tree := s.treeUsing(realm, typ, id); tree != "" {
		if doc, _ := s.overlayTree(realm, tree); doc != nil {
			if _, err := s.compileTree(realm, tree, doc); err != nil {
				s.setJourneyNode(realm, typ, id, n) // the tree would no longer run: undo
				return err
			}
		}
	}
	status := http.StatusOK
	if cur == nil {
		status = http.StatusCreated
	}
	s.log.Info("node saved", "realm", realm, "type", typ, "node", id, "created", cur == nil)
	writeResource(w, status, nodeDoc(id, next))
	return nil
}
