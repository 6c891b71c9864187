package amdev

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestJourneysAdminREST drives realm-config/authentication/authenticationtrees
// as ForgeRock's functional tests do (nodes first, then the tree, each PUT
// with If-None-Match: *): a configured tree reads back in AM's JSON, a new
// tree runs at once, a node type amdev does not implement is refused with
// a message that names it, and trees and nodes are deleted.
func TestJourneysAdminREST(t *testing.T) {
	e := startEnv(t, func(s *Settings) { s.Realms = []string{"/a"} })
	admin := e.adminToken()
	const version = "protocol=2.0,resource=1.0"
	base := e.srv.URL() + "/json/realms/root/realms/a/realm-config/authentication/authenticationtrees"
	create := crestHeaders(admin, version)
	create["If-None-Match"] = "*"
	plain := crestHeaders(admin, version)
	tree := func(entry string, nodes map[string]any) string {
		b, _ := json.Marshal(map[string]any{"entryNodeId": entry, "nodes": nodes, "uiConfig": map[string]any{},
			"staticNodes": map[string]any{"startNode": map[string]any{"x": 50, "y": 58}}})
		return string(b)
	}
	ref := func(typ string, conns map[string]string) map[string]any {
		return map[string]any{"displayName": typ, "nodeType": typ, "x": 100, "y": 100, "connections": conns}
	}
	const authNode, regNode, scriptNode = "5d7e1e7a-0000-4000-8000-000000000001", "5d7e1e7a-0000-4000-8000-000000000002", "5d7e1e7a-0000-4000-8000-000000000003"

	// A configured tree, in AM's JSON, and its node.
	status, doc := e.call("GET", base+"/trees/auth-tree-client-assertion", plain, "")
	if status != 200 || doc["_id"] != "auth-tree-client-assertion" || doc["_rev"] == nil {
		t.Fatalf("read configured tree: %d %v", status, doc)
	}
	entry := doc["entryNodeId"].(string)
	if n := doc["nodes"].(map[string]any)[entry].(map[string]any); n["nodeType"] != nodeTypeAuthenticate ||
		n["connections"].(map[string]any)["register"] != failureNodeID {
		t.Fatalf("configured tree's entry node: %v", n)
	}
	if status, n := e.call("GET", base+"/nodes/"+nodeTypeAuthenticate+"/"+entry, plain, ""); status != 200 || n["jwtAuthenticationMethod"] != MethodClientAssertion {
		t.Fatalf("read configured node: %d %v", status, n)
	}
	if status, q := e.call("GET", base+"/trees?_queryFilter=true", plain, ""); status != 200 || q["resultCount"] != float64(len(e.srv.Settings().Trees)) {
		t.Fatalf("query trees: %d %v", status, q)
	}

	// Create nodes, then a tree (client assertion; register → Register Thing).
	if status, n := e.call("PUT", base+"/nodes/"+nodeTypeAuthenticate+"/"+authNode, create,
		`{"_id": "`+authNode+`", "jwtAuthenticationMethod": "CLIENT_ASSERTION", "issueRestrictedToken": false, "additionalAudienceValues": ["fleet-audience"]}`); status != 201 ||
		n["additionalAudienceValues"].([]any)[0] != "fleet-audience" {
		t.Fatalf("create auth node: %d %v", status, n)
	}
	if status, n := e.call("PUT", base+"/nodes/"+nodeTypeRegister+"/"+regNode, create,
		`{"jwtRegistrationMethod": "POP_WITH_CERTIFICATE", "createIdentity": true, "allowKeyRotation": false}`); status != 201 {
		t.Fatalf("create register node: %d %v", status, n)
	}
	fleetTree := tree(authNode, map[string]any{
		authNode: ref(nodeTypeAuthenticate, map[string]string{"success": successNodeID, "failure": failureNodeID, "register": regNode}),
		regNode:  ref(nodeTypeRegister, map[string]string{"success": successNodeID, "failure": failureNodeID}),
	})
	if status, body := e.call("PUT", base+"/trees/FleetAssertion", create, fleetTree); status != 201 || body["entryNodeId"] != authNode {
		t.Fatalf("create tree: %d %v", status, body)
	}
	if status, body := e.call("PUT", base+"/trees/FleetAssertion", create, fleetTree); status != 412 {
		t.Fatalf("create an existing tree: %d %v", status, body)
	}

	// Use: a thing of /a logs in with an assertion for the node's additional audience.
	th := newThing(t, "fleet-thing", jose.ES256)
	reg, _ := json.Marshal(map[string]any{"userPassword": "5tr0ngG3n3r@ted", "thingType": "device", "thingKeys": th.jwks(t)})
	if status, body := e.call("PUT", e.srv.URL()+"/json/realms/root/realms/a/users/"+th.id, map[string]string{
		"Content-Type": "application/json", "iPlanetDirectoryPro": admin}, string(reg)); status != 201 {
		t.Fatalf("register: %d %v", status, body)
	}
	login := func(treeName string) (int, map[string]any) {
		t.Helper()
		q := url.Values{"authIndexType": {"service"}, "authIndexValue": {treeName}, "realm": {"/a"}}
		body := `{"callbacks":[{"type":"HiddenValueCallback","output":[{"name":"id","value":"client_assertion"}],` +
			`"input":[{"name":"IDToken1","value":"` + th.assertionJWT(t, "fleet-audience", freshJTI()) + `"}]}]}`
		return e.call("POST", e.srv.URL()+"/json/authenticate?"+q.Encode(), authHeaders(), body)
	}
	if status, body := login("FleetAssertion"); status != 200 || body["tokenId"] == nil {
		t.Fatalf("login with the new tree: %d %v", status, body)
	}
	if status, body := login("auth-tree-client-assertion"); status != 401 {
		t.Fatalf("the configured tree took the new node's audience: %d %v", status, body)
	}
	// A node change applies at once: without the audience the assertion fails.
	if status, body := e.call("PUT", base+"/nodes/"+nodeTypeAuthenticate+"/"+authNode, plain,
		`{"jwtAuthenticationMethod": "CLIENT_ASSERTION", "additionalAudienceValues": []}`); status != 200 {
		t.Fatalf("update node: %d %v", status, body)
	}
	if status, body := login("FleetAssertion"); status != 401 {
		t.Fatalf("login after removing the audience: %d %v", status, body)
	}

	// Refused: an unimplemented node type (node and tree), a missing node, a shape amdev does not run.
	for _, tc := range []struct {
		path, body string
		status     int
		msg        string
	}{
		{"/nodes/ScriptedDecisionNode/" + scriptNode, `{"script": "6e822929", "outcomes": ["true", "false"]}`, 501,
			"amdev does not implement the node type ScriptedDecisionNode"},
		{"/trees/WithScript", tree(authNode, map[string]any{
			authNode:   ref(nodeTypeAuthenticate, map[string]string{"success": scriptNode, "failure": failureNodeID, "register": failureNodeID}),
			scriptNode: ref("ScriptedDecisionNode", map[string]string{"true": successNodeID, "false": failureNodeID}),
		}), 501, "does not implement the node type ScriptedDecisionNode"},
		{"/trees/Missing", tree("5d7e1e7a-0000-4000-8000-000000000009", map[string]any{
			"5d7e1e7a-0000-4000-8000-000000000009": ref(nodeTypeRegister, map[string]string{"success": successNodeID, "failure": failureNodeID}),
		}), 400, "does not exist in the realm"},
		{"/trees/Backwards", tree(regNode, map[string]any{
			regNode:  ref(nodeTypeRegister, map[string]string{"success": authNode, "failure": failureNodeID}),
			authNode: ref(nodeTypeAuthenticate, map[string]string{"success": successNodeID, "failure": failureNodeID, "register": failureNodeID}),
		}), 400, "amdev runs these shapes"},
		{"/nodes/" + nodeTypeAuthenticate + "/bad", `{"jwtAuthenticationMethod": "MAGIC"}`, 400, "jwtAuthenticationMethod"},
	} {
		status, body := e.call("PUT", base+tc.path, create, tc.body)
		if msg, _ := body["message"].(string); status != tc.status || !strings.Contains(msg, tc.msg) {
			t.Fatalf("PUT %s: %d %v, want %d %q", tc.path, status, body, tc.status, tc.msg)
		}
	}
	if status, body := e.call("GET", base+"/trees/WithScript", plain, ""); status != 404 {
		t.Fatalf("a refused tree was stored: %d %v", status, body)
	}

	// Delete: not a node in use; the tree, then its nodes.
	if status, body := e.call("DELETE", base+"/nodes/"+nodeTypeRegister+"/"+regNode, plain, ""); status != 409 {
		t.Fatalf("delete a node in use: %d %v", status, body)
	}
	if status, body := e.call("DELETE", base+"/trees/FleetAssertion", plain, ""); status != 200 || body["_id"] != "FleetAssertion" {
		t.Fatalf("delete tree: %d %v", status, body)
	}
	if status, body := login("FleetAssertion"); status != 400 {
		t.Fatalf("login with a deleted tree: %d %v", status, body)
	}
	for _, p := range []string{nodeTypeRegister + "/" + regNode, nodeTypeAuthenticate + "/" + authNode} {
		if status, body := e.call("DELETE", base+"/nodes/"+p, plain, ""); status != 200 {
			t.Fatalf("delete node %s: %d %v", p, status, body)
		}
	}
	// Changing a node of a configured tree in /a makes that tree /a's own: it
	// runs with the change there, unchanged in the root realm.
	_, conf := e.call("GET", base+"/trees/auth-tree-client-assertion", plain, "")
	confNode := conf["entryNodeId"].(string)
	if status, body := e.call("PUT", base+"/nodes/"+nodeTypeAuthenticate+"/"+confNode, plain,
		`{"jwtAuthenticationMethod": "CLIENT_ASSERTION", "additionalAudienceValues": ["fleet-audience"]}`); status != 200 {
		t.Fatalf("update a configured tree's node: %d %v", status, body)
	}
	if status, body := login("auth-tree-client-assertion"); status != 200 {
		t.Fatalf("configured tree with the changed node: %d %v", status, body)
	}
	if status, n := e.call("GET", e.srv.URL()+"/json/realms/root/realm-config/authentication/authenticationtrees/nodes/"+nodeTypeAuthenticate+"/"+confNode,
		plain, ""); status != 200 || len(n["additionalAudienceValues"].([]any)) != 0 {
		t.Fatalf("the root realm's node changed: %d %v", status, n)
	}
	// A configured tree deleted in /a stays in the root realm.
	if status, body := e.call("DELETE", base+"/trees/auth-tree", plain, ""); status != 200 {
		t.Fatalf("delete configured tree in /a: %d %v", status, body)
	}
	if status, body := e.call("GET", e.srv.URL()+"/json/realms/root/realm-config/authentication/authenticationtrees/trees/auth-tree", plain, ""); status != 200 {
		t.Fatalf("root realm's auth-tree: %d %v", status, body)
	}
}
