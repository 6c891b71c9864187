package authz

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"imb/internal/claimpath"
)

// maxExpansions bounds the filters one rule topic may expand to through array
// claims, so a hostile or mistaken claim cannot make Compile build millions.
const maxExpansions = 1024

// Grants is a policy compiled for one subject: per action, one table of the
// deny and allow filters with the rules they came from, so that one walk finds
// both. It is immutable and safe for concurrent use.
type Grants struct {
	actions [numActions]table
	skipped []Skip
}

// grant is one compiled filter and the rule it came from.
type grant struct {
	rule *Rule
	// implied marks a Receive grant that comes from a subscribe rule.
	implied bool
}

// Skip records a rule that Compile could not apply as written because a
// placeholder had no usable value for the subject. An allow rule is skipped
// entirely; a deny rule is widened instead: the unfillable level becomes '+',
// so a deny never opens anything by failing to fill.
type Skip struct {
	// Rule is the rule concerned.
	Rule *Rule
	// Topic is the rule's topic as written.
	Topic string
	// Placeholder is the placeholder that could not be filled, e.g. "{claim.site}".
	Placeholder string
	// Reason says why, e.g. `value "a/b" contains '/'`.
	Reason string
	// Widened is true for a deny rule whose level was widened to '+'.
	Widened bool
}

// String returns "FILE:LINE (name): topic T: {placeholder} REASON; rule skipped"
// (or "; level widened to '+'" for a deny rule).
func (s Skip) String() string {
	what := "rule skipped"
	if s.Widened {
		what = "deny level widened to '+'"
	}
	return fmt.Sprintf("%s: topic %q: %s %s; %s", s.Rule, s.Topic, s.Placeholder, s.Reason, what)
}

// Compile builds the grants of subject s. It applies the rules whose conditions
// s meets (only the anonymous section when s.Anonymous), fills placeholders, and
// pre-compiles every filter. A subscribe rule also grants (or denies) receive on
// the same filters, because a subscription is useless without its deliveries.
// The result is never nil.
func (p *Policy) Compile(s Subject) *Grants {
	g := &Grants{}
	rules := p.rules
	if s.Anonymous {
		rules = p.anonymous
	}
	for _, r := range rules {
		if r.applies(&s) {
			g.addRule(r, &s)
		}
	}
	for i := range g.actions {
		g.actions[i].finish()
	}
	return g
}

// AppliesTo reports whether the rule's conditions hold for s (for explain); it
// does not look at placeholders.
func (r *Rule) AppliesTo(s Subject) bool {
	if s.Anonymous != r.Anonymous {
		return false
	}
	return r.applies(&s)
}

// Skipped returns the rules Compile skipped or widened, with the reason.
func (g *Grants) Skipped() []Skip {
	return slices.Clone(g.skipped)
}

// addRule compiles the filters of one applicable rule into the action tables.
func (g *Grants) addRule(r *Rule, s *Subject) {
	var filters [][]string
	for i := range r.templates {
		fs, skip := expand(&r.templates[i], s, r.Effect == Deny)
		if skip != nil {
			skip.Rule = r
			g.skipped = append(g.skipped, *skip)
			if r.Effect == Allow {
				return
			}
		}
		filters = append(filters, fs...)
	}
	for _, a := range r.Actions {
		g.add(a, r, filters, false)
		if a == Subscribe && !r.has(Receive) {
			g.add(Receive, r, filters, true)
		}
	}
}

func (g *Grants) add(a Action, r *Rule, filters [][]string, implied bool) {
	t := &g.actions[a]
	for _, levels := range filters {
		t.add(grant{rule: r, implied: implied}, levels)
	}
}

// expand fills the placeholders of t for s and returns the resulting filters
// (several when an array claim fills a level). If a value is unusable, an allow
// rule gets no filter and a Skip; a deny rule (widen) gets '+' at that level and
// a Skip marked Widened.
func expand(t *template, s *Subject, widen bool) ([][]string, *Skip) {
	choices := make([][]string, len(t.levels))
	var skip *Skip
	total := 1
	for i, lv := range t.levels {
		switch lv.kind {
		case levelLiteral:
			choices[i] = []string{lv.text}
		case levelPlus:
			choices[i] = []string{"+"}
		case levelHash:
			choices[i] = []string{"#"}
		default:
			vals, reason := placeholderValues(lv, s, i == 0)
			if reason != "" {
				if skip == nil {
					skip = &Skip{Topic: t.text, Placeholder: placeholderText(lv), Reason: reason, Widened: widen}
				}
				if !widen {
					return nil, skip
				}
				vals = []string{"+"}
			}
			choices[i] = vals
		}
		total = min(total*len(choices[i]), maxExpansions+1)
	}
	if total > maxExpansions {
		reason := fmt.Sprintf("expands the topic to more than %d filters", maxExpansions)
		if !widen {
			return nil, &Skip{Topic: t.text, Placeholder: firstArrayPlaceholder(t, choices), Reason: reason}
		}
		if skip == nil {
			skip = &Skip{Topic: t.text, Placeholder: firstArrayPlaceholder(t, choices), Reason: reason, Widened: true}
		}
		for i, lv := range t.levels {
			if lv.kind >= levelSub {
				choices[i] = []string{"+"}
			}
		}
		total = 1
	}
	return product(choices, total), skip
}

// product returns every filter that takes one value per level from choices;
// total is their number.
func product(choices [][]string, total int) [][]string {
	out := make([][]string, 0, total)
	levels := make([]string, len(choices))
	var fill func(int)
	fill = func(i int) {
		if i == len(choices) {
			out = append(out, slices.Clone(levels))
			return
		}
		for _, v := range choices[i] {
			levels[i] = v
			fill(i + 1)
		}
	}
	fill(0)
	return out
}

// firstArrayPlaceholder names the first placeholder that expanded to several
// values, for the Skip of an over-long expansion.
func firstArrayPlaceholder(t *template, choices [][]string) string {
	for i, lv := range t.levels {
		if lv.kind >= levelSub && len(choices[i]) > 1 {
			return placeholderText(lv)
		}
	}
	return ""
}

// placeholderText renders a placeholder level as written.
func placeholderText(lv tmplLevel) string {
	switch lv.kind {
	case levelSub:
		return "{sub}"
	case levelClientID:
		return "{client_id}"
	}
	return "{claim." + lv.text + "}"
}

// placeholderValues returns the values that fill lv for s, or why there is none
// usable. Every value must be a whole, wildcard-free level (CVE-2017-7650: a
// client id of "+" or "#" must not widen a grant).
func placeholderValues(lv tmplLevel, s *Subject, firstLevel bool) ([]string, string) {
	var vals []string
	switch lv.kind {
	case levelSub:
		vals = []string{s.ID}
	case levelClientID:
		vals = []string{s.ClientID}
	case levelClaim:
		c, ok := claimpath.Lookup(s.Claims, lv.text)
		if !ok {
			return nil, fmt.Sprintf("claim %q is missing", lv.text)
		}
		switch v := c.(type) {
		case string:
			vals = []string{v}
		case []any:
			if len(v) == 0 {
				return nil, fmt.Sprintf("claim %q is an empty list", lv.text)
			}
			for _, el := range v {
				str, ok := el.(string)
				if !ok {
					return nil, fmt.Sprintf("claim %q lists a %s, not a string", lv.text, jsonType(el))
				}
				vals = append(vals, str)
			}
		default:
			return nil, fmt.Sprintf("claim %q is a %s, not a string", lv.text, jsonType(c))
		}
	}
	for _, v := range vals {
		if reason := badLevelValue(v, firstLevel); reason != "" {
			return nil, reason
		}
	}
	return vals, ""
}

// badLevelValue returns why v cannot fill a topic level, or "".
func badLevelValue(v string, firstLevel bool) string {
	if v == "" {
		return "value is empty"
	}
	if i := strings.IndexAny(v, "+#/\x00"); i >= 0 {
		return fmt.Sprintf("value %s contains %q", quoteShort(v), v[i])
	}
	if firstLevel && v[0] == '$' {
		return fmt.Sprintf("value %s starts with '$' at the first level", quoteShort(v))
	}
	return ""
}

// quoteShort quotes v, cut to a length that keeps explain readable.
func quoteShort(v string) string {
	const limit = 64
	if len(v) > limit {
		return strconv.Quote(v[:limit]) + "..."
	}
	return strconv.Quote(v)
}

// jsonType names the JSON type of a decoded claim value.
func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
