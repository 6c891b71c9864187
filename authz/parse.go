package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxErrors bounds the errors reported for one file; past it the file is
// hopeless and more lines only hide the first ones.
const maxErrors = 50

// parser walks the YAML node tree of a policy and collects every problem with
// its position.
type parser struct {
	file string
	errs ErrorList
}

// Parse parses and validates a policy. filename is used in error messages and in
// Rule.File. Problems are returned as an ErrorList of *PositionError in file order.
func Parse(filename string, data []byte) (*Policy, error) {
	p := &parser{file: filename}
	root, ok := p.decode(data)
	if !ok {
		return nil, p.errs
	}
	pol := &Policy{file: filename}
	p.document(root, pol)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *PositionError) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Col - b.Col
		})
		if len(p.errs) > maxErrors {
			p.errs = append(p.errs[:maxErrors], &PositionError{File: filename, Line: p.errs[maxErrors].Line, Col: p.errs[maxErrors].Col, Msg: "too many errors"})
		}
		return nil, p.errs
	}
	return pol, nil
}

// decode reads exactly one YAML document and returns its top node.
func (p *parser) decode(data []byte) (root *yaml.Node, ok bool) {
	defer func() {
		// yaml.v3 has panicked on hostile input in the past; a policy parser must
		// report, not crash. Only the library call is guarded, so the fuzzer still
		// sees any panic in imb's own code.
		if v := recover(); v != nil {
			p.add(1, 1, fmt.Sprintf("invalid YAML: %v", v))
			root, ok = nil, false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(1, 1, "policy is empty (write at least `rules:`)")
		} else {
			p.yamlError(err)
		}
		return nil, false
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		p.errorf(&next, "a policy file holds one YAML document; remove the second")
		return nil, false
	case !errors.Is(err, io.EOF):
		p.yamlError(err)
		return nil, false
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		p.add(1, 1, "policy is empty (write at least `rules:`)")
		return nil, false
	}
	return doc.Content[0], true
}

// yamlError turns a yaml.v3 syntax error into positioned errors. yaml.v3 reports
// only lines, so the column is 1.
func (p *parser) yamlError(err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if n, msg, ok := yamlLineError(line); ok {
			p.add(n, 1, "invalid YAML: "+msg)
			continue
		}
		if line != "" && line != "yaml: unmarshal errors:" {
			p.add(1, 1, "invalid YAML: "+strings.TrimPrefix(line, "yaml: "))
		}
	}
	if len(p.errs) == 0 {
		p.add(1, 1, "invalid YAML")
	}
}

// yamlLineError splits "yaml: line N: MSG" (or "line N: MSG", as in yaml.v3's
// lists of errors) into N and MSG.
func yamlLineError(s string) (int, string, bool) {
	s = strings.TrimPrefix(s, "yaml: ")
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return 0, "", false
	}
	num, msg, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, "", false
	}
	return max(n, 1), msg, true
}

func (p *parser) add(line, col int, msg string) {
	p.errs = append(p.errs, &PositionError{File: p.file, Line: line, Col: col, Msg: msg})
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.add(max(n.Line, 1), max(n.Column, 1), fmt.Sprintf(format, args...))
}

// field is one key/value pair of a mapping.
type field struct {
	key   *yaml.Node
	value *yaml.Node
}

// mapping returns the pairs of a mapping node, reporting keys that are not
// plain strings, keys not in allowed, and keys given twice.
func (p *parser) mapping(n *yaml.Node, what string, allowed []string) []field {
	if n.Kind == yaml.AliasNode {
		p.errorf(n, "YAML aliases are not supported in a policy")
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping", what)
		return nil
	}
	var out []field
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			p.errorf(k, "%s keys must be plain names", what)
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			p.errorf(k, "key %q given twice in %s (first at line %d)", k.Value, what, prev.Line)
			continue
		}
		seen[k.Value] = k
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			p.errorf(k, "unknown key %q in %s (known: %s)", k.Value, what, strings.Join(allowed, ", "))
			continue
		}
		if v.Kind == yaml.AliasNode {
			p.errorf(v, "YAML aliases are not supported in a policy")
			continue
		}
		out = append(out, field{k, v})
	}
	return out
}

// document parses the top-level mapping.
func (p *parser) document(n *yaml.Node, pol *Policy) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		p.errorf(n, "policy is empty (write at least `rules:`)")
		return
	}
	for _, f := range p.mapping(n, "the policy", []string{"version", "rules", "anonymous", "limits"}) {
		switch f.key.Value {
		case "version":
			if f.value.Kind != yaml.ScalarNode || f.value.Tag != "!!int" || f.value.Value != "1" {
				p.errorf(f.value, "unsupported version %q (this imb reads version: 1)", f.value.Value)
			}
		case "rules":
			pol.rules = p.ruleList(f.value, pol.file, false)
		case "anonymous":
			pol.anonymous = p.ruleList(f.value, pol.file, true)
		case "limits":
			pol.limits = p.limitList(f.value, pol.file)
		}
	}
}

// ruleList parses a sequence of rules and reports duplicates and clashing names.
func (p *parser) ruleList(n *yaml.Node, file string, anonymous bool) []*Rule {
	section := "rules"
	if anonymous {
		section = "anonymous"
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list of rules", section)
		return nil
	}
	var rules []*Rule
	keys := map[string]*Rule{}
	names := map[string]*Rule{}
	for _, item := range n.Content {
		r, ok := p.rule(item, file, anonymous)
		if !ok {
			continue
		}
		if r.Name != "" {
			if prev, dup := names[r.Name]; dup {
				p.errorf(item, "rule name %q already used by the rule at line %d", r.Name, prev.Line)
			}
			names[r.Name] = r
		}
		key := r.identity()
		if prev, dup := keys[key]; dup {
			if prev.MaxQoS != r.MaxQoS || prev.Retain != r.Retain || !slices.Equal(prev.ShareGroups, r.ShareGroups) {
				p.errorf(item, "rule contradicts the rule at line %d: same effect, actions, topics and conditions but different limits", prev.Line)
			} else {
				p.errorf(item, "duplicate rule: the rule at line %d has the same effect, actions, topics and conditions", prev.Line)
			}
			continue
		}
		keys[key] = r
		rules = append(rules, r)
	}
	return rules
}

// identity is what makes two rules the same rule: effect, actions, topics and
// conditions, order-insensitive.
func (r *Rule) identity() string {
	actions := make([]string, len(r.Actions))
	for i, a := range r.Actions {
		actions[i] = a.String()
	}
	return joinSorted(r.Effect.String(), actions, slices.Clone(r.Topics)) + "\x02" + r.selector.key()
}

// key is what makes two selectors the same, order-insensitive.
func (r *selector) key() string {
	claims := make([]string, len(r.claims))
	for i, c := range r.claims {
		vals := make([]string, len(c.values))
		for j, v := range c.values {
			vals[j] = v.String()
		}
		slices.Sort(vals)
		claims[i] = c.name + "=" + strings.Join(vals, ",")
	}
	subjects := make([]string, len(r.subjects))
	for i, sp := range r.subjects {
		subjects[i] = sp.String()
	}
	return joinSorted("", slices.Clone(r.anyScopes), slices.Clone(r.allScopes), claims, subjects)
}

// joinSorted sorts each part and joins head and the parts with separators that no
// policy value holds.
func joinSorted(head string, parts ...[]string) string {
	var b strings.Builder
	b.WriteString(head)
	for _, part := range parts {
		slices.Sort(part)
		b.WriteByte(0)
		b.WriteString(strings.Join(part, "\x01"))
	}
	return b.String()
}

// selectorField parses one key of a selector (scopes, all_scopes, claims,
// subjects) into sel; rules and limit entries both call it.
func (p *parser) selectorField(f field, sel *selector) {
	switch f.key.Value {
	case "scopes":
		sel.anyScopes = p.strings(f.value, "scopes", false)
	case "all_scopes":
		sel.allScopes = p.strings(f.value, "all_scopes", false)
	case "claims":
		sel.claims = p.claimConds(f.value)
	case "subjects":
		sel.subjects = p.subjectPatterns(f.value)
	}
}

// ruleKeys returns the keys a rule may have; anonymous rules have no conditions.
func ruleKeys(anonymous bool) []string {
	if anonymous {
		return []string{"name", "effect", "actions", "topics", "max_qos", "retain", "share_groups"}
	}
	return []string{"name", "effect", "actions", "topics", "scopes", "all_scopes", "claims", "max_qos", "retain", "share_groups",
		"require_bound_token"}
}

// rule parses and validates one rule.
func (p *parser) rule(n *yaml.Node, file string, anonymous bool) (*Rule, bool) {
	before := len(p.errs)
	fields := p.mapping(n, "a rule", ruleKeys(anonymous))
	if len(p.errs) > before {
		return nil, false
	}
	r := &Rule{File: file, Line: n.Line, MaxQoS: 2, Anonymous: anonymous}
	byKey := map[string]field{}
	for _, f := range fields {
		byKey[f.key.Value] = f
		switch f.key.Value {
		case "name":
			r.Name = p.name(f.value)
		case "effect":
			r.Effect = p.effect(f.value)
		case "actions":
			r.Actions = p.actions(f.value)
		case "topics":
			r.templates = p.topics(f.value, anonymous)
		case "scopes", "all_scopes", "claims":
			p.selectorField(f, &r.selector)
		case "max_qos":
			r.MaxQoS = p.qos(f.value)
		case "retain":
			r.Retain = p.boolean(f.value, "retain")
		case "require_bound_token":
			r.RequireBoundToken = p.boolean(f.value, "require_bound_token")
		case "share_groups":
			r.ShareGroups = p.strings(f.value, "share_groups", true)
			if r.ShareGroups == nil {
				r.ShareGroups = []string{}
			}
		}
	}
	for _, required := range []string{"effect", "actions", "topics"} {
		if _, ok := byKey[required]; !ok {
			p.errorf(n, "rule has no %q", required)
		}
	}
	for _, t := range r.templates {
		r.Topics = append(r.Topics, t.text)
	}
	p.limits(r, byKey)
	return r, len(p.errs) == before
}

// limits reports limits that contradict the rule's effect or actions.
func (p *parser) limits(r *Rule, byKey map[string]field) {
	if r.Effect == Deny {
		for _, k := range []string{"max_qos", "retain", "share_groups"} {
			if f, ok := byKey[k]; ok {
				p.errorf(f.key, "%s has no meaning on a deny rule (a deny refuses whatever it matches)", k)
			}
		}
		return
	}
	if f, ok := byKey["retain"]; ok && r.Retain && r.Actions != nil && !r.has(Publish) {
		p.errorf(f.key, "retain: true applies to publish, and this rule does not grant publish")
	}
	if f, ok := byKey["share_groups"]; ok && r.Actions != nil && !r.has(Subscribe) {
		p.errorf(f.key, "share_groups applies to subscribe, and this rule does not grant subscribe")
	}
}
