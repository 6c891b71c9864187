package hooks

import (
	"fmt"
	"strings"
)

// binding is one allowed shape of client identifier for a thing: the thing id
// between a fixed prefix and suffix, or, with a trailing *, followed by anything.
type binding struct {
	any      bool // "*": no binding at all
	prefix   string
	suffix   string
	wildcard bool // the pattern ends in *: any non-empty tail after suffix
}

// parseBindings reads patterns such as "{sub}", "{sub}:*", "site-{sub}" or "*".
func parseBindings(patterns []string) ([]binding, error) {
	out := make([]binding, 0, len(patterns))
	for _, p := range patterns {
		if p == "*" {
			out = append(out, binding{any: true})
			continue
		}
		i := strings.Index(p, "{sub}")
		if i < 0 || strings.Count(p, "{sub}") != 1 {
			return nil, fmt.Errorf("hooks: client id binding %q: must contain {sub} once, or be *", p)
		}
		b := binding{prefix: p[:i], suffix: p[i+len("{sub}"):]}
		if strings.HasSuffix(b.suffix, "*") {
			b.wildcard = true
			b.suffix = strings.TrimSuffix(b.suffix, "*")
		}
		if strings.ContainsAny(b.prefix+b.suffix, "*{}") {
			return nil, fmt.Errorf("hooks: client id binding %q: only a trailing * is allowed", p)
		}
		out = append(out, b)
	}
	return out, nil
}

// matches reports whether clientID is one the thing may use.
func (b binding) matches(thingID, clientID string) bool {
	if b.any {
		return true
	}
	rest, ok := strings.CutPrefix(clientID, b.prefix)
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, thingID)
	if !ok {
		return false
	}
	if b.wildcard {
		tail, ok := strings.CutPrefix(rest, b.suffix)
		return ok && tail != ""
	}
	return rest == b.suffix
}

// bound reports whether any binding lets thingID use clientID.
func (h *Hook) bound(thingID, clientID string) bool {
	for _, b := range h.bindings {
		if b.matches(thingID, clientID) {
			return true
		}
	}
	return false
}

// assignID picks the client identifier given to a thing that connected with an empty
// one: its thing id when a binding allows that, else the first binding's shape with
// the broker-generated suffix.
func (h *Hook) assignID(thingID, generated string) string {
	if h.bound(thingID, thingID) {
		return thingID
	}
	for _, b := range h.bindings {
		if b.any {
			return generated
		}
		id := b.prefix + thingID + b.suffix
		if b.wildcard {
			id += generated
		}
		return id
	}
	return generated
}
