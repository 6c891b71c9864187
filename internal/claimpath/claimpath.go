// Package claimpath looks up a claim by a dotted path in decoded JWT or introspection claims. Identity providers nest
// what the broker needs (Keycloak's realm_access.roles, resource_access.CLIENT.roles), and the token facts, the
// claims map of the configuration and policy placeholders must all read a path by the same rule.
package claimpath

// Lookup returns the value at path in claims. A claim whose whole name is path wins (Cognito's "cognito:groups",
// a namespaced "https://example.com/roles" or a flat "a.b"); otherwise a dot descends into a JSON object, so
// "resource_access.mqtt.roles" is claims["resource_access"]["mqtt"]["roles"]. A member whose name itself holds
// dots (a Keycloak client "x.y") is found too: every split of the path is tried, shortest head first. A JSON null
// counts as absent.
func Lookup(claims map[string]any, path string) (any, bool) {
	if v, ok := claims[path]; ok {
		return v, v != nil
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		if m, isObject := claims[path[:i]].(map[string]any); isObject {
			if v, ok := Lookup(m, path[i+1:]); ok {
				return v, true
			}
		}
	}
	return nil, false
}
