package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// explainPolicy is written to a temporary topics.yaml; line numbers matter.
const explainPolicy = `version: 1
rules:
  - name: thing-state
    effect: allow
    actions: [publish]
    topics: ["things/{sub}/state"]
    scopes: [publish]
    retain: true
    max_qos: 1
  - name: thing-commands
    effect: allow
    actions: [subscribe]
    topics: ["things/{sub}/commands/#"]
    scopes: [subscribe]
    max_qos: 1
  - name: by-client
    effect: allow
    actions: [publish]
    topics: ["clients/{client_id}/hello"]
  - name: gateway
    effect: allow
    actions: [publish]
    topics: ["things/{claim.things}/telemetry/#"]
    claims: {thingType: gateway}
  - name: no-firmware
    effect: deny
    actions: [publish]
    topics: ["things/+/firmware/#"]
anonymous:
  - name: public
    effect: allow
    actions: [subscribe]
    topics: ["public/#"]
    max_qos: 0
limits:
  - name: everyone
    publishes: 10
    sessions: 2
  - name: gateways
    claims: {thingType: gateway}
    publishes: 100
    publish_burst: 500
    connects: 5/1m
  - name: anon
    anonymous: true
    publish_bytes: 1024
`

func writePolicy(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runPolicyCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = runPolicy(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPolicyCheck(t *testing.T) {
	good := writePolicy(t, explainPolicy)
	bad := writePolicy(t, "rules:\n  - effect: allow\n    actions: [publish, fly]\n    topics: [\"a/#/b\", \"x/{user}\"]\n")
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // exact
		stderrHas  []string
		stderrNone bool
	}{
		{"valid", []string{"check", good}, 0,
			good + ": valid: 5 rules (4 allow, 1 deny); anonymous: 1 rules (1 allow, 0 deny); limits: 3 entries\n", nil, true},
		{"invalid limit", []string{"check", writePolicy(t, "rules: []\nlimits:\n  - publishes: 0\n")}, 2, "", []string{`:3:16: publishes must be a number per second from 0.001 to 1073741824, not "0"`}, false},
		{"default topics.yaml", []string{"check", "../../topics.yaml"}, 0,
			"../../topics.yaml: valid: 9 rules (8 allow, 1 deny); anonymous: none (clients without a token cannot connect)\n", nil, true},
		{"invalid", []string{"check", bad}, 2, "", []string{
			bad + `:3:24: unknown action "fly" (known: publish, subscribe, receive)` + "\n" +
				bad + `:4:17: topic "a/#/b": '#' must be the last level of a topic filter` + "\n" +
				bad + `:4:26: topic "x/{user}": unknown placeholder {user} (known: {sub}, {client_id}, {claim.NAME})` + "\n"}, false},
		{"missing file", []string{"check", filepath.Join(t.TempDir(), "none.yaml")}, 2, "", []string{"imb policy: policy ", "no such file"}, false},
		{"no file", []string{"check"}, 2, "", []string{"usage: imb policy check FILE"}, false},
		{"two files", []string{"check", good, good}, 2, "", []string{"usage: imb policy check FILE"}, false},
		{"no subcommand", nil, 2, "", []string{"usage:"}, false},
		{"unknown subcommand", []string{"lint", good}, 2, "", []string{`unknown subcommand "lint"`}, false},
		{"help", []string{"help"}, 0, "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runPolicyCmd(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if tt.stdout != "" && stdout != tt.stdout {
				t.Errorf("stdout %q, want %q", stdout, tt.stdout)
			}
			if tt.name == "help" && !strings.Contains(stdout, "imb policy explain [--policy FILE]") {
				t.Errorf("help does not describe explain: %q", stdout)
			}
			for _, want := range tt.stderrHas {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q does not contain %q", stderr, want)
				}
			}
			if tt.stderrNone && stderr != "" {
				t.Errorf("unexpected stderr %q", stderr)
			}
		})
	}
}

func TestPolicyExplain(t *testing.T) {
	pol := writePolicy(t, explainPolicy)
	tests := []struct {
		name      string
		args      []string
		code      int
		firstLine string   // exact
		has       []string // further substrings of stdout
	}{
		{"allow publish", []string{"--sub", "t1", "--scope", "publish", "--publish", "things/t1/state", "--qos", "1", "--retain"}, 0,
			"ALLOW by " + pol + ":3 (rule thing-state)",
			[]string{`request: publish "things/t1/state" qos 1 retain`, `subject: sub "t1", client id "t1", scopes [publish]`,
				`rule:    allow [publish] topics ["things/{sub}/state"]; conditions: scopes any of [publish]; max_qos 1; retain true`}},
		{"qos above the rule's maximum", []string{"--sub", "t1", "--scope", "publish", "--publish", "things/t1/state", "--qos", "2"}, 3,
			"DENY by " + pol + ":3 (rule thing-state): qos 2 above maximum 1", nil},
		{"retain refused", []string{"--sub", "t1", "--publish", "clients/t1/hello", "--retain"}, 3,
			"DENY by " + pol + ":16 (rule by-client): retain not allowed", nil},
		{"client id defaults to sub", []string{"--sub", "t1", "--publish", "clients/t1/hello"}, 0,
			"ALLOW by " + pol + ":16 (rule by-client)", nil},
		{"client id given", []string{"--sub", "t1", "--client-id", "c7", "--publish", "clients/c7/hello"}, 0,
			"ALLOW by " + pol + ":16 (rule by-client)", []string{`client id "c7"`}},
		{"no rule", []string{"--sub", "t1", "--scope", "publish", "--publish", "things/t2/state"}, 3,
			"DENY no rule grants it", []string{"3 of 5 rules apply to this subject; none of them covers the request"}},
		{"deny rule wins", []string{"--sub", "t1", "--claim", "thingType=gateway", "--claim", "things=t1", "--publish", "things/t1/firmware/v2"}, 3,
			"DENY by " + pol + ":25 (rule no-firmware)", []string{"rule:    deny [publish]"}},
		{"array claim from repeated --claim", []string{"--sub", "gw", "--claim", "thingType=gateway", "--claim", "things=s7", "--claim", "things=s8", "--publish", "things/s8/telemetry/t"}, 0,
			"ALLOW by " + pol + ":20 (rule gateway)", []string{`claims thingType="gateway" things=["s7", "s8"]`}},
		{"skipped rule is mentioned", []string{"--sub", "gw", "--claim", "thingType=gateway", "--claim", "things=+", "--publish", "things/s8/telemetry/t"}, 3,
			"DENY no rule grants it", []string{`skipped: ` + pol + `:20 (gateway): topic "things/{claim.things}/telemetry/#": {claim.things} value "+" contains '+'; rule skipped`}},
		{"client id injection", []string{"--sub", "t1", "--client-id", "#", "--publish", "clients/x/hello"}, 3,
			"DENY no rule grants it", []string{`skipped: ` + pol + `:16 (by-client): topic "clients/{client_id}/hello": {client_id} value "#" contains '#'; rule skipped`}},
		{"subscribe grants a capped qos", []string{"--sub", "t1", "--scope", "publish subscribe", "--subscribe", "things/t1/commands/+", "--qos", "2"}, 0,
			"ALLOW by " + pol + ":10 (rule thing-commands)", []string{"granted qos: 1"}},
		{"subscribe too broad", []string{"--sub", "t1", "--scope", "subscribe", "--subscribe", "things/+/commands/#"}, 3,
			"DENY no rule grants it", nil},
		{"receive implied by subscribe", []string{"--sub", "t1", "--scope", "subscribe", "--receive", "things/t1/commands/set"}, 0,
			"ALLOW by " + pol + ":10 (rule thing-commands): granted by a subscribe rule (subscribe implies receive)", nil},
		{"shared subscription in upper case", []string{"--sub", "t1", "--scope", "subscribe", "--subscribe", "$SHARE/g/things/t1/commands/#"}, 0,
			"ALLOW by " + pol + ":10 (rule thing-commands)", nil},
		{"anonymous", []string{"--anonymous", "--client-id", "c1", "--subscribe", "public/news"}, 0,
			"ALLOW by " + pol + ":30 (rule public)", []string{`subject: anonymous, client id "c1"`}},
		{"anonymous gets no token rules", []string{"--anonymous", "--sub", "t1", "--scope", "publish", "--publish", "things/t1/state"}, 3,
			"DENY no rule grants it", nil},
		{"empty topic", []string{"--sub", "t1", "--publish", ""}, 3, "DENY empty topic", nil},
		{"limits after the decision", []string{"--sub", "t1", "--publish", "clients/t1/hello"}, 0,
			"ALLOW by " + pol + ":16 (rule by-client)", []string{"  limits:\n    publishes            10                     from " + pol + ":36 (everyone)\n",
				"    sessions             2                      from " + pol + ":36 (everyone)\n",
				"    publish_burst        10                     (one second of publishes)\n",
				"not set: connects, publish_bytes, subscriptions, inflight, flood_grace"}},
		{"limits only: most specific entry wins", []string{"--sub", "gw", "--claim", "thingType=gateway", "--limits"}, 0,
			`LIMITS for sub "gw", client id "gw", scopes [], claims thingType="gateway"`, []string{
				"    connects             5/1m0s                 from " + pol + ":39 (gateways)\n",
				"    publishes            100                    from " + pol + ":39 (gateways)\n",
				"    publish_burst        500                    from " + pol + ":39 (gateways)\n",
				"    sessions             2                      from " + pol + ":36 (everyone)\n"}},
		{"limits of an anonymous client", []string{"--anonymous", "--client-id", "c1", "--limits"}, 0,
			`LIMITS for anonymous, client id "c1"`, []string{"    publish_bytes        1024                   from " + pol + ":44 (anon)\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"explain", "--policy", pol}, tt.args...)
			code, stdout, stderr := runPolicyCmd(args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if stderr != "" {
				t.Errorf("unexpected stderr %q", stderr)
			}
			first, _, _ := strings.Cut(stdout, "\n")
			if first != tt.firstLine {
				t.Errorf("first line %q, want %q", first, tt.firstLine)
			}
			for _, want := range tt.has {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout does not contain %q:\n%s", want, stdout)
				}
			}
		})
	}
}

func TestPolicyExplainUsage(t *testing.T) {
	pol := writePolicy(t, explainPolicy)
	bad := writePolicy(t, "rules:\n  - {effect: allow, actions: [publish], topics: [\"a+\"]}\n")
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no action", []string{"--policy", pol, "--sub", "t1"}, "give exactly one of --publish, --subscribe, --receive, or --limits (got 0)"},
		{"two actions", []string{"--policy", pol, "--sub", "t1", "--publish", "a", "--receive", "a"}, "give exactly one of --publish, --subscribe, --receive, or --limits (got 2)"},
		{"limits with an action", []string{"--policy", pol, "--sub", "t1", "--limits", "--publish", "a"}, "--limits prints the limits only; drop --publish"},
		{"empty policy name", []string{"--policy=", "--sub", "t1", "--publish", "a"}, "--policy: a file name is needed"},
		{"no sub", []string{"--policy", pol, "--publish", "a"}, "--sub ID is required"},
		{"bad qos", []string{"--policy", pol, "--sub", "t1", "--publish", "a", "--qos", "3"}, "--qos must be 0, 1 or 2, not 3"},
		{"qos not a number", []string{"--policy", pol, "--sub", "t1", "--publish", "a", "--qos", "x"}, `invalid value "x" for flag -qos`},
		{"bad claim", []string{"--policy", pol, "--sub", "t1", "--publish", "a", "--claim", "thingType"}, `--claim "thingType": want NAME=VALUE`},
		{"unknown flag", []string{"--policy", pol, "--sub", "t1", "--publish", "a", "--scopes", "x"}, "flag provided but not defined: -scopes"},
		{"extra argument", []string{"--policy", pol, "--sub", "t1", "--publish", "a", "extra"}, `unexpected argument "extra"`},
		{"invalid policy", []string{"--policy", bad, "--sub", "t1", "--publish", "a"}, bad + `:2:52: topic "a+": '+' must be a whole topic level`},
		{"missing policy", []string{"--policy", filepath.Join(t.TempDir(), "x.yaml"), "--sub", "t1", "--publish", "a"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runPolicyCmd(append([]string{"explain"}, tt.args...)...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if stdout != "" {
				t.Errorf("unexpected stdout %q", stdout)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.stderr)
			}
		})
	}
}
