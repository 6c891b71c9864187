package authz

// Reasons a Decision carries. They are constant strings, so deciding never
// allocates; QoS refusals use the fixed texts of qosAboveMaximum.
const (
	ReasonGranted       = "granted by rule"
	ReasonImplied       = "granted by a subscribe rule (subscribe implies receive)"
	ReasonDenied        = "denied by rule"
	ReasonNoRule        = "no rule grants it"
	ReasonEmptyTopic    = "empty topic"
	ReasonInvalidTopic  = "topic contains a wildcard or NUL"
	ReasonInvalidFilter = "invalid topic filter"
	ReasonInvalidQoS    = "qos above 2"
	ReasonRetain        = "retain not allowed"
	ReasonShareGroup    = "shared subscription group not allowed"
	ReasonUnknownAction = "unknown action"
)

// Decision is the answer to one question, with the rule that decided it.
type Decision struct {
	// Allowed is the answer.
	Allowed bool
	// Rule is the deciding rule: the deny rule that matched, the allow rule that
	// granted, or the allow rule whose limits refused. nil means default deny.
	Rule *Rule
	// Reason is a constant text, e.g. ReasonNoRule or "qos 2 above maximum 1".
	Reason string
	// MaxQoS is the highest QoS the deciding allow rule permits; for Subscribe the
	// broker grants at most this QoS.
	MaxQoS byte
}

// Allow is the one decision function for every path: publish, will, retained
// message, subscribe and delivery. For Publish and Receive, topic is concrete;
// for Subscribe it is the filter as sent, possibly "$share/<group>/<filter>" with
// the prefix in any letter case. An empty topic is denied.
//
// A matching deny rule always wins. Publish is allowed when an allow rule
// matches the topic and permits qos and retain. Subscribe is allowed when an
// allow rule's filter contains the whole requested filter (and, for a shared
// subscription, permits the group); a requested filter that only overlaps a
// denied filter is allowed, and Receive then withholds the denied topics one
// delivery at a time. Receive ignores qos and retain (the broker already capped
// the subscription). Allow does not allocate.
func (g *Grants) Allow(a Action, topic string, qos byte, retain bool) Decision {
	if topic == "" {
		return Decision{Reason: ReasonEmptyTopic}
	}
	if qos > 2 {
		return Decision{Reason: ReasonInvalidQoS}
	}
	// One function, no helper returning a Decision: every extra return of the
	// struct costs a copy on the per-message path.
	var s search
	walked := topic
	switch a {
	case Publish, Receive:
		if !validTopic(topic) {
			return Decision{Reason: ReasonInvalidTopic}
		}
		mode := modeAny
		if a == Publish {
			mode = modePublish
		}
		s = newSearch(&g.actions[a], mode)
		s.qos, s.retain = qos, retain
	case Subscribe:
		group, inner, shared, ok := splitShare(topic)
		if !ok || !validFilter(inner) {
			return Decision{Reason: ReasonInvalidFilter}
		}
		s = newSearch(&g.actions[a], modeSubscribe)
		s.shared, s.group = shared, group
		walked = inner
	default:
		return Decision{Reason: ReasonUnknownAction}
	}
	g.actions[a].root.walk(&s, walked, 0, true)
	return s.decision()
}

// decision turns the outcome of a search into a Decision: a matching deny rule
// wins, then the best allow grant, then the allow rule whose limits refused.
func (s *search) decision() Decision {
	if s.deny >= 0 {
		return Decision{Rule: s.grants[s.deny].rule, Reason: ReasonDenied}
	}
	if s.best >= 0 {
		gr := &s.grants[s.best]
		reason := ReasonGranted
		if gr.implied {
			reason = ReasonImplied
		}
		return Decision{Allowed: true, Rule: gr.rule, Reason: reason, MaxQoS: gr.rule.MaxQoS}
	}
	if s.refused >= 0 {
		return Decision{Rule: s.grants[s.refused].rule, Reason: s.refusal}
	}
	return Decision{Reason: ReasonNoRule}
}

// allowsGroup reports whether the rule permits shared subscriptions of group.
func (r *Rule) allowsGroup(group string) bool {
	if r.ShareGroups == nil {
		return true
	}
	for _, g := range r.ShareGroups {
		if g == group {
			return true
		}
	}
	return false
}

// qosAboveMaximum returns the constant refusal text for a QoS above a rule's
// maximum.
func qosAboveMaximum(qos, maxQoS byte) string {
	switch {
	case qos == 1 && maxQoS == 0:
		return "qos 1 above maximum 0"
	case qos == 2 && maxQoS == 0:
		return "qos 2 above maximum 0"
	case qos == 2 && maxQoS == 1:
		return "qos 2 above maximum 1"
	}
	return "qos above maximum"
}
