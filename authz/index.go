package authz

import "strings"

// mapThreshold is the number of literal edges above which a trie node finds
// the edge by its first level in a map instead of comparing edges one by one
// (a gateway's array claim can put hundreds of thing ids at one level).
const mapThreshold = 8

// table holds the filters of one action: the grants (deny and allow) in file
// order and a level trie over their filters. Matching a topic or a requested filter
// walks the trie along the string, so its cost follows the topic's depth rather
// than the number of grants, and it never allocates.
type table struct {
	grants []grant
	root   node
}

// node is one point of the trie. Each node is reached by exactly one path and
// the walk consumes the topic strictly left to right, so a walk visits each
// node at most once.
type node struct {
	// lits are the literal edges; their runs start with distinct levels.
	lits []edge
	// byLit finds an edge by its first level when there are many.
	byLit map[string]int
	// plus is the child reached through a '+' level.
	plus *node
	// hash lists the grants whose filter continues with '#' below this node.
	hash []int32
	// end lists the grants whose filter ends at this node.
	end []int32
}

// edge is a run of literal levels ("things/t1/telemetry" once compressed).
type edge struct {
	first string // the run's first level
	run   string // the levels joined by '/'
	next  *node
}

// add appends a grant whose filter has the given levels. Call finish when
// every grant is added.
func (t *table) add(g grant, levels []string) {
	id := int32(len(t.grants))
	t.grants = append(t.grants, g)
	n := &t.root
	for _, lv := range normalizeLevels(levels) {
		switch lv {
		case "#":
			n.hash = append(n.hash, id)
			return
		case "+":
			if n.plus == nil {
				n.plus = &node{}
			}
			n = n.plus
		default:
			n = n.literalChild(lv)
		}
	}
	n.end = append(n.end, id)
}

// literalChild returns the child for one literal level, creating it.
func (n *node) literalChild(lv string) *node {
	for i := range n.lits {
		if n.lits[i].run == lv {
			return n.lits[i].next
		}
	}
	c := &node{}
	n.lits = append(n.lits, edge{first: lv, run: lv, next: c})
	return c
}

// finish compresses chains of single literal levels into one edge, so a walk
// checks "things/t1/telemetry" with one string comparison, and indexes wide
// nodes by first level.
func (t *table) finish() { t.root.finish() }

func (n *node) finish() {
	for i := range n.lits {
		e := &n.lits[i]
		e.next.finish()
		if c := e.next; len(c.lits) == 1 && c.plus == nil && len(c.hash) == 0 && len(c.end) == 0 {
			e.run += "/" + c.lits[0].run
			e.next = c.lits[0].next
		}
	}
	if n.plus != nil {
		n.plus.finish()
	}
	if len(n.lits) > mapThreshold {
		n.byLit = make(map[string]int, len(n.lits))
		for i, e := range n.lits {
			n.byLit[e.first] = i
		}
	}
}

// literal returns the edge whose run s continues with at pos (on a level
// boundary) and the position after it, or nil. A run never contains '+' or '#',
// so a wildcard level of a requested filter never takes a literal edge.
func (n *node) literal(s string, pos int) (*node, int) {
	rest := s[pos:]
	if n.byLit != nil {
		i, ok := n.byLit[rest[:nextSlash(rest, 0)]]
		if !ok {
			return nil, 0
		}
		return n.lits[i].follow(rest, pos)
	}
	for i := range n.lits {
		if c, p := n.lits[i].follow(rest, pos); c != nil {
			return c, p
		}
	}
	return nil, 0
}

// follow checks that rest starts with the edge's run followed by a level
// boundary.
func (e *edge) follow(rest string, pos int) (*node, int) {
	if !strings.HasPrefix(rest, e.run) {
		return nil, 0
	}
	if len(rest) == len(e.run) || rest[len(e.run)] == '/' {
		return e.next, pos + len(e.run) + 1
	}
	return nil, 0
}

// walk offers to s every grant whose filter covers s from position pos on,
// where s is a concrete topic (Publish, Receive) or a valid requested filter
// (Subscribe). Covering means: '#' covers anything at or below its level
// (including the parent level itself), '+' covers one level that is not '#',
// a literal covers only the same literal, and at the first level (first) no
// wildcard covers a level starting with '$'. pos == len(s)+1 means s has no
// more levels. The walk loops down one path and recurses only where both a
// literal edge and '+' apply.
func (n *node) walk(sr *search, s string, pos int, first bool) {
	for {
		if len(n.hash) > 0 && !(first && s[0] == '$') {
			sr.consider(n.hash)
		}
		if pos > len(s) {
			sr.consider(n.end)
			return
		}
		var lit *node
		litPos := 0
		if len(n.lits) > 0 {
			lit, litPos = n.literal(s, pos)
		}
		var plus *node
		plusPos := 0
		if n.plus != nil {
			end := nextSlash(s, pos)
			seg := s[pos:end]
			if seg != "#" && !(first && seg != "" && seg[0] == '$') {
				plus, plusPos = n.plus, end+1
			}
		}
		switch {
		case lit != nil && plus != nil:
			lit.walk(sr, s, litPos, false)
			n, pos = plus, plusPos
		case lit != nil:
			n, pos = lit, litPos
		case plus != nil:
			n, pos = plus, plusPos
		default:
			return
		}
		first = false
	}
}

// searchMode says how a search weighs the grants offered to it.
type searchMode uint8

const (
	// modeAny keeps the earliest allow grant (Receive, tests).
	modeAny searchMode = iota
	// modePublish keeps the earliest grant whose rule permits qos and retain.
	modePublish
	// modeSubscribe keeps the grant with the highest MaxQoS whose rule permits
	// the share group, the earliest among equals.
	modeSubscribe
)

// search accumulates the outcome of one trie walk: the earliest matching deny
// grant, and the best allow grant by the mode. It lives on the caller's stack:
// nothing in a walk allocates.
type search struct {
	grants []grant
	mode   searchMode
	qos    byte
	retain bool
	shared bool
	group  string

	deny    int32
	best    int32
	refused int32
	refusal string
}

// newSearch starts a search over table t.
func newSearch(t *table, mode searchMode) search {
	return search{grants: t.grants, mode: mode, deny: -1, best: -1, refused: -1}
}

// consider weighs the grants ids against the best so far.
func (s *search) consider(ids []int32) {
	for _, id := range ids {
		r := s.grants[id].rule
		if r.Effect == Deny {
			if s.deny < 0 || id < s.deny {
				s.deny = id
			}
			continue
		}
		switch s.mode {
		case modePublish:
			if s.qos > r.MaxQoS {
				s.refuse(id, qosAboveMaximum(s.qos, r.MaxQoS))
				continue
			}
			if s.retain && !r.Retain {
				s.refuse(id, ReasonRetain)
				continue
			}
		case modeSubscribe:
			if s.shared && !r.allowsGroup(s.group) {
				s.refuse(id, ReasonShareGroup)
				continue
			}
			if s.best >= 0 {
				bq := s.grants[s.best].rule.MaxQoS
				if r.MaxQoS > bq || (r.MaxQoS == bq && id < s.best) {
					s.best = id
				}
				continue
			}
		}
		if s.best < 0 || id < s.best {
			s.best = id
		}
	}
}

// refuse records an allow grant whose limits refused, keeping the earliest.
func (s *search) refuse(id int32, reason string) {
	if s.refused < 0 || id < s.refused {
		s.refused, s.refusal = id, reason
	}
}
