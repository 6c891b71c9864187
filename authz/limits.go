package authz

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// LimitKey names one limit an entry of the limits section can set.
type LimitKey uint8

// The limits an entry can set, in the order explain prints them.
const (
	LimitConnects LimitKey = iota
	LimitPublishes
	LimitPublishBurst
	LimitPublishBytes
	LimitPublishBytesBurst
	LimitSubscriptions
	LimitSessions
	LimitInflight
	LimitFloodGrace
	numLimitKeys
)

var limitKeyNames = [numLimitKeys]string{
	"connects", "publishes", "publish_burst", "publish_bytes", "publish_bytes_burst",
	"subscriptions", "sessions", "inflight", "flood_grace",
}

// String returns the key as written in topics.yaml.
func (k LimitKey) String() string {
	if k < numLimitKeys {
		return limitKeyNames[k]
	}
	return "limit(" + strconv.Itoa(int(k)) + ")"
}

// Bounds of limit values: beyond them a value is a typo, not a limit.
const (
	maxLimitCount  = 1 << 30
	maxInflight    = 65535 // MQTT's Receive Maximum is a two-byte integer
	minConnectsPer = time.Second
	maxConnectsPer = 24 * time.Hour
	maxFloodGrace  = time.Hour
)

// Limits are the bounds that apply to one identity. A zero field is not limited
// by the policy (the broker's defaults may still bound it).
type Limits struct {
	// Connects CONNECTs are accepted per ConnectsPer, with a burst of Connects.
	Connects    int
	ConnectsPer time.Duration
	// Publishes is the PUBLISH packets per second, with a burst of PublishBurst
	// (default: Publishes rounded up, at least 1).
	Publishes    float64
	PublishBurst int
	// PublishBytes is the payload bytes per second, with a burst of
	// PublishBytesBurst (default: one second's worth). A message larger than the
	// burst is always refused.
	PublishBytes      int
	PublishBytesBurst int
	// Subscriptions bounds the subscriptions of one session.
	Subscriptions int
	// Sessions bounds the connected sessions of one identity.
	Sessions int
	// Inflight bounds the QoS 1/2 messages in flight to and from one session.
	Inflight int
	// FloodGrace is how long a session may keep going over its publish limits
	// before it is disconnected; FloodGraceNever never disconnects.
	FloodGrace time.Duration

	// From names, per key, the entry that set the value; nil where none did.
	From [numLimitKeys]*LimitEntry
}

// FloodGraceNever is the FloodGrace of `flood_grace: 0s`: over the limit, messages
// are refused but the connection is kept.
const FloodGraceNever = time.Duration(-1)

// Set reports whether the policy set the limit k.
func (l *Limits) Set(k LimitKey) bool { return k < numLimitKeys && l.From[k] != nil }

// Value renders the value of k as written in topics.yaml, or "" when not set.
func (l *Limits) Value(k LimitKey) string {
	switch k {
	case LimitConnects:
		if l.Connects > 0 {
			return strconv.Itoa(l.Connects) + "/" + l.ConnectsPer.String()
		}
	case LimitPublishes:
		if l.Publishes > 0 {
			return strconv.FormatFloat(l.Publishes, 'g', -1, 64)
		}
	case LimitPublishBurst:
		return positive(l.PublishBurst)
	case LimitPublishBytes:
		return positive(l.PublishBytes)
	case LimitPublishBytesBurst:
		return positive(l.PublishBytesBurst)
	case LimitSubscriptions:
		return positive(l.Subscriptions)
	case LimitSessions:
		return positive(l.Sessions)
	case LimitInflight:
		return positive(l.Inflight)
	case LimitFloodGrace:
		switch {
		case l.FloodGrace == FloodGraceNever:
			return "0s (never disconnect)"
		case l.FloodGrace > 0:
			return l.FloodGrace.String()
		}
	}
	return ""
}

func positive(n int) string {
	if n > 0 {
		return strconv.Itoa(n)
	}
	return ""
}

// LimitEntry is one entry of the limits section, as written.
type LimitEntry struct {
	// File and Line locate the entry (the line of its first key).
	File string
	Line int
	// Name is the optional name the operator gave the entry.
	Name string
	// Anonymous marks an entry for clients without a token (`anonymous: true`).
	Anonymous bool
	// RequireBoundToken makes the identities the entry selects connect only with a sender-constrained token.
	RequireBoundToken bool

	selector
	values Limits // the values this entry sets; values.From marks which
}

// String returns "FILE:LINE", or "FILE:LINE (name)" when the entry is named.
func (e *LimitEntry) String() string {
	if e == nil {
		return "no entry"
	}
	s := e.File + ":" + strconv.Itoa(e.Line)
	if e.Name != "" {
		s += " (" + e.Name + ")"
	}
	return s
}

// Conditions describes the entry's selector for explain.
func (e *LimitEntry) Conditions() string {
	if e.Anonymous {
		return "anonymous clients"
	}
	return e.selector.conditions()
}

// AppliesTo reports whether the entry selects s.
func (e *LimitEntry) AppliesTo(s Subject) bool {
	if s.Anonymous != e.Anonymous {
		return false
	}
	return e.applies(&s)
}

// specificity orders the entries that select one subject; a higher one wins.
// A subject named exactly beats a subject pattern, a longer pattern beats a
// shorter one, a pattern beats none; then more conditions (each claim, each
// all_scopes entry, and a scopes list count one) beat fewer. Equal entries are
// decided by file order: the earlier wins.
type specificity struct {
	subject  int // 0: no subject patterns; 1 + pattern length for a prefix; math.MaxInt32 exact
	conds    int
	position int // negated entry index: earlier is higher
}

func (a specificity) compare(b specificity) int {
	return cmp.Or(cmp.Compare(a.subject, b.subject), cmp.Compare(a.conds, b.conds), cmp.Compare(a.position, b.position))
}

func (e *LimitEntry) specificity(s *Subject, index int) specificity {
	sp := specificity{position: -index, conds: len(e.claims) + len(e.allScopes)}
	if len(e.anyScopes) > 0 {
		sp.conds++
	}
	if m := e.matchSubject(s.ID); m != nil {
		if m.prefix {
			sp.subject = 1 + len(m.text)
		} else {
			sp.subject = math.MaxInt32
		}
	}
	return sp
}

// LimitEntries returns the entries of the limits section in file order. They
// must not be modified.
func (p *Policy) LimitEntries() []*LimitEntry { return slices.Clone(p.limits) }

// Limits resolves the limits of s: for each key, the value of the most specific
// entry that selects s and sets that key (see specificity); a burst comes with
// its rate, from the same entry. Keys no selecting
// entry sets stay zero, for the broker's defaults.
func (p *Policy) Limits(s Subject) Limits {
	var out Limits
	var best [numLimitKeys]specificity
	for i, e := range p.limits {
		if !e.AppliesTo(s) {
			continue
		}
		sp := e.specificity(&s, i)
		for k := LimitKey(0); k < numLimitKeys; k++ {
			if k == LimitPublishBurst || k == LimitPublishBytesBurst {
				continue // decided with their rate: a burst belongs to the rate it was written with
			}
			if e.values.From[k] == nil || (out.From[k] != nil && sp.compare(best[k]) <= 0) {
				continue
			}
			best[k] = sp
			out.From[k] = e
			copyLimit(&out, &e.values, k)
		}
	}
	if out.Publishes > 0 && out.PublishBurst == 0 {
		out.PublishBurst = max(1, int(math.Ceil(out.Publishes)))
	}
	if out.PublishBytes > 0 && out.PublishBytesBurst == 0 {
		out.PublishBytesBurst = out.PublishBytes
	}
	return out
}

func copyLimit(dst, src *Limits, k LimitKey) {
	switch k {
	case LimitConnects:
		dst.Connects, dst.ConnectsPer = src.Connects, src.ConnectsPer
	case LimitPublishes:
		dst.Publishes, dst.PublishBurst = src.Publishes, src.PublishBurst
		dst.From[LimitPublishBurst] = src.From[LimitPublishBurst]
	case LimitPublishBytes:
		dst.PublishBytes, dst.PublishBytesBurst = src.PublishBytes, src.PublishBytesBurst
		dst.From[LimitPublishBytesBurst] = src.From[LimitPublishBytesBurst]
	case LimitSubscriptions:
		dst.Subscriptions = src.Subscriptions
	case LimitSessions:
		dst.Sessions = src.Sessions
	case LimitInflight:
		dst.Inflight = src.Inflight
	case LimitFloodGrace:
		dst.FloodGrace = src.FloodGrace
	}
}

// subjectPattern matches a thing id: exactly, or, with a trailing '*', by prefix.
type subjectPattern struct {
	text   string // without the '*'
	prefix bool
}

// String renders the pattern as written.
func (sp subjectPattern) String() string {
	if sp.prefix {
		return sp.text + "*"
	}
	return sp.text
}

// matchSubject returns the most specific pattern that matches id, or nil.
func (r *selector) matchSubject(id string) *subjectPattern {
	var best *subjectPattern
	for i := range r.subjects {
		sp := &r.subjects[i]
		switch {
		case !sp.prefix && sp.text == id:
			return sp
		case sp.prefix && strings.HasPrefix(id, sp.text) && (best == nil || len(sp.text) > len(best.text)):
			best = sp
		}
	}
	return best
}

// limitKeys are the keys of a limit entry: its selector and its limits.
func limitKeys() []string {
	keys := []string{"name", "anonymous", "scopes", "all_scopes", "claims", "subjects", "require_bound_token"}
	for k := LimitKey(0); k < numLimitKeys; k++ {
		keys = append(keys, k.String())
	}
	return keys
}

// limitList parses the limits section.
func (p *parser) limitList(n *yaml.Node, file string) []*LimitEntry {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "limits must be a list of entries")
		return nil
	}
	var out []*LimitEntry
	keys := map[string]*LimitEntry{}
	names := map[string]*LimitEntry{}
	for _, item := range n.Content {
		e, ok := p.limitEntry(item, file)
		if !ok {
			continue
		}
		if e.Name != "" {
			if prev, dup := names[e.Name]; dup {
				p.errorf(item, "limit entry name %q already used by the entry at line %d", e.Name, prev.Line)
			}
			names[e.Name] = e
		}
		key := strconv.FormatBool(e.Anonymous) + e.selector.key()
		if prev, dup := keys[key]; dup {
			p.errorf(item, "limit entry selects the same identities as the entry at line %d; merge the two", prev.Line)
			continue
		}
		keys[key] = e
		out = append(out, e)
	}
	return out
}

// limitEntry parses and validates one entry of the limits section.
func (p *parser) limitEntry(n *yaml.Node, file string) (*LimitEntry, bool) {
	before := len(p.errs)
	fields := p.mapping(n, "a limit entry", limitKeys())
	if len(p.errs) > before {
		return nil, false
	}
	e := &LimitEntry{File: file, Line: n.Line}
	byKey := map[string]field{}
	set := 0
	for _, f := range fields {
		byKey[f.key.Value] = f
		switch f.key.Value {
		case "name":
			e.Name = p.name(f.value)
		case "anonymous":
			e.Anonymous = p.boolean(f.value, "anonymous")
			if !e.Anonymous {
				p.errorf(f.value, "anonymous: false is the default; remove the key")
			}
		case "scopes", "all_scopes", "claims", "subjects":
			p.selectorField(f, &e.selector)
		case "require_bound_token":
			if e.RequireBoundToken = p.boolean(f.value, "require_bound_token"); e.RequireBoundToken {
				set++
			}
		default:
			if p.limitValue(f, e) {
				set++
			}
		}
	}
	if e.Anonymous {
		for _, k := range []string{"scopes", "all_scopes", "claims", "subjects", "require_bound_token"} {
			if f, ok := byKey[k]; ok {
				p.errorf(f.key, "%s has no meaning for anonymous clients (they have no token)", k)
			}
		}
	}
	if set == 0 && len(p.errs) == before {
		p.errorf(n, "limit entry sets no limit (known: %s, require_bound_token)", strings.Join(limitKeyNames[:], ", "))
	}
	v := &e.values
	if f, ok := byKey["publish_burst"]; ok && v.From[LimitPublishes] == nil {
		p.errorf(f.key, "publish_burst needs publishes in the same entry")
	}
	if f, ok := byKey["publish_bytes_burst"]; ok && v.From[LimitPublishBytes] == nil {
		p.errorf(f.key, "publish_bytes_burst needs publish_bytes in the same entry")
	}
	if f, ok := byKey["publish_bytes_burst"]; ok && v.PublishBytesBurst > 0 && v.PublishBytesBurst < v.PublishBytes/1000 {
		p.errorf(f.value, "publish_bytes_burst %d is less than a millisecond of publish_bytes", v.PublishBytesBurst)
	}
	return e, len(p.errs) == before
}

// limitValue parses one limit key of entry e and reports whether it is valid.
func (p *parser) limitValue(f field, e *LimitEntry) bool {
	v := &e.values
	k := LimitKey(slices.Index(limitKeyNames[:], f.key.Value))
	ok := false
	switch k {
	case LimitConnects:
		v.Connects, v.ConnectsPer, ok = p.perInterval(f.value)
	case LimitPublishes:
		v.Publishes, ok = p.rate(f.value, "publishes")
	case LimitPublishBurst:
		v.PublishBurst, ok = p.count(f.value, "publish_burst", maxLimitCount)
	case LimitPublishBytes:
		v.PublishBytes, ok = p.count(f.value, "publish_bytes", maxLimitCount)
	case LimitPublishBytesBurst:
		v.PublishBytesBurst, ok = p.count(f.value, "publish_bytes_burst", maxLimitCount)
	case LimitSubscriptions:
		v.Subscriptions, ok = p.count(f.value, "subscriptions", maxLimitCount)
	case LimitSessions:
		v.Sessions, ok = p.count(f.value, "sessions", maxLimitCount)
	case LimitInflight:
		v.Inflight, ok = p.count(f.value, "inflight", maxInflight)
	case LimitFloodGrace:
		v.FloodGrace, ok = p.floodGrace(f.value)
	}
	if ok {
		v.From[k] = e
	}
	return ok
}

// count parses a whole number from 1 to maxN.
func (p *parser) count(n *yaml.Node, what string, maxN int) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.errorf(n, "%s must be a whole number from 1 to %d", what, maxN)
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil || v < 1 || v > int64(maxN) {
		p.errorf(n, "%s must be a whole number from 1 to %d, not %s", what, maxN, n.Value)
		return 0, false
	}
	return int(v), true
}

// rate parses a positive number per second (fractions allowed: 0.1 is one every
// ten seconds).
func (p *parser) rate(n *yaml.Node, what string) (float64, bool) {
	var f float64
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&f) != nil ||
		math.IsNaN(f) || f < 0.001 || f > maxLimitCount {
		p.errorf(n, "%s must be a number per second from 0.001 to %d, not %q", what, maxLimitCount, n.Value)
		return 0, false
	}
	return f, true
}

// perInterval parses "N/DURATION", e.g. "10/1m": N events per interval.
func (p *parser) perInterval(n *yaml.Node) (int, time.Duration, bool) {
	const want = `connects must be "COUNT/INTERVAL", like "10/1m" (1 to %d per 1s to 24h)`
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		p.errorf(n, want, maxLimitCount)
		return 0, 0, false
	}
	num, dur, ok := strings.Cut(n.Value, "/")
	c, err1 := strconv.Atoi(strings.TrimSpace(num))
	d, err2 := time.ParseDuration(strings.TrimSpace(dur))
	if !ok || err1 != nil || err2 != nil || c < 1 || c > maxLimitCount || d < minConnectsPer || d > maxConnectsPer {
		p.errorf(n, want+", not %q", maxLimitCount, n.Value)
		return 0, 0, false
	}
	return c, d, true
}

// floodGrace parses a duration up to maxFloodGrace; 0s means never disconnect.
func (p *parser) floodGrace(n *yaml.Node) (time.Duration, bool) {
	var d time.Duration
	var err error
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		d, err = time.ParseDuration(n.Value)
	} else if n.Kind == yaml.ScalarNode && n.Tag == "!!int" && n.Value == "0" {
		d = 0
	} else {
		err = fmt.Errorf("not a duration")
	}
	if err != nil || d < 0 || d > maxFloodGrace {
		p.errorf(n, "flood_grace must be a duration from 0s (never disconnect) to %s, like 10s, not %q", maxFloodGrace, n.Value)
		return 0, false
	}
	if d == 0 {
		d = FloodGraceNever
	}
	return d, true
}

// subjectPatterns parses `subjects: [thermostat-1, "gw-*"]`.
func (p *parser) subjectPatterns(n *yaml.Node) []subjectPattern {
	var out []subjectPattern
	for _, it := range p.sequence(n, "subjects") {
		v, ok := p.scalar(it, "an entry of subjects")
		if !ok {
			continue
		}
		sp := subjectPattern{text: v}
		if strings.HasSuffix(v, "*") {
			sp = subjectPattern{text: v[:len(v)-1], prefix: true}
		}
		switch {
		case sp.text == "" && !sp.prefix:
			p.errorf(it, "an entry of subjects must not be empty")
			continue
		case strings.ContainsAny(sp.text, "*/+#\x00") || strings.ContainsFunc(sp.text, func(c rune) bool { return c < ' ' || c == 0x7f }):
			p.errorf(it, "subject pattern %q: a thing id, or a prefix ending in a single '*' (no / + # or control characters)", v)
			continue
		}
		if slices.Contains(out, sp) {
			p.errorf(it, "%q listed twice in subjects", v)
			continue
		}
		out = append(out, sp)
	}
	return out
}
