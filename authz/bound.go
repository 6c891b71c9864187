package authz

// BoundTokenRequired names the first rule or limit entry with require_bound_token that selects s (by its
// scopes, claims and, for limit entries, subject patterns), or returns "" when none does. Such an identity
// may connect only with a sender-constrained token whose binding the connection proved; the broker refuses
// a bearer token for it with 0x87 and names the rule in the audit line.
func (p *Policy) BoundTokenRequired(s Subject) string {
	if s.Anonymous {
		return ""
	}
	for _, r := range p.rules {
		if r.RequireBoundToken && r.applies(&s) {
			return "rule " + r.String()
		}
	}
	for _, e := range p.limits {
		if e.RequireBoundToken && e.AppliesTo(s) {
			return "limit entry " + e.String()
		}
	}
	return ""
}
