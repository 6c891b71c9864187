package authz

import "strings"

// normalizeLevels rewrites "+/#" as "#": every topic has at least one level,
// so the two match exactly the same topics (neither matches '$' topics), and the
// normal form keeps subsumption exact.
func normalizeLevels(levels []string) []string {
	if len(levels) == 2 && levels[0] == "+" && levels[1] == "#" {
		return levels[1:]
	}
	return levels
}

// nextSlash returns the index of the next '/' at or after pos, or len(s).
// Topic levels are short, so a plain loop beats a call to strings.IndexByte.
func nextSlash(s string, pos int) int {
	for i := pos; i < len(s); i++ {
		if s[i] == '/' {
			return i
		}
	}
	return len(s)
}

// validTopic reports whether t is a concrete topic: non-empty, no wildcard, no NUL.
// Three vectorised byte searches beat one loop over the bytes.
func validTopic(t string) bool {
	return t != "" && strings.IndexByte(t, '+') < 0 && strings.IndexByte(t, '#') < 0 && strings.IndexByte(t, 0) < 0
}

// validFilter reports whether r is a topic filter MQTT accepts: non-empty, no NUL,
// '+' and '#' only as whole levels, '#' only as the last level.
func validFilter(r string) bool {
	if r == "" {
		return false
	}
	start := 0 // where the current level starts
	for i := 0; i < len(r); i++ {
		switch r[i] {
		case '/':
			start = i + 1
		case 0:
			return false
		case '+':
			if i != start || (i+1 < len(r) && r[i+1] != '/') {
				return false
			}
		case '#':
			if i != start || i+1 != len(r) {
				return false
			}
		}
	}
	return true
}

// sharePrefix is the shared-subscription prefix; brokers match it in any case.
const sharePrefix = "$share/"

// splitShare separates "$share/<group>/<filter>" (prefix in any letter case) into
// group and inner filter. shared is false for an ordinary filter; ok is false for a
// malformed shared one (empty or wildcard group, empty filter).
func splitShare(r string) (group, inner string, shared, ok bool) {
	if len(r) < len(sharePrefix) || !strings.EqualFold(r[:len(sharePrefix)], sharePrefix) {
		return "", r, false, true
	}
	rest := r[len(sharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", "", true, false
	}
	group, inner = rest[:i], rest[i+1:]
	if inner == "" || strings.ContainsAny(group, "+#") {
		return "", "", true, false
	}
	return group, inner, true, true
}
