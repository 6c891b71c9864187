package authz

import (
	"strconv"
	"strings"

	"imb/internal/claimpath"
)

// condKind is the JSON type a claim condition value compares with.
type condKind uint8

const (
	condString condKind = iota
	condBool
	condNumber
)

// condValue is one acceptable value of a claim condition.
type condValue struct {
	kind condKind
	s    string
	b    bool
	f    float64
}

// String renders the value as it would appear in YAML.
func (v condValue) String() string {
	switch v.kind {
	case condBool:
		return strconv.FormatBool(v.b)
	case condNumber:
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	}
	return strconv.Quote(v.s)
}

// claimCond requires the claim name to equal one of values, or, for an array
// claim, to contain one of them.
type claimCond struct {
	name   string
	values []condValue
}

// matches reports whether the claim value c (as decoded from JSON) satisfies the
// condition.
func (cc *claimCond) matches(c any) bool {
	if arr, ok := c.([]any); ok {
		for _, el := range arr {
			if cc.matchesScalar(el) {
				return true
			}
		}
		return false
	}
	return cc.matchesScalar(c)
}

func (cc *claimCond) matchesScalar(c any) bool {
	for _, v := range cc.values {
		switch x := c.(type) {
		case string:
			if v.kind == condString && v.s == x {
				return true
			}
		case bool:
			if v.kind == condBool && v.b == x {
				return true
			}
		case float64:
			if v.kind == condNumber && v.f == x {
				return true
			}
		}
	}
	return false
}

// String renders the condition for explain.
func (cc *claimCond) String() string {
	parts := make([]string, len(cc.values))
	for i, v := range cc.values {
		parts[i] = v.String()
	}
	return cc.name + " in [" + strings.Join(parts, ", ") + "]"
}

// selector is what chooses the identities a rule or a limit entry applies to: scopes
// (any of), all_scopes (all of), claim conditions and, for limit entries, subject
// patterns. Rules and limit entries share it, so that both select alike.
type selector struct {
	anyScopes []string
	allScopes []string
	claims    []claimCond
	subjects  []subjectPattern
}

// applies reports whether the selector's conditions hold for s.
// scopes is any-of, all_scopes all-of, every claim condition must hold, and one
// subject pattern (when there are any) must match s.ID.
func (r *selector) applies(s *Subject) bool {
	if len(r.subjects) > 0 && r.matchSubject(s.ID) == nil {
		return false
	}
	if len(r.anyScopes) > 0 {
		found := false
		for _, want := range r.anyScopes {
			if hasScope(s.Scopes, want) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, want := range r.allScopes {
		if !hasScope(s.Scopes, want) {
			return false
		}
	}
	for i := range r.claims {
		c, ok := claimpath.Lookup(s.Claims, r.claims[i].name)
		if !ok || !r.claims[i].matches(c) {
			return false
		}
	}
	return true
}

func hasScope(scopes []string, want string) bool {
	for _, s := range scopes {
		if s == want {
			return true
		}
	}
	return false
}

// Conditions describes the rule's conditions for explain, e.g.
// `scopes any of [publish]; claims thingType in ["gateway"]`, or "none".
func (r *Rule) Conditions() string { return r.selector.conditions() }

// conditions renders the selector for explain, or "none".
func (r *selector) conditions() string {
	var parts []string
	if len(r.subjects) > 0 {
		pats := make([]string, len(r.subjects))
		for i, sp := range r.subjects {
			pats[i] = sp.String()
		}
		parts = append(parts, "subjects ["+strings.Join(pats, ", ")+"]")
	}
	if len(r.anyScopes) > 0 {
		parts = append(parts, "scopes any of ["+strings.Join(r.anyScopes, ", ")+"]")
	}
	if len(r.allScopes) > 0 {
		parts = append(parts, "scopes all of ["+strings.Join(r.allScopes, ", ")+"]")
	}
	for i := range r.claims {
		parts = append(parts, "claim "+r.claims[i].String())
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}
