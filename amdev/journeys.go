package amdev

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// AM's names of the node types amdev implements.
const (
	nodeTypeAuthenticate = "IotAuthenticationNode"
	nodeTypeRegister     = "IotRegistrationNode"
	nodeTypeUsername     = "UsernameCollectorNode"
	nodeTypePassword     = "PasswordCollectorNode"
	nodeTypeDataStore    = "DataStoreDecisionNode"
)

// AM's fixed ids of a tree's Success and Failure nodes.
const (
	successNodeID = "70e691a5-1e33-4ac3-a356-e7b6d60d92e0"
	failureNodeID = "e301438c-0bd0-429c-ab0c-66126501069a"
)

// implementedNodeTypes are the node types amdev runs, with AM's display names.
var implementedNodeTypes = map[string]string{
	nodeTypeAuthenticate: "Authenticate Thing",
	nodeTypeRegister:     "Register Thing",
	nodeTypeUsername:     "Username Collector",
	nodeTypePassword:     "Password Collector",
	nodeTypeDataStore:    "Data Store Decision",
}

// journeyNode is one node's settings: those of the thing nodes; the
// collectors and the data store decision have none amdev honours.
type journeyNode struct {
	Type string
	Auth *AuthenticateNode
	Reg  *RegisterNode
}

// journeys are the realms' trees and nodes changed through the admin REST
// (realm-config/authentication/authenticationtrees), over the configured
// trees (settings.Trees), which every realm starts with. A tree is kept as
// AM's JSON and compiled to a Tree whenever it is used, so that a change
// of one of its nodes applies at once. A nil entry is a configured tree or
// node deleted in that realm.
type journeys struct {
	mu    sync.RWMutex
	trees map[string]map[string]map[string]any // realm → tree name → AM's tree JSON
	nodes map[string]map[string]*journeyNode   // realm → "type/id" → node
	// edit serialises the admin REST's read-modify-write of trees and nodes.
	edit sync.Mutex
}

func nodeKey(typ, id string) string { return typ + "/" + id }

// synthesizedID is the node id amdev gives a node of a configured tree: a
// UUID-shaped hash of the tree and the node's role, stable across runs.
func synthesizedID(tree, role string) string {
	h := sha256.Sum256([]byte(tree + "\x00" + role))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// configuredJourney is a configured tree in AM's JSON, with its nodes.
func configuredJourney(name string, t *Tree) (map[string]any, map[string]*journeyNode) {
	nodes := map[string]*journeyNode{}
	entries := map[string]any{}
	add := func(role, typ string, n *journeyNode, connections map[string]string) string {
		id := synthesizedID(name, role)
		n.Type = typ
		nodes[nodeKey(typ, id)] = n
		conns := map[string]any{}
		for k, v := range connections {
			conns[k] = v
		}
		entries[id] = map[string]any{"displayName": implementedNodeTypes[typ], "nodeType": typ, "connections": conns}
		return id
	}
	var entry string
	switch {
	case t.UsernamePassword:
		ds := add("datastore", nodeTypeDataStore, &journeyNode{}, map[string]string{"true": successNodeID, "false": failureNodeID})
		pw := add("password", nodeTypePassword, &journeyNode{}, map[string]string{"outcome": ds})
		entry = add("username", nodeTypeUsername, &journeyNode{}, map[string]string{"outcome": pw})
	default:
		register := failureNodeID
		if t.Register != nil {
			register = add("register", nodeTypeRegister, &journeyNode{Reg: t.Register},
				map[string]string{"success": successNodeID, "failure": failureNodeID})
			entry = register
		}
		if t.Authenticate != nil {
			entry = add("authenticate", nodeTypeAuthenticate, &journeyNode{Auth: t.Authenticate},
				map[string]string{"success": successNodeID, "failure": failureNodeID, "register": register})
		}
	}
	doc := map[string]any{"_id": name, "entryNodeId": entry, "nodes": entries,
		"staticNodes": map[string]any{"startNode": map[string]any{}, successNodeID: map[string]any{}, failureNodeID: map[string]any{}},
		"uiConfig":    map[string]any{}}
	return doc, nodes
}

// treeDoc is realm's tree name in AM's JSON, nil if there is none.
func (s *Server) treeDoc(realm, name string) map[string]any {
	s.journeys.mu.RLock()
	doc, ok := s.journeys.trees[realm][name]
	s.journeys.mu.RUnlock()
	if ok {
		return doc
	}
	if t := s.settings.Trees[name]; t != nil {
		doc, _ := configuredJourney(name, t)
		return doc
	}
	return nil
}

// treeNames are realm's tree names, sorted.
func (s *Server) treeNames(realm string) []string {
	s.journeys.mu.RLock()
	defer s.journeys.mu.RUnlock()
	names := map[string]bool{}
	for n := range s.settings.Trees {
		names[n] = true
	}
	for n, doc := range s.journeys.trees[realm] {
		names[n] = doc != nil
	}
	var out []string
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if names[n] {
			out = append(out, n)
		}
	}
	return out
}

// node is realm's node typ/id, nil if there is none.
func (s *Server) node(realm, typ, id string) *journeyNode {
	s.journeys.mu.RLock()
	n, ok := s.journeys.nodes[realm][nodeKey(typ, id)]
	s.journeys.mu.RUnlock()
	if ok {
		return n
	}
	for name, t := range s.settings.Trees {
		if _, changed := s.overlayTree(realm, name); changed {
			continue
		}
		if _, nodes := configuredJourney(name, t); nodes[nodeKey(typ, id)] != nil {
			return nodes[nodeKey(typ, id)]
		}
	}
	return nil
}

// overlayTree is realm's own entry for tree name, and whether it has one.
func (s *Server) overlayTree(realm, name string) (map[string]any, bool) {
	s.journeys.mu.RLock()
	defer s.journeys.mu.RUnlock()
	doc, ok := s.journeys.trees[realm][name]
	return doc, ok
}

// tree is realm's tree name, ready to run, nil if there is none (or its
// nodes no longer make a tree amdev runs, which compileTree logs).
func (s *Server) tree(realm, name string) *Tree {
	doc, ok := s.overlayTree(realm, name)
	if !ok {
		return s.settings.Trees[name]
	}
	if doc == nil {
		return nil
	}
	t, err := s.compileTree(realm, name, doc)
	if err != nil {
		s.log.Warn("tree cannot run", "realm", realm, "tree", name, "err", err)
		return nil
	}
	return t
}

// treeNodeRef is one entry of a tree's "nodes" object.
type treeNodeRef struct {
	id, typ, name string
	conns         map[string]string
}

// treeRefs reads the "nodes" object of AM's tree JSON.
func treeRefs(doc map[string]any) (map[string]treeNodeRef, error) {
	raw, ok := doc["nodes"].(map[string]any)
	if !ok {
		return nil, errBadRequest("nodes must be an object of node id to {nodeType, displayName, connections}")
	}
	refs := map[string]treeNodeRef{}
	for id, v := range raw {
		m, ok := v.(map[string]any)
		typ, _ := m["nodeType"].(string)
		if !ok || typ == "" {
			return nil, errBadRequest("nodes.%s needs a nodeType", id)
		}
		ref := treeNodeRef{id: id, typ: typ, conns: map[string]string{}}
		ref.name, _ = m["displayName"].(string)
		if c, ok := m["connections"].(map[string]any); ok {
			for outcome, target := range c {
				ts, isStr := target.(string)
				if !isStr {
					return nil, errBadRequest("nodes.%s.connections.%s must be a node id", id, outcome)
				}
				ref.conns[outcome] = ts
			}
		} else if m["connections"] != nil {
			return nil, errBadRequest("nodes.%s.connections must be an object", id)
		}
		refs[id] = ref
	}
	return refs, nil
}

// treeShapes names the trees amdev runs, for messages.
const treeShapes = "Authenticate Thing (register outcome to Failure); Register Thing; Authenticate Thing whose register " +
	"outcome leads to Register Thing; Username Collector → Password Collector → Data Store Decision — each outcome " +
	"to the next node, Success or Failure as AM's IoT and login trees have them"

// compileTree turns AM's tree JSON into the Tree amdev runs: each node must
// be of a type amdev implements (else 501 naming it), exist in the realm's
// nodes, and the tree must have one of the shapes amdev runs (else 400
// saying which outcome leads elsewhere).
func (s *Server) compileTree(realm, name string, doc map[string]any) (*Tree, error) {
	refs, err := treeRefs(doc)
	if err != nil {
		return nil, err
	}
	for _, id := range slices.Sorted(maps.Keys(refs)) {
		ref := refs[id]
		if implementedNodeTypes[ref.typ] == "" {
			return nil, errNodeTypeNotImplemented(ref.typ, fmt.Sprintf("tree %s uses it as node %s (%s)", quote(name), id, ref.name))
		}
		if s.node(realm, ref.typ, id) == nil {
			return nil, errBadRequest("tree %s: node %s of type %s does not exist in the realm; create it first (…/authenticationtrees/nodes/%s/%s)",
				quote(name), id, ref.typ, ref.typ, id)
		}
	}
	entry, _ := doc["entryNodeId"].(string)
	used := map[string]bool{}
	get := func(id, typ string) (treeNodeRef, bool) {
		ref, ok := refs[id]
		if ok && ref.typ == typ {
			used[id] = true
		}
		return ref, ok && ref.typ == typ
	}
	shape := func(format string, args ...any) error {
		return errBadRequest("tree %s: %s; amdev runs these shapes: %s", quote(name), fmt.Sprintf(format, args...), treeShapes)
	}
	ends := func(ref treeNodeRef, success, failure string) error {
		if ref.conns[success] != successNodeID || ref.conns[failure] != failureNodeID {
			return shape("node %s (%s) must connect %s to Success and %s to Failure", ref.id, ref.typ, success, failure)
		}
		return nil
	}
	t := &Tree{}
	start, ok := refs[entry]
	switch {
	case !ok:
		return nil, shape("entryNodeId %s names no node of the tree", quote(entry))
	case start.typ == nodeTypeAuthenticate:
		get(entry, nodeTypeAuthenticate)
		if err := ends(start, "success", "failure"); err != nil {
			return nil, err
		}
		t.Authenticate = s.node(realm, start.typ, entry).Auth
		if reg := start.conns["register"]; reg != failureNodeID {
			ref, ok := get(reg, nodeTypeRegister)
			if !ok {
				return nil, shape("the register outcome of %s must lead to Failure or a Register Thing node", entry)
			}
			if err := ends(ref, "success", "failure"); err != nil {
				return nil, err
			}
			t.Register = s.node(realm, ref.typ, reg).Reg
		}
	case start.typ == nodeTypeRegister:
		get(entry, nodeTypeRegister)
		if err := ends(start, "success", "failure"); err != nil {
			return nil, err
		}
		t.Register = s.node(realm, start.typ, entry).Reg
	case start.typ == nodeTypeUsername:
		get(entry, nodeTypeUsername)
		pw, ok := get(start.conns["outcome"], nodeTypePassword)
		if !ok {
			return nil, shape("the Username Collector must lead to a Password Collector")
		}
		ds, ok := get(pw.conns["outcome"], nodeTypeDataStore)
		if !ok {
			return nil, shape("the Password Collector must lead to a Data Store Decision")
		}
		if err := ends(ds, "true", "false"); err != nil {
			return nil, err
		}
		t.UsernamePassword = true
	default:
		return nil, shape("it starts with a %s node", start.typ)
	}
	for _, id := range slices.Sorted(maps.Keys(refs)) {
		if !used[id] {
			return nil, shape("node %s (%s) is not on the path amdev runs", id, refs[id].typ)
		}
	}
	if err := t.validate(); err != nil {
		return nil, errBadRequest("tree %s: %v", quote(name), err)
	}
	return t, nil
}

// errNodeTypeNotImplemented is the 501 for a node type amdev cannot run.
func errNodeTypeNotImplemented(typ, where string) *httpError {
	hint := ""
	if typ == "ScriptedDecisionNode" {
		hint = "; amdev runs no scripts: a check of the verified JWT's claims is the Authenticate Thing node's requiredClaims"
	}
	return errorf(501, "amdev does not implement the node type %s (%s); it implements %s%s", typ, where,
		strings.Join(slices.Sorted(maps.Keys(implementedNodeTypes)), ", "), hint)
}

// nodeSettings decodes a node body into the settings of its type. AM's
// attribute names are amdev's YAML names; attributes amdev does not model
// and CREST's _id, _rev and _type are ignored.
func nodeSettings(typ string, body []byte) (*journeyNode, error) {
	n := &journeyNode{Type: typ}
	var dst any
	switch typ {
	case nodeTypeAuthenticate:
		n.Auth = &AuthenticateNode{}
		dst = n.Auth
	case nodeTypeRegister:
		n.Reg = &RegisterNode{}
		dst = n.Reg
	default:
		return n, nil
	}
	m, err := decodeObject(body)
	if err != nil {
		return nil, errBadRequest("The request body is not a JSON object").with(err)
	}
	compact, _ := json.Marshal(m) // one line: YAML reads it as a flow mapping, tabs and all
	if err := yaml.Unmarshal(compact, dst); err != nil {
		return nil, errBadRequest("%s settings: %v", typ, err)
	}
	probe := &Tree{Authenticate: n.Auth, Register: n.Reg}
	if err := probe.validate(); err != nil {
		return nil, errBadRequest("%s settings: %v", typ, err)
	}
	return n, nil
}

// nodeDoc is n in AM's node JSON: the settings amdev honours, by AM's names.
func nodeDoc(id string, n *journeyNode) map[string]any {
	doc := map[string]any{"_id": id, "_type": map[string]any{"_id": n.Type, "name": implementedNodeTypes[n.Type], "collection": true}}
	var src any
	switch {
	case n.Auth != nil:
		src = n.Auth
	case n.Reg != nil:
		src = n.Reg
	}
	if src != nil {
		v := reflect.ValueOf(src).Elem()
		for i := range v.NumField() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			f := v.Field(i)
			if name == "" || (f.Kind() == reflect.Map && f.Len() == 0 && (name == "requiredClaims" || name == "defaultAttributeValues")) {
				continue
			}
			if f.Kind() == reflect.Slice && f.IsNil() {
				doc[name] = []string{}
				continue
			}
			if f.Kind() == reflect.Map && f.IsNil() {
				doc[name] = map[string]string{}
				continue
			}
			doc[name] = f.Interface()
		}
	}
	return withRevision(normalizeJSON(doc))
}

// normalizeJSON round-trips v through JSON so that its revision hash and
// its answer see the same plain values.
func normalizeJSON(v map[string]any) map[string]any {
	b, _ := json.Marshal(v) // plain values always encode
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// setJourneyTree stores realm's tree name; nil deletes it.
func (s *Server) setJourneyTree(realm, name string, doc map[string]any) {
	s.journeys.mu.Lock()
	defer s.journeys.mu.Unlock()
	if s.journeys.trees == nil {
		s.journeys.trees = map[string]map[string]map[string]any{}
	}
	if s.journeys.trees[realm] == nil {
		s.journeys.trees[realm] = map[string]map[string]any{}
	}
	s.journeys.trees[realm][name] = doc
}

// setJourneyNode stores realm's node typ/id; nil deletes it.
func (s *Server) setJourneyNode(realm, typ, id string, n *journeyNode) {
	s.journeys.mu.Lock()
	defer s.journeys.mu.Unlock()
	if s.journeys.nodes == nil {
		s.journeys.nodes = map[string]map[string]*journeyNode{}
	}
	if s.journeys.nodes[realm] == nil {
		s.journeys.nodes[realm] = map[string]*journeyNode{}
	}
	s.journeys.nodes[realm][nodeKey(typ, id)] = n
}

// dropRealmJourneys forgets a deleted realm's own trees and nodes.
func (s *Server) dropRealmJourneys(realm string) {
	s.journeys.mu.Lock()
	defer s.journeys.mu.Unlock()
	delete(s.journeys.trees, realm)
	delete(s.journeys.nodes, realm)
}

// nodeKeys are the "type/id" keys of realm's nodes of typ, sorted.
func (s *Server) nodeKeys(realm, typ string) []string {
	keys := map[string]bool{}
	for _, name := range s.treeNames(realm) {
		if _, own := s.overlayTree(realm, name); own {
			continue
		}
		_, nodes := configuredJourney(name, s.settings.Trees[name])
		for k := range nodes {
			keys[k] = true
		}
	}
	s.journeys.mu.RLock()
	for k, n := range s.journeys.nodes[realm] {
		keys[k] = n != nil
	}
	s.journeys.mu.RUnlock()
	var out []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if keys[k] && strings.HasPrefix(k, typ+"/") {
			out = append(out, k)
		}
	}
	return out
}

// treeUsing is the first of realm's trees that has node typ/id, "" for none.
func (s *Server) treeUsing(realm, typ, id string) string {
	for _, name := range s.treeNames(realm) {
		refs, err := treeRefs(s.treeDoc(realm, name))
		if err == nil && refs[id].typ == typ {
			return name
		}
	}
	return ""
}

// materializeTreesUsing makes each configured tree that has node typ/id
// realm's own tree, its nodes included, so that a change of that node
// reaches it.
func (s *Server) materializeTreesUsing(realm, typ, id string) {
	for name, t := range s.settings.Trees {
		if _, own := s.overlayTree(realm, name); own {
			continue
		}
		doc, nodes := configuredJourney(name, t)
		if nodes[nodeKey(typ, id)] == nil {
			continue
		}
		s.journeys.mu.RLock()
		existing := s.journeys.nodes[realm]
		s.journeys.mu.RUnlock()
		for key, n := range nodes {
			if _, ok := existing[key]; !ok {
				ntyp, nid, _ := strings.Cut(key, "/")
				s.setJourneyNode(realm, ntyp, nid, n)
			}
		}
		s.setJourneyTree(realm, name, normalizeJSON(doc))
	}
}
