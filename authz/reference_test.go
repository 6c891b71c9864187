package authz

import (
	"strconv"
	"strings"
)

// refMatch is an independent, deliberately naive MQTT matcher (split both
// strings, compare level by level) that the fuzzers check the real one against.
func refMatch(filter, topic string) bool {
	if topic == "" {
		return false
	}
	f := strings.Split(filter, "/")
	tp := strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, lv := range f {
		if lv == "#" {
			return true
		}
		if i >= len(tp) {
			return false
		}
		if lv != "+" && lv != tp[i] {
			return false
		}
	}
	return len(f) == len(tp)
}

// witnessTopics returns concrete topics matched by the valid filter r that
// together can tell whether another filter covers r: each '+' becomes a fresh
// level no filter names, and '#' becomes 0 to extra fresh levels.
func witnessTopics(r string, extra int) []string {
	levels := strings.Split(r, "/")
	fresh := 0
	next := func() string { fresh++; return "w" + strconv.Itoa(fresh) + "\x7f" }
	base := make([]string, 0, len(levels))
	hash := false
	for _, lv := range levels {
		switch lv {
		case "+":
			base = append(base, next())
		case "#":
			hash = true
		default:
			base = append(base, lv)
		}
	}
	if !hash {
		return []string{strings.Join(base, "/")}
	}
	var out []string
	for n := 0; n <= extra; n++ {
		topic := append([]string(nil), base...)
		for range n {
			topic = append(topic, next())
		}
		if len(topic) > 0 {
			out = append(out, strings.Join(topic, "/"))
		}
	}
	return out
}

// counterexample searches for a topic that requested matches and grant does
// not; found is false when brute force says grant covers requested.
func counterexample(grant, requested string) (string, bool) {
	extra := strings.Count(grant, "/") + 2
	for _, topic := range witnessTopics(requested, extra) {
		if !refMatch(requested, topic) {
			continue
		}
		if !refMatch(grant, topic) {
			return topic, true
		}
	}
	return "", false
}
