package hooks

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"imb/authz"
	"imb/introspect"
)

// identity is what one verified token (or the anonymous section) established about
// a client. It is replaced whole on re-authentication, never mutated.
type identity struct {
	subject authz.Subject
	// owner is the principal (introspect.Principal.String: issuer, subject kind,
	// subject) that owns the client id and session; "" for anonymous. subject.ID is
	// only the plain id policies use: "(usr!X)", "(age!X)" and X of another issuer
	// share it.
	owner      string
	expiry     time.Time // zero: never (anonymous)
	method     string    // "jwt", "introspection" or "anonymous"
	issuer     string
	fp         string // token fingerprint, the only trace of the token in logs
	token      string // kept in memory for revocation checks; never logged or stored
	tokenHash  string // TokenHash of the token, for revocation by hash (every method, JWTs too)
	sub        string // sub as issued (the principal's subject), for revocation by subject
	issuedAt   time.Time
	authMethod string // AuthMethod or PoPAuthMethod when the token came in CONNECT's Authentication Data
	// tok is the validated token, for the binding checks of CONNECT and re-authentication (its cnf); shared, read-only.
	tok *introspect.Token
	// bound says what binding of the token the connection proved (boundKey, boundCert); "" for a bearer token.
	bound string
}

// session is the hook's state for one *mqtt.Client. The hot path (ACL checks per
// message and per delivery) only does atomic loads on it.
type session struct {
	cl      *mqtt.Client
	id      atomic.Pointer[identity]
	grants  atomic.Pointer[authz.Grants]
	revoked atomic.Bool   // token expired or revoked: deny everything until disconnected
	claim   atomic.Uint64 // the cluster's revision of this node's hold on the client id; 0: none
	since   time.Time     // when the connection was accepted

	// pending holds the decisions of a SUBSCRIBE being processed, so that mochi's
	// filter-level OnACLCheck answers what OnSubscribe decided with the full packet.
	pending atomic.Pointer[[]subDecision]
	// challenge is the nonce of an IMB-POP re-authentication waiting for its proof (pop.go); taken once.
	challenge atomic.Pointer[challenge]

	// limits are the session's limits and its identity's buckets (limits.go).
	limits atomic.Pointer[sessionLimits]
	// lastOver and floodStart (Unix nanoseconds) track a publisher over its limits.
	lastOver   atomic.Int64
	floodStart atomic.Int64

	mu          sync.Mutex
	releaseSlot func() // gives back the identity's session slot; nil once given back
	expiryT     *time.Timer
	revalT      *time.Timer
	denials     rateGate
}

// subDecision is the verdict on one filter of a SUBSCRIBE.
type subDecision struct {
	filter  string
	allowed bool
	quota   bool // denied because the client holds its maximum of subscriptions
}

func newSession(cl *mqtt.Client, id *identity, g *authz.Grants) *session {
	s := &session{cl: cl, since: time.Now()}
	s.id.Store(id)
	s.grants.Store(g)
	return s
}

// allow is the decision every path takes: the session's grants, unless the token
// has lapsed.
func (s *session) allow(a authz.Action, topic string, qos byte, retain bool) authz.Decision {
	if s.revoked.Load() {
		return authz.Decision{Reason: "token expired or revoked"}
	}
	return s.grants.Load().Allow(a, topic, qos, retain)
}

// replace puts identity id in force with the grants p compiles for it, unless old is
// set and no longer in force (a re-authentication or another re-check came first).
// Policy reloads compile under the same lock, so the grants in force always belong
// to the identity in force.
func (s *session) replace(old, id *identity, p *authz.Policy) (*authz.Grants, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old != nil && s.id.Load() != old {
		return nil, false
	}
	g := p.Compile(id.subject)
	s.grants.Store(g)
	s.id.Store(id)
	return g, true
}

// recompile gives the session the grants p compiles for the identity in force.
func (s *session) recompile(p *authz.Policy) *authz.Grants {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := p.Compile(s.id.Load().subject)
	s.grants.Store(g)
	return g
}

func (s *session) stopTimers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopTimersLocked()
}

// stopTimersLocked is stopTimers for a caller holding s.mu.
func (s *session) stopTimersLocked() {
	if s.expiryT != nil {
		s.expiryT.Stop()
		s.expiryT = nil
	}
	if s.revalT != nil {
		s.revalT.Stop()
		s.revalT = nil
	}
}

// rateGate lets through at most gateBurst audit lines per gateWindow for one session,
// so that a client hammering a denied topic cannot flood the audit log; what it
// holds back is counted and reported with the next line let through.
type rateGate struct {
	mu         sync.Mutex
	windowEnds time.Time
	sent       int
	suppressed int
}

const (
	gateBurst  = 10
	gateWindow = 10 * time.Second
)

// pass reports whether a line may be written now, and how many were held back
// since the last one that was.
func (g *rateGate) pass(now time.Time) (ok bool, suppressed int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.After(g.windowEnds) {
		g.windowEnds = now.Add(gateWindow)
		g.sent = 0
	}
	if g.sent >= gateBurst {
		g.suppressed++
		return false, 0
	}
	g.sent++
	suppressed, g.suppressed = g.suppressed, 0
	return true, suppressed
}

// clientRemote is the remote address of a client, "" for sessions restored from storage.
func clientRemote(cl *mqtt.Client) string { return cl.Net.Remote }

// sameIdentity reports whether tok speaks for the identity id: the same principal
// and the same plain id.
func sameIdentity(tok *introspect.Token, id *identity) bool {
	return tok.Principal.String() == id.owner && tok.ThingID == id.subject.ID
}

// newIdentity is what a validated token establishes (the subject is filled by the
// caller; fp is the token's fingerprint). The token's bytes are kept only when the session must present it again:
// introspected tokens are re-checked for revocation; a JWT is not asked about again.
func newIdentity(tok *introspect.Token, token, fp, authMethod string) *identity {
	id := &identity{
		owner:      tok.Principal.String(),
		expiry:     tok.Expiry,
		method:     tok.Method,
		issuer:     tok.Issuer,
		fp:         fp,
		authMethod: authMethod,
		tokenHash:  TokenHash(token),
		sub:        tok.Principal.Subject,
		issuedAt:   tok.IssuedAt,
		tok:        tok,
	}
	if tok.Method == introspect.MethodIntrospection {
		id.token = token
	}
	return id
}
