package authz

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
)

// maxPolicySize bounds the policy file Load reads; real policies are a few KiB.
const maxPolicySize = 4 << 20

// Policy is a parsed, validated topics.yaml. It is immutable and safe for
// concurrent use.
type Policy struct {
	file      string
	rules     []*Rule
	anonymous []*Rule
	limits    []*LimitEntry
}

// Rule is one entry of the policy, as written.
type Rule struct {
	// File and Line locate the rule (the line of its first key) for audit and explain.
	File string
	Line int
	// Name is the optional name the operator gave the rule.
	Name string
	// Effect is Allow or Deny.
	Effect Effect
	// Actions are the actions as written; Subscribe implies Receive at Compile.
	Actions []Action
	// Topics are the topic filters as written, placeholders included.
	Topics []string
	// MaxQoS is the highest QoS an allow rule permits (2 unless limited).
	MaxQoS byte
	// Retain says whether an allow rule permits publishing with the retain flag.
	Retain bool
	// ShareGroups restricts the groups of shared subscriptions: nil allows any
	// group, a non-nil empty slice allows none.
	ShareGroups []string
	// Anonymous marks a rule of the anonymous section.
	Anonymous bool
	// RequireBoundToken makes the identities the rule selects (its scopes and claims) connect only with a
	// sender-constrained token (key- or certificate-bound, proven); a bearer token is refused.
	RequireBoundToken bool

	selector
	templates []template
}

// String returns "FILE:LINE", or "FILE:LINE (name)" when the rule is named.
func (r *Rule) String() string {
	if r == nil {
		return "no rule"
	}
	s := r.File + ":" + strconv.Itoa(r.Line)
	if r.Name != "" {
		s += " (" + r.Name + ")"
	}
	return s
}

// has reports whether the rule lists action a (as written, without implication).
func (r *Rule) has(a Action) bool {
	for _, x := range r.Actions {
		if x == a {
			return true
		}
	}
	return false
}

// Load reads and parses the policy file at path. Problems in the file are
// returned as an ErrorList of *PositionError; a file that cannot be read gives a
// wrapped I/O error.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	if len(data) > maxPolicySize {
		return nil, ErrorList{{File: path, Line: 1, Col: 1, Msg: fmt.Sprintf("policy file is larger than %d bytes", maxPolicySize)}}
	}
	return Parse(path, data)
}

// Summary returns one line describing the policy, for `imb policy check`.
func (p *Policy) Summary() string {
	allow, deny := countEffects(p.rules)
	s := fmt.Sprintf("%s: valid: %d rules (%d allow, %d deny)", p.file, len(p.rules), allow, deny)
	if len(p.anonymous) == 0 {
		s += "; anonymous: none (clients without a token cannot connect)"
		if len(p.limits) > 0 {
			s += fmt.Sprintf("; limits: %d entries", len(p.limits))
		}
		return s
	}
	allow, deny = countEffects(p.anonymous)
	s += fmt.Sprintf("; anonymous: %d rules (%d allow, %d deny)", len(p.anonymous), allow, deny)
	if len(p.limits) > 0 {
		s += fmt.Sprintf("; limits: %d entries", len(p.limits))
	}
	return s
}

// AllowsAnonymous reports whether clients without a token may connect: true when
// the anonymous section has at least one allow rule.
func (p *Policy) AllowsAnonymous() bool {
	allow, _ := countEffects(p.anonymous)
	return allow > 0
}

// Rules returns the rules of the policy in file order: the token section, then
// the anonymous section. The rules must not be modified.
func (p *Policy) Rules() []*Rule {
	out := make([]*Rule, 0, len(p.rules)+len(p.anonymous))
	out = append(out, p.rules...)
	return append(out, p.anonymous...)
}

func countEffects(rules []*Rule) (allow, deny int) {
	for _, r := range rules {
		if r.Effect == Allow {
			allow++
		} else {
			deny++
		}
	}
	return allow, deny
}

// ClaimPaths returns the claim paths the rule reads, in its {claim.PATH} placeholders and its claims conditions,
// each once, in the order written.
func (r *Rule) ClaimPaths() []string {
	var out []string
	add := func(p string) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, t := range r.templates {
		for _, lv := range t.levels {
			if lv.kind == levelClaim {
				add(lv.text)
			}
		}
	}
	for _, c := range r.claims {
		add(c.name)
	}
	return out
}

// ClaimPaths returns the claim paths any rule of the token section reads, sorted: the claims whose values the
// broker records at connect, so an audit line shows what the decisions were made of.
func (p *Policy) ClaimPaths() []string {
	var out []string
	for _, r := range p.rules {
		for _, c := range r.ClaimPaths() {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}
