package authz

// Action is what a subject asks to do with a topic.
type Action uint8

// The actions a rule can grant or deny.
const (
	// Publish sends a message to a concrete topic (also used for wills and for
	// storing retained messages).
	Publish Action = iota + 1
	// Subscribe registers a topic filter, possibly "$share/<group>/<filter>".
	Subscribe
	// Receive delivers a message on a concrete topic to a subscriber. A rule that
	// grants or denies Subscribe grants or denies Receive on the same filters too.
	Receive
)

// numActions sizes per-action tables indexed by Action.
const numActions = int(Receive) + 1

// String returns the name used in topics.yaml: "publish", "subscribe" or "receive".
func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	case Receive:
		return "receive"
	}
	return "unknown"
}

// ParseAction maps a topics.yaml action name to its Action; ok is false for
// anything else.
func ParseAction(name string) (a Action, ok bool) {
	switch name {
	case "publish":
		return Publish, true
	case "subscribe":
		return Subscribe, true
	case "receive":
		return Receive, true
	}
	return 0, false
}

// Effect says whether a rule allows or denies what it matches.
type Effect uint8

// Rule effects.
const (
	// Allow grants the matched actions, within the rule's limits.
	Allow Effect = iota + 1
	// Deny refuses the matched actions, whatever any allow rule says.
	Deny
)

// String returns "allow" or "deny".
func (e Effect) String() string {
	switch e {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "unknown"
}
