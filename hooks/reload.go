package hooks

import (
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"

	"imb/authz"
)

// SetPolicy puts a new policy in force: every session's grants are compiled again
// from its identity and swapped atomically, and subscriptions the new grants refuse
// are removed. Decisions under way finish with the grants they started with.
func (h *Hook) SetPolicy(p *authz.Policy) {
	h.policy.Store(p)
	n := 0
	h.sessions.Range(func(k, v any) bool {
		cl, s := k.(*mqtt.Client), v.(*session)
		g := s.recompile(p)
		h.applyLimits(s)
		h.trimSession(cl, g, "policy reloaded")
		n++
		return true
	})
	h.audit.Info("policy reloaded", slog.String("event", "policy_reload"), slog.Int("sessions", n),
		slog.String("policy", p.Summary()))
}

// SubjectStore keeps the owner and identity behind each persistent session across
// restarts, keyed by client id. It holds no token.
type SubjectStore interface {
	Put(clientID string, s StoredSession) error
	Get(clientID string) (StoredSession, bool, error)
	Delete(clientID string) error
}

// StoredSession is what a SubjectStore keeps for one persistent session.
type StoredSession struct {
	// Owner is the principal that owns the session (the identity's owner). It is ""
	// in a record written before owners were kept; the hook then derives the owner
	// from Subject.Claims, the verified claims the record was written from.
	Owner string
	// Subject is the identity the session's grants are compiled from.
	Subject authz.Subject
}
