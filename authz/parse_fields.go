package authz

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file parses the values of a rule's keys; each reports its own errors
// with the value's position.

func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, "%s must be a single value", what)
		return "", false
	}
	return n.Value, true
}

func (p *parser) name(n *yaml.Node) string {
	v, ok := p.scalar(n, "name")
	if !ok {
		return ""
	}
	if v == "" || len(v) > 100 || strings.ContainsFunc(v, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		p.errorf(n, "name must be 1 to 100 printable characters")
		return ""
	}
	return v
}

func (p *parser) effect(n *yaml.Node) Effect {
	v, ok := p.scalar(n, "effect")
	if !ok {
		return 0
	}
	switch v {
	case "allow":
		return Allow
	case "deny":
		return Deny
	}
	p.errorf(n, "effect must be allow or deny, not %q", v)
	return 0
}

func (p *parser) actions(n *yaml.Node) []Action {
	items := p.sequence(n, "actions")
	if items == nil {
		return nil
	}
	var out []Action
	for _, it := range items {
		v, ok := p.scalar(it, "an action")
		if !ok {
			continue
		}
		a, ok := ParseAction(v)
		if !ok {
			p.errorf(it, "unknown action %q (known: publish, subscribe, receive)", v)
			continue
		}
		if slices.Contains(out, a) {
			p.errorf(it, "action %q listed twice", v)
			continue
		}
		out = append(out, a)
	}
	return out
}

// sequence returns the items of a non-empty list; a single scalar is not
// accepted, so that `actions: publish, subscribe` cannot silently mean one
// strange action.
func (p *parser) sequence(n *yaml.Node, what string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list, like [a, b]", what)
		return nil
	}
	if len(n.Content) == 0 {
		p.errorf(n, "%s must not be empty", what)
		return nil
	}
	for _, it := range n.Content {
		if it.Kind == yaml.AliasNode {
			p.errorf(it, "YAML aliases are not supported in a policy")
			return nil
		}
	}
	return n.Content
}

func (p *parser) topics(n *yaml.Node, anonymous bool) []template {
	items := p.sequence(n, "topics")
	var out []template
	for _, it := range items {
		v, ok := p.scalar(it, "a topic filter")
		if !ok {
			continue
		}
		t, terr := parseTemplate(v, anonymous)
		if terr != nil {
			line, col := valuePosition(it, terr.offset)
			p.add(line, col, fmt.Sprintf("topic %q: %s", v, terr.msg))
			continue
		}
		if slices.ContainsFunc(out, func(o template) bool { return o.text == v }) {
			p.errorf(it, "topic %q listed twice", v)
			continue
		}
		out = append(out, t)
	}
	return out
}

// valuePosition points at byte offset of a scalar's value: exact for plain and
// simple quoted scalars, the scalar's start (quote included) otherwise.
func valuePosition(n *yaml.Node, offset int) (int, int) {
	line, col := max(n.Line, 1), max(n.Column, 1)
	if offset == 0 {
		return line, col
	}
	switch n.Style {
	case 0:
		return line, col + offset
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if !strings.ContainsAny(n.Value, "\\'\"\n") {
			return line, col + 1 + offset
		}
	}
	return line, col
}

// strings parses a list of names (scopes, share groups). emptyOK allows [].
func (p *parser) strings(n *yaml.Node, what string, emptyOK bool) []string {
	if emptyOK && n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		return nil
	}
	items := p.sequence(n, what)
	var out []string
	for _, it := range items {
		v, ok := p.scalar(it, "an entry of "+what)
		if !ok {
			continue
		}
		if v == "" || strings.ContainsAny(v, " \t\r\n\x00") || (what == "share_groups" && strings.ContainsAny(v, "/+#")) {
			p.errorf(it, "invalid entry %q in %s", v, what)
			continue
		}
		if slices.Contains(out, v) {
			p.errorf(it, "%q listed twice in %s", v, what)
			continue
		}
		out = append(out, v)
	}
	return out
}

func (p *parser) qos(n *yaml.Node) byte {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.errorf(n, "max_qos must be 0, 1 or 2")
		return 2
	}
	switch n.Value {
	case "0":
		return 0
	case "1":
		return 1
	case "2":
		return 2
	}
	p.errorf(n, "max_qos must be 0, 1 or 2, not %s", n.Value)
	return 2
}

func (p *parser) boolean(n *yaml.Node, what string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		p.errorf(n, "%s must be true or false", what)
		return false
	}
	return b
}

// claimConds parses `claims: {NAME: VALUE | [VALUE...]}`.
func (p *parser) claimConds(n *yaml.Node) []claimCond {
	var out []claimCond
	for _, f := range p.mapping(n, "claims", nil) {
		if msg := checkClaimName(f.key.Value); msg != "" {
			p.errorf(f.key, "%s", msg)
			continue
		}
		cc := claimCond{name: f.key.Value}
		items := []*yaml.Node{f.value}
		if f.value.Kind == yaml.SequenceNode {
			items = p.sequence(f.value, "claim "+f.key.Value)
		}
		for _, it := range items {
			v, ok := p.condValue(it, f.key.Value)
			if ok {
				cc.values = append(cc.values, v)
			}
		}
		if len(cc.values) > 0 {
			out = append(out, cc)
		}
	}
	return out
}

func (p *parser) condValue(n *yaml.Node, claim string) (condValue, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "claim %s: a condition value must be a string, number or boolean", claim)
		return condValue{}, false
	}
	switch n.Tag {
	case "!!str":
		return condValue{kind: condString, s: n.Value}, true
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return condValue{kind: condBool, b: b}, true
		}
	case "!!int", "!!float":
		var f float64
		if n.Decode(&f) == nil {
			return condValue{kind: condNumber, f: f}, true
		}
	}
	p.errorf(n, "claim %s: a condition value must be a string, number or boolean (quote it to compare as a string)", claim)
	return condValue{}, false
}
