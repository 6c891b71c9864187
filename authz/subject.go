package authz

// Subject is the verified identity a policy is compiled for. The caller builds it
// from a validated token; authz trusts it as given.
type Subject struct {
	// ID is the plain thing id (already normalised by the caller, never AM's
	// "(usr!id)" form); it fills {sub}.
	ID string
	// ClientID is the MQTT client id; it fills {client_id}.
	ClientID string
	// Scopes are the token's OAuth2 scopes.
	Scopes []string
	// Claims are the token's JSON-decoded claims: string, []any, float64, bool,
	// map[string]any.
	Claims map[string]any
	// Anonymous marks a client without a token: only the policy's anonymous
	// section applies to it.
	Anonymous bool
}
