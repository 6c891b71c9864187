package authz

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rule0 is a valid rule prefix; tests append keys to it. Its lines are 2-4.
const rule0 = "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [a]\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // exact error lines
	}{
		{"empty file", "", []string{"p.yaml:1:1: policy is empty (write at least `rules:`)"}},
		{"only a comment", "# nothing\n", []string{"p.yaml:1:1: policy is empty (write at least `rules:`)"}},
		{"null document", "~\n", []string{"p.yaml:1:1: policy is empty (write at least `rules:`)"}},
		{"not a mapping", "- a\n", []string{"p.yaml:1:1: the policy must be a mapping"}},
		{"yaml syntax", "rules:\n\t- x\n", []string{"p.yaml:2:1: invalid YAML: found character that cannot start any token"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"p.yaml:2:1: a policy file holds one YAML document; remove the second"}},
		{"unknown top key", "rules: []\nrule: []\n", []string{`p.yaml:2:1: unknown key "rule" in the policy (known: version, rules, anonymous, limits)`}},
		{"bad version", "version: 2\nrules: []\n", []string{`p.yaml:1:10: unsupported version "2" (this imb reads version: 1)`}},
		{"rules not a list", "rules: {a: 1}\n", []string{"p.yaml:1:8: rules must be a list of rules"}},
		{"rule not a mapping", "rules:\n  - allow\n", []string{"p.yaml:2:5: a rule must be a mapping"}},
		{"unknown rule key", rule0 + "    topic: [b]\n", []string{`p.yaml:5:5: unknown key "topic" in a rule (known: name, effect, actions, topics, scopes, all_scopes, claims, max_qos, retain, share_groups, require_bound_token)`}},
		{"key twice", rule0 + "    effect: deny\n", []string{`p.yaml:5:5: key "effect" given twice in a rule (first at line 2)`}},
		{"missing keys", "rules:\n  - name: x\n", []string{
			`p.yaml:2:5: rule has no "effect"`, `p.yaml:2:5: rule has no "actions"`, `p.yaml:2:5: rule has no "topics"`}},
		{"bad effect", "rules:\n  - effect: permit\n    actions: [publish]\n    topics: [a]\n", []string{`p.yaml:2:13: effect must be allow or deny, not "permit"`}},
		{"unknown action", "rules:\n  - effect: allow\n    actions: [publish, read]\n    topics: [a]\n", []string{`p.yaml:3:24: unknown action "read" (known: publish, subscribe, receive)`}},
		{"action twice", "rules:\n  - effect: allow\n    actions: [publish, publish]\n    topics: [a]\n", []string{`p.yaml:3:24: action "publish" listed twice`}},
		{"actions not a list", "rules:\n  - effect: allow\n    actions: publish\n    topics: [a]\n", []string{"p.yaml:3:14: actions must be a list, like [a, b]"}},
		{"empty actions", "rules:\n  - effect: allow\n    actions: []\n    topics: [a]\n", []string{"p.yaml:3:14: actions must not be empty"}},
		{"hash not last", "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [a/#/b]\n", []string{`p.yaml:4:16: topic "a/#/b": '#' must be the last level of a topic filter`}},
		{"hash inside level", "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [\"a/b#\"]\n", []string{`p.yaml:4:18: topic "a/b#": '#' must be a whole topic level`}},
		{"plus inside level", "rules:\n  - effect: allow\n    actions: [publish]\n    topics:\n      - things/x+/state\n", []string{`p.yaml:5:17: topic "things/x+/state": '+' must be a whole topic level`}},
		{"empty topic", "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [\"\"]\n", []string{`p.yaml:4:14: topic "": empty topic filter`}},
		{"unknown placeholder", "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [\"things/{user}/state\"]\n", []string{
			`p.yaml:4:22: topic "things/{user}/state": unknown placeholder {user} (known: {sub}, {client_id}, {claim.NAME})`}},
		{"partial placeholder", "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [\"things/dev-{sub}/state\"]\n", []string{
			`p.yaml:4:26: topic "things/dev-{sub}/state": a placeholder must fill a whole topic level, like things/{sub}/state ('{' and '}' are not allowed otherwise)`}},
		{"unbalanced brace", "rules:\n  - effect: allow\n    actions: [publish]\n    topics:\n      - things/{sub/state\n", []string{
			`p.yaml:5:16: topic "things/{sub/state": a placeholder must fill a whole topic level, like things/{sub}/state ('{' and '}' are not allowed otherwise)`}},
		{"empty claim name", "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [\"x/{claim.}\"]\n", []string{`p.yaml:4:18: topic "x/{claim.}": empty claim name`}},
		{"claim path with an empty step", "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [\"x/{claim.a..b}\"]\n", []string{
			`p.yaml:4:18: topic "x/{claim.a..b}": claim path "a..b" has an empty step: write NAME or NAME.MEMBER`}},
		{"claim path ending in a dot", rule0 + "    claims: {\"a.\": c}\n", []string{
			`p.yaml:5:14: claim path "a." has an empty step: write NAME or NAME.MEMBER`}},
		{"shared topic in a rule", "rules:\n  - effect: allow\n    actions: [subscribe]\n    topics: [\"$SHARE/g/a\"]\n", []string{
			`p.yaml:4:14: topic "$SHARE/g/a": a rule topic cannot be a shared subscription; write the inner filter and restrict groups with share_groups`}},
		{"topic twice", "rules:\n  - effect: allow\n    actions: [publish]\n    topics: [a, a]\n", []string{`p.yaml:4:17: topic "a" listed twice`}},
		{"placeholder in anonymous rule", "anonymous:\n  - effect: allow\n    actions: [publish]\n    topics: [\"x/{sub}\"]\n", []string{
			`p.yaml:4:17: topic "x/{sub}": placeholder {sub} cannot be used in an anonymous rule (only {client_id})`}},
		{"conditions in anonymous rule", "anonymous:\n  - effect: allow\n    actions: [publish]\n    topics: [a]\n    scopes: [x]\n", []string{
			`p.yaml:5:5: unknown key "scopes" in a rule (known: name, effect, actions, topics, max_qos, retain, share_groups)`}},
		{"duplicate rule", rule0 + "  - effect: allow\n    topics: [a]\n    actions: [publish]\n", []string{
			"p.yaml:5:5: duplicate rule: the rule at line 2 has the same effect, actions, topics and conditions"}},
		{"duplicate rule with other limits", rule0 + "  - effect: allow\n    topics: [a]\n    actions: [publish]\n    max_qos: 0\n", []string{
			"p.yaml:5:5: rule contradicts the rule at line 2: same effect, actions, topics and conditions but different limits"}},
		{"duplicate name", "rules:\n  - {name: r, effect: allow, actions: [publish], topics: [a]}\n  - {name: r, effect: allow, actions: [publish], topics: [b]}\n", []string{
			`p.yaml:3:5: rule name "r" already used by the rule at line 2`}},
		{"limits on deny", "rules:\n  - effect: deny\n    actions: [publish, subscribe]\n    topics: [a]\n    max_qos: 1\n    retain: false\n    share_groups: [g]\n", []string{
			"p.yaml:5:5: max_qos has no meaning on a deny rule (a deny refuses whatever it matches)",
			"p.yaml:6:5: retain has no meaning on a deny rule (a deny refuses whatever it matches)",
			"p.yaml:7:5: share_groups has no meaning on a deny rule (a deny refuses whatever it matches)"}},
		{"retain without publish", "rules:\n  - effect: allow\n    actions: [subscribe]\n    topics: [a]\n    retain: true\n", []string{
			"p.yaml:5:5: retain: true applies to publish, and this rule does not grant publish"}},
		{"share groups without subscribe", rule0 + "    share_groups: [g]\n", []string{
			"p.yaml:5:5: share_groups applies to subscribe, and this rule does not grant subscribe"}},
		{"qos out of range", rule0 + "    max_qos: 3\n", []string{"p.yaml:5:14: max_qos must be 0, 1 or 2, not 3"}},
		{"qos not a number", rule0 + "    max_qos: high\n", []string{"p.yaml:5:14: max_qos must be 0, 1 or 2"}},
		{"retain not a bool", rule0 + "    retain: sometimes\n", []string{"p.yaml:5:13: retain must be true or false"}},
		{"bad share group", "rules:\n  - effect: allow\n    actions: [subscribe]\n    topics: [a]\n    share_groups: [\"a/b\"]\n", []string{
			`p.yaml:5:20: invalid entry "a/b" in share_groups`}},
		{"scope twice", rule0 + "    scopes: [a, a]\n", []string{`p.yaml:5:17: "a" listed twice in scopes`}},
		{"scope with space", rule0 + "    scopes: [\"a b\"]\n", []string{`p.yaml:5:14: invalid entry "a b" in scopes`}},
		{"claim value a map", rule0 + "    claims: {a: {b: c}}\n", []string{"p.yaml:5:17: claim a: a condition value must be a string, number or boolean"}},
		{"claim bad name", rule0 + "    claims: {\"a b\": c}\n", []string{`p.yaml:5:14: claim name "a b" may contain only letters, digits, '_', '-', ':' and '.'`}},
		{"alias", "x: &a [1]\nrules: *a\n", []string{
			`p.yaml:1:1: unknown key "x" in the policy (known: version, rules, anonymous, limits)`,
			"p.yaml:2:8: YAML aliases are not supported in a policy"}},
		{"non-string key", "rules:\n  - {1: a, effect: allow, actions: [publish], topics: [a]}\n", []string{"p.yaml:2:6: a rule keys must be plain names"}},
		{"name not printable", "rules:\n  - {name: \"a\\tb\", effect: allow, actions: [publish], topics: [a]}\n", []string{"p.yaml:2:12: name must be 1 to 100 printable characters"}},
		{"several errors sorted", "rules:\n  - effect: maybe\n    actions: [fly]\n    topics: [\"#/a\"]\n", []string{
			`p.yaml:2:13: effect must be allow or deny, not "maybe"`,
			`p.yaml:3:15: unknown action "fly" (known: publish, subscribe, receive)`,
			`p.yaml:4:14: topic "#/a": '#' must be the last level of a topic filter`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol, err := Parse("p.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error; policy %s", pol.Summary())
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if len(list) != len(tt.want) {
				t.Errorf("%d errors in the list, want %d", len(list), len(tt.want))
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	pol := mustParse(t, testPolicy)
	rules := pol.Rules()
	if len(rules) != 17 {
		t.Fatalf("%d rules, want 17", len(rules))
	}
	r := rules[1]
	if r.Name != "own-state" || r.Line != 9 || r.Effect != Allow || !r.Retain || r.MaxQoS != 2 ||
		len(r.Actions) != 1 || r.Actions[0] != Publish || r.Topics[0] != "things/{sub}/state" {
		t.Errorf("own-state parsed as %+v", r)
	}
	fleet := rules[7]
	if fleet.Name != "fleet-read" || fleet.MaxQoS != 1 || len(fleet.ShareGroups) != 1 || fleet.ShareGroups[0] != "workers" {
		t.Errorf("fleet-read parsed as %+v", fleet)
	}
	if rules[8].ShareGroups != nil {
		t.Errorf("share_groups absent must mean any group, got %v", rules[8].ShareGroups)
	}
	if !rules[15].Anonymous || rules[15].Name != "public" {
		t.Errorf("anonymous rule parsed as %+v", rules[15])
	}
	noGroups := mustParse(t, "rules:\n  - {effect: allow, actions: [subscribe], topics: [a], share_groups: []}\n").Rules()[0]
	if noGroups.ShareGroups == nil || len(noGroups.ShareGroups) != 0 {
		t.Errorf("share_groups: [] must allow no group, got %#v", noGroups.ShareGroups)
	}
	g := mustParse(t, "rules:\n  - {effect: allow, actions: [subscribe], topics: [a], share_groups: []}\n").Compile(Subject{ID: "x"})
	if d := g.Allow(Subscribe, "$share/g/a", 0, false); d.Allowed || d.Reason != ReasonShareGroup {
		t.Errorf("share_groups: [] allowed a shared subscription: %+v", d)
	}
	if d := g.Allow(Subscribe, "a", 0, false); !d.Allowed {
		t.Errorf("share_groups: [] refused a plain subscription: %+v", d)
	}
}

// TestPositionErrorFormat checks the formats other packages and the command
// print.
func TestPositionErrorFormat(t *testing.T) {
	e := &PositionError{File: "topics.yaml", Line: 3, Col: 7, Msg: "bad"}
	if got := e.Error(); got != "topics.yaml:3:7: bad" {
		t.Errorf("Error() = %q", got)
	}
	list := ErrorList{e, {File: "topics.yaml", Line: 4, Col: 1, Msg: "worse"}}
	if got := list.Error(); got != "topics.yaml:3:7: bad\ntopics.yaml:4:1: worse" {
		t.Errorf("ErrorList.Error() = %q", got)
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for range 80 {
		b.WriteString("  - {effect: nope, actions: [publish], topics: [a]}\n")
	}
	_, err := Parse("p.yaml", []byte(b.String()))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != maxErrors+1 || list[maxErrors].Msg != "too many errors" {
		t.Fatalf("got %d errors, want %d and a last 'too many errors'", len(list), maxErrors+1)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "topics.yaml")
	if err := os.WriteFile(good, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if r := pol.Rules()[0]; r.File != good {
		t.Errorf("Rule.File = %q, want %q", r.File, good)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, maxPolicySize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	var list ErrorList
	if _, err := Load(big); !errors.As(err, &list) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
}
