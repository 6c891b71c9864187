package authz

import (
	"fmt"
	"strings"
)

// levelKind says what fills one level of a rule's topic.
type levelKind uint8

const (
	levelLiteral levelKind = iota
	levelPlus
	levelHash
	levelSub
	levelClientID
	levelClaim
)

// tmplLevel is one level of a rule's topic as written in the policy.
type tmplLevel struct {
	kind levelKind
	// text is the literal for levelLiteral and the claim name for levelClaim.
	text string
}

// template is a rule's topic filter before placeholders are filled.
type template struct {
	text   string
	levels []tmplLevel
}

// templateError is a problem at a byte offset of a topic as written.
type templateError struct {
	offset int
	msg    string
}

// parseTemplate validates a rule's topic filter: MQTT filter syntax, and
// placeholders that fill whole levels. anonymous rules may only use {client_id},
// because an anonymous client has no verified identity.
func parseTemplate(text string, anonymous bool) (template, *templateError) {
	t := template{text: text}
	if text == "" {
		return t, &templateError{0, "empty topic filter"}
	}
	if len(text) >= len(sharePrefix) && strings.EqualFold(text[:len(sharePrefix)], sharePrefix) {
		return t, &templateError{0, "a rule topic cannot be a shared subscription; write the inner filter and restrict groups with share_groups"}
	}
	if i := strings.IndexByte(text, 0); i >= 0 {
		return t, &templateError{i, "NUL character in topic filter"}
	}
	start := 0
	segs := strings.Split(text, "/")
	for n, seg := range segs {
		lv, err := parseLevel(seg, anonymous)
		if err != nil {
			err.offset += start
			return t, err
		}
		if lv.kind == levelHash && n != len(segs)-1 {
			return t, &templateError{start, "'#' must be the last level of a topic filter"}
		}
		t.levels = append(t.levels, lv)
		start += len(seg) + 1
	}
	return t, nil
}

// parseLevel validates one level of a rule's topic.
func parseLevel(seg string, anonymous bool) (tmplLevel, *templateError) {
	switch seg {
	case "+":
		return tmplLevel{kind: levelPlus}, nil
	case "#":
		return tmplLevel{kind: levelHash}, nil
	}
	if i := strings.IndexAny(seg, "+#"); i >= 0 {
		return tmplLevel{}, &templateError{i, fmt.Sprintf("'%c' must be a whole topic level", seg[i])}
	}
	open := strings.IndexByte(seg, '{')
	closing := strings.IndexByte(seg, '}')
	if open < 0 && closing < 0 {
		return tmplLevel{kind: levelLiteral, text: seg}, nil
	}
	if open != 0 || closing != len(seg)-1 || strings.Count(seg, "{") != 1 || strings.Count(seg, "}") != 1 {
		at := open
		if at < 0 {
			at = closing
		}
		return tmplLevel{}, &templateError{at, "a placeholder must fill a whole topic level, like things/{sub}/state ('{' and '}' are not allowed otherwise)"}
	}
	name := seg[1 : len(seg)-1]
	lv, err := placeholderLevel(name)
	if err != nil {
		return tmplLevel{}, err
	}
	if anonymous && lv.kind != levelClientID {
		return tmplLevel{}, &templateError{0, fmt.Sprintf("placeholder %s cannot be used in an anonymous rule (only {client_id})", seg)}
	}
	return lv, nil
}

// placeholderLevel maps a placeholder name (without braces) to its level kind.
func placeholderLevel(name string) (tmplLevel, *templateError) {
	switch name {
	case "sub":
		return tmplLevel{kind: levelSub}, nil
	case "client_id":
		return tmplLevel{kind: levelClientID}, nil
	}
	if claim, ok := strings.CutPrefix(name, "claim."); ok {
		if msg := checkClaimName(claim); msg != "" {
			return tmplLevel{}, &templateError{1, msg}
		}
		return tmplLevel{kind: levelClaim, text: claim}, nil
	}
	return tmplLevel{}, &templateError{0, fmt.Sprintf("unknown placeholder {%s} (known: {sub}, {client_id}, {claim.NAME})", name)}
}

// checkClaimName returns why name cannot name a claim, or "". Dots separate the steps of a path into nested
// objects (claimpath.Lookup).
func checkClaimName(name string) string {
	if name == "" {
		return "empty claim name"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == ':':
		case c == '.':
			// A dot descends into a JSON object (realm_access.roles); an empty step names nothing.
			if i == 0 || i == len(name)-1 || name[i-1] == '.' {
				return fmt.Sprintf("claim path %q has an empty step: write NAME or NAME.MEMBER", name)
			}
		default:
			return fmt.Sprintf("claim name %q may contain only letters, digits, '_', '-', ':' and '.'", name)
		}
	}
	return ""
}
