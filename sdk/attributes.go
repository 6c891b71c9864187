package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
)

// Attributes are the thing's identity attributes as AM returns them: the id, and every other
// attribute as a list of strings (LDAP multi-values), filtered by the realm's allow-list.
type Attributes struct {
	ID     string
	Values map[string][]string
}

// Get returns the first value of an attribute, or "".
func (a Attributes) Get(name string) string {
	if v := a.Values[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Names returns the attribute names in order.
func (a Attributes) Names() []string {
	names := make([]string, 0, len(a.Values))
	for n := range a.Values {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Attributes reads the thing's attributes (GET /json/things/*), only names when given (_fields). In a
// PoP session the GET carries a signed body whose aud includes the _fields query exactly as sent.
func (t *Thing) Attributes(ctx context.Context, names ...string) (Attributes, error) {
	var body map[string]any
	s, err := t.Session(ctx)
	if err != nil {
		return Attributes{}, fmt.Errorf("attributes: %w", err)
	}
	if s.ProofOfPossession() {
		body = map[string]any{}
	}
	reply, err := t.call(ctx, "attributes", http.MethodGet, t.client.ep.attributes(names), body)
	if err != nil {
		return Attributes{}, err
	}
	return parseAttributes(reply)
}

// parseAttributes reads {"_id": "x", "a": ["v"], …}; a single string value is taken as a one-element
// list and any other JSON value is kept as its JSON text, so nothing AM sends is lost.
func parseAttributes(data []byte) (Attributes, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Attributes{}, fmt.Errorf("attributes: decode: %w", err)
	}
	a := Attributes{Values: make(map[string][]string, len(raw))}
	for name, v := range raw {
		if name == "_id" {
			if err := json.Unmarshal(v, &a.ID); err != nil {
				return Attributes{}, fmt.Errorf("attributes: _id is not a string")
			}
			continue
		}
		if name == "_rev" {
			continue
		}
		var list []string
		var one string
		switch {
		case json.Unmarshal(v, &list) == nil:
			a.Values[name] = list
		case json.Unmarshal(v, &one) == nil:
			a.Values[name] = []string{one}
		default:
			a.Values[name] = []string{string(v)}
		}
	}
	return a, nil
}
