package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"imb/authz"
	"imb/authz/defaultpolicy"
)

// Exit codes of `imb policy explain`, besides exitUsage for bad arguments or an
// invalid policy.
const (
	exitAllow = 0
	exitDeny  = 3
)

// runPolicy implements `imb policy check FILE` and `imb policy explain ...`.
func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		policyUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "check":
		return runPolicyCheck(args[1:], stdout, stderr)
	case "explain":
		return runPolicyExplain(args[1:], stdout, stderr)
	case "show-default":
		return runPolicyShowDefault(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		policyUsage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "imb policy: unknown subcommand %q\n\n", args[0])
	policyUsage(stderr)
	return exitUsage
}

func policyUsage(w io.Writer) {
	fmt.Fprint(w, `usage:
  imb policy check FILE
      validate a topics.yaml; print a one-line summary (exit 0) or FILE:LINE:COL: message lines (exit 2)
  imb policy explain [--policy FILE] --sub ID [--client-id ID] [--scope S]... [--claim NAME=VALUE]...
                     (--publish TOPIC | --subscribe FILTER | --receive TOPIC) [--qos N] [--retain]
      decide one request as the broker would; the first line is ALLOW or DENY and what decided
      (exit 0 allow, 3 deny, 2 usage or policy error); --policy defaults to ./topics.yaml,
      else the built-in default policy
  imb policy show-default
      print the built-in default policy (start your own: imb policy show-default > topics.yaml)
`)
}

// runPolicyShowDefault prints the built-in policy.
func runPolicyShowDefault(args []string, stdout, stderr io.Writer) int {
	f := newFlags("imb policy show-default", "imb policy show-default",
		"Prints the default policy built into imb, the one imb dev and imb serve use without a policy file.")
	if code := f.parse(args, 0, stdout, stderr); code >= 0 {
		return code
	}
	_, _ = stdout.Write(defaultpolicy.Text)
	return exitOK
}

// runPolicyCheck validates one policy file.
func runPolicyCheck(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		policyUsage(stdout)
		return exitOK
	}
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: imb policy check FILE")
		return exitUsage
	}
	pol, ok := loadPolicy(args[0], stderr)
	if !ok {
		return exitUsage
	}
	fmt.Fprintln(stdout, pol.Summary())
	return 0
}

// loadPolicy loads a policy and prints its problems, one FILE:LINE:COL line each.
func loadPolicy(path string, stderr io.Writer) (*authz.Policy, bool) {
	var pol *authz.Policy
	var err error
	if path == "" {
		pol, err = defaultpolicy.Load()
	} else {
		pol, err = authz.Load(path)
	}
	if err == nil {
		return pol, true
	}
	var list authz.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stderr, e)
		}
	} else {
		fmt.Fprintf(stderr, "imb policy: %v\n", err)
	}
	return nil, false
}

// explainRequest is the parsed command line of `imb policy explain`.
type explainRequest struct {
	policy  string
	subject authz.Subject
	limits  bool // only the limits: no action to decide
	action  authz.Action
	topic   string
	qos     byte
	retain  bool
}

// parseExplain parses the arguments of `imb policy explain`; errors are usage
// errors.
func parseExplain(fs *cmdFlags, args []string, stdout, stderr io.Writer) (*explainRequest, int, error) {
	var (
		req                         explainRequest
		sub, clientID               string
		scopes, claims              listFlag
		publish, subscribe, receive string
		qos                         int
		anonymous                   bool
	)
	fs.StringVar(&req.policy, "policy", "", "policy `FILE` (default ./topics.yaml, else the built-in default policy)")
	fs.StringVar(&sub, "sub", "", "thing `ID` ({sub})")
	fs.StringVar(&clientID, "client-id", "", "MQTT client `ID` ({client_id}); defaults to --sub")
	fs.Var(&scopes, "scope", "token `scope` (repeatable; a space-separated list is split)")
	fs.Var(&claims, "claim", "token claim `NAME=VALUE` (repeatable; repeating NAME makes an array claim)")
	fs.StringVar(&publish, "publish", "", "decide a publish to `TOPIC`")
	fs.StringVar(&subscribe, "subscribe", "", "decide a subscription to `FILTER` (may be $share/GROUP/FILTER)")
	fs.StringVar(&receive, "receive", "", "decide the delivery of a message on `TOPIC`")
	fs.IntVar(&qos, "qos", 0, "QoS `N` of the publish or subscription (0, 1 or 2)")
	fs.BoolVar(&req.retain, "retain", false, "the publish sets the retain flag")
	fs.BoolVar(&anonymous, "anonymous", false, "the client has no token (only the anonymous section applies; --sub not needed)")
	fs.BoolVar(&req.limits, "limits", false, "print only the limits that apply to the subject (no --publish, --subscribe or --receive)")
	if code := fs.parse(args, 0, stdout, stderr); code >= 0 {
		return nil, code, nil
	}
	set := fs.given()
	if !set["policy"] {
		if _, err := os.Stat("topics.yaml"); err == nil {
			req.policy = "topics.yaml"
		}
	} else if req.policy == "" {
		return nil, exitUsage, errors.New("--policy: a file name is needed")
	}
	if !set["sub"] && !anonymous {
		return nil, exitUsage, errors.New("--sub ID is required (or --anonymous)")
	}
	var actions []string
	for _, a := range []struct {
		name   string
		action authz.Action
		topic  string
	}{{"publish", authz.Publish, publish}, {"subscribe", authz.Subscribe, subscribe}, {"receive", authz.Receive, receive}} {
		if set[a.name] {
			actions = append(actions, "--"+a.name)
			req.action, req.topic = a.action, a.topic
		}
	}
	switch {
	case req.limits && len(actions) > 0:
		return nil, exitUsage, fmt.Errorf("--limits prints the limits only; drop %s", strings.Join(actions, ", "))
	case !req.limits && len(actions) != 1:
		return nil, exitUsage, fmt.Errorf("give exactly one of --publish, --subscribe, --receive, or --limits (got %d)", len(actions))
	}
	if qos < 0 || qos > 2 {
		return nil, exitUsage, fmt.Errorf("--qos must be 0, 1 or 2, not %d", qos)
	}
	req.qos = byte(qos)
	if !set["client-id"] {
		clientID = sub
	}
	req.subject = authz.Subject{ID: sub, ClientID: clientID, Anonymous: anonymous}
	for _, s := range scopes {
		req.subject.Scopes = append(req.subject.Scopes, strings.Fields(s)...)
	}
	parsed, err := parseClaims(claims)
	if err != nil {
		return nil, exitUsage, err
	}
	req.subject.Claims = parsed
	return &req, -1, nil
}

// parseClaims turns NAME=VALUE pairs into JSON-like claims: a name given once is
// a string claim, a name given several times an array of strings.
func parseClaims(pairs []string) (map[string]any, error) {
	claims := map[string]any{}
	for _, p := range pairs {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--claim %q: want NAME=VALUE", p)
		}
		switch prev := claims[name].(type) {
		case nil:
			claims[name] = value
		case string:
			claims[name] = []any{prev, value}
		case []any:
			claims[name] = append(prev, value)
		}
	}
	return claims, nil
}

// runPolicyExplain decides one request and says why.
func runPolicyExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("imb policy explain", "imb policy explain [--policy FILE] (--sub ID | --anonymous) [flags] (--publish TOPIC | --subscribe FILTER | --receive TOPIC | --limits)",
		"Decides one request as the broker would. The first line is ALLOW or DENY, then what decided:\n"+
			"  ALLOW by FILE:LINE (rule NAME): ...   DENY by FILE:LINE (rule NAME): ...   DENY no rule grants it: ...\n"+
			"then the limits of the limits section that apply to the subject (--limits prints only those).\n"+
			"Exit code 0 allow (or --limits), 3 deny, 2 usage or policy error.")
	req, code, err := parseExplain(fs, args, stdout, stderr)
	if err == nil && code >= 0 {
		return code
	}
	if err != nil {
		fmt.Fprintf(stderr, "imb policy explain: %v\n", err)
		return exitUsage
	}
	pol, ok := loadPolicy(req.policy, stderr)
	if !ok {
		return exitUsage
	}
	if req.limits {
		fmt.Fprintf(stdout, "LIMITS for %s\n", describeSubject(req.subject))
		writeLimits(stdout, pol, req.subject)
		return exitOK
	}
	g := pol.Compile(req.subject)
	d := g.Allow(req.action, req.topic, req.qos, req.retain)
	writeExplanation(stdout, pol, req, g, d)
	writeLimits(stdout, pol, req.subject)
	if d.Allowed {
		return exitAllow
	}
	return exitDeny
}

// writeExplanation prints the verdict line, then the request, the subject, the
// deciding rule and the rules Compile skipped.
func writeExplanation(w io.Writer, pol *authz.Policy, req *explainRequest, g *authz.Grants, d authz.Decision) {
	verdict := "DENY"
	if d.Allowed {
		verdict = "ALLOW"
	}
	// One shape for both verdicts: VERDICT, a space, then what decided: "by
	// FILE:LINE (rule NAME)", with the reason when it adds something, or "no rule
	// grants it" (or why the request cannot be granted at all).
	switch {
	case d.Rule != nil:
		fmt.Fprintf(w, "%s by %s:%d", verdict, d.Rule.File, d.Rule.Line)
		if d.Rule.Name != "" {
			fmt.Fprintf(w, " (rule %s)", d.Rule.Name)
		}
		if d.Reason != authz.ReasonGranted && d.Reason != authz.ReasonDenied {
			fmt.Fprintf(w, ": %s", d.Reason)
		}
		fmt.Fprintln(w)
	default:
		fmt.Fprintf(w, "%s %s\n", verdict, d.Reason)
	}
	fmt.Fprintf(w, "  request: %s %q qos %d", req.action, req.topic, req.qos)
	if req.retain {
		fmt.Fprint(w, " retain")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  subject: %s\n", describeSubject(req.subject))
	if d.Rule != nil {
		fmt.Fprintf(w, "  rule:    %s\n", describeRule(d.Rule))
	}
	if d.Allowed && req.action == authz.Subscribe {
		fmt.Fprintf(w, "  granted qos: %d\n", min(req.qos, d.MaxQoS))
	}
	if d.Rule == nil {
		applying, section := 0, 0
		for _, r := range pol.Rules() {
			if r.Anonymous != req.subject.Anonymous {
				continue
			}
			section++
			if r.AppliesTo(req.subject) {
				applying++
			}
		}
		fmt.Fprintf(w, "  %d of %d rules apply to this subject; none of them covers the request\n", applying, section)
	}
	for _, s := range g.Skipped() {
		fmt.Fprintf(w, "  skipped: %s\n", s)
	}
}

// writeLimits prints the limits that apply to s, each with the entry that set it,
// and the limits no entry sets (the broker's defaults apply to those).
func writeLimits(w io.Writer, pol *authz.Policy, s authz.Subject) {
	l := pol.Limits(s)
	var unset []string
	fmt.Fprintln(w, "  limits:")
	for k := authz.LimitConnects; k <= authz.LimitFloodGrace; k++ {
		if !l.Set(k) {
			if k != authz.LimitPublishBurst && k != authz.LimitPublishBytesBurst {
				unset = append(unset, k.String())
			}
			continue
		}
		fmt.Fprintf(w, "    %-20s %-22s from %s\n", k, l.Value(k), l.From[k])
	}
	for _, k := range []authz.LimitKey{authz.LimitPublishBurst, authz.LimitPublishBytesBurst} {
		rateKey := authz.LimitPublishes
		if k == authz.LimitPublishBytesBurst {
			rateKey = authz.LimitPublishBytes
		}
		if l.Set(rateKey) && !l.Set(k) {
			fmt.Fprintf(w, "    %-20s %-22s (one second of %s)\n", k, l.Value(k), rateKey)
		}
	}
	if len(unset) > 0 {
		note := "no limit"
		switch {
		case slices.Contains(unset, "subscriptions") && slices.Contains(unset, "flood_grace"):
			note = "subscriptions: the broker's max_subscriptions; flood_grace: 10s; the others: no limit"
		case slices.Contains(unset, "subscriptions"):
			note = "subscriptions: the broker's max_subscriptions; the others: no limit"
		case slices.Contains(unset, "flood_grace"):
			note = "flood_grace: 10s; the others: no limit"
		}
		fmt.Fprintf(w, "    not set: %s (%s)\n", strings.Join(unset, ", "), note)
	}
}

func describeSubject(s authz.Subject) string {
	if s.Anonymous {
		return fmt.Sprintf("anonymous, client id %q", s.ClientID)
	}
	out := fmt.Sprintf("sub %q, client id %q, scopes [%s]", s.ID, s.ClientID, strings.Join(s.Scopes, " "))
	if len(s.Claims) > 0 {
		names := make([]string, 0, len(s.Claims))
		for n := range s.Claims {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = n + "=" + claimText(s.Claims[n])
		}
		out += ", claims " + strings.Join(parts, " ")
	}
	return out
}

func claimText(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i, el := range x {
			parts[i] = claimText(el)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

func describeRule(r *authz.Rule) string {
	actions := make([]string, len(r.Actions))
	for i, a := range r.Actions {
		actions[i] = a.String()
	}
	topics := make([]string, len(r.Topics))
	for i, t := range r.Topics {
		topics[i] = strconv.Quote(t)
	}
	s := fmt.Sprintf("%s [%s] topics [%s]; conditions: %s", r.Effect, strings.Join(actions, ", "),
		strings.Join(topics, ", "), r.Conditions())
	if r.Effect == authz.Allow {
		s += fmt.Sprintf("; max_qos %d; retain %v", r.MaxQoS, r.Retain)
		if r.ShareGroups != nil {
			s += fmt.Sprintf("; share_groups [%s]", strings.Join(r.ShareGroups, ", "))
		}
	}
	return s
}
