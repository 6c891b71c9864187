package amdev

import (
	"net/http"
	"strings"
)

// handleJourneys serves AM's realm-config/authentication/authenticationtrees
// for amAdmin: trees/{name} and nodes/{type}/{id}, each with GET, PUT
// (If-None-Match: * only creates) and DELETE, and the query
// (_queryFilter=true) of trees and of one node type. segs follow
// "authenticationtrees".
func (s *Server) handleJourneys(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool, segs []string) error {
	realm, err := s.adminScope(r, realm, pathRealm)
	if err != nil {
		return err
	}
	s.journeys.edit.Lock()
	defer s.journeys.edit.Unlock()
	switch {
	case segs[0] == "trees" && len(segs) == 1:
		return serveQuery(w, r, func() []map[string]any {
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
		return serveQuery(w, r, func() []map[string]any {
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

// treeAnswer is a stored tree document with its _id and _rev.
func treeAnswer(name string, doc map[string]any) map[string]any {
	out := normalizeJSON(doc)
	out["_id"] = name
	return withRevision(out)
}

func (s *Server) handleTree(w http.ResponseWriter, r *http.Request, realm, name string) error {
	it := crestItem{what: "the tree " + quote(name)}
	if doc := s.treeDoc(realm, name); doc != nil {
		it.cur = treeAnswer(name, doc)
	}
	it.remove = func() error {
		s.setJourneyTree(realm, name, nil)
		s.log.Info("tree deleted", "realm", realm, "tree", name)
		return nil
	}
	it.save = func(data []byte) (map[string]any, error) {
		doc, err := objectBody(data)
		if err != nil {
			return nil, err
		}
		if id, ok := doc["_id"]; ok && id != name {
			return nil, errBadRequest("The _id %v in the body is not the tree %s in the URL", id, quote(name))
		}
		delete(doc, "_rev")
		doc["_id"] = name
		if _, err := s.compileTree(realm, name, doc); err != nil {
			return nil, err
		}
		s.setJourneyTree(realm, name, normalizeJSON(doc))
		s.log.Info("tree saved", "realm", realm, "tree", name, "created", it.cur == nil)
		return treeAnswer(name, doc), nil
	}
	return serveItem(w, r, it)
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
	n := s.node(realm, typ, id)
	it := crestItem{what: "the node " + id}
	if n != nil {
		it.cur = nodeDoc(id, n)
	}
	it.remove = func() error {
		if tree := s.treeUsing(realm, typ, id); tree != "" {
			return errorf(http.StatusConflict, "The node %s is used by the tree %s; change or delete the tree first", id, quote(tree))
		}
		s.setJourneyNode(realm, typ, id, nil)
		s.log.Info("node deleted", "realm", realm, "type", typ, "node", id)
		return nil
	}
	it.save = func(data []byte) (map[string]any, error) {
		next, err := nodeSettings(typ, data)
		if err != nil {
			return nil, err
		}
		// A configured tree that uses the node becomes the realm's own, so that
		// it runs with the changed node from now on.
		s.materializeTreesUsing(realm, typ, id)
		s.setJourneyNode(realm, typ, id, next)
		if tree := s.treeUsing(realm, typ, id); tree != "" {
			if doc, _ := s.overlayTree(realm, tree); doc != nil {
				if _, err := s.compileTree(realm, tree, doc); err != nil {
					s.setJourneyNode(realm, typ, id, n) // the tree would no longer run: undo
					return nil, err
				}
			}
		}
		s.log.Info("node saved", "realm", realm, "type", typ, "node", id, "created", n == nil)
		return nodeDoc(id, next), nil
	}
	return serveItem(w, r, it)
}
