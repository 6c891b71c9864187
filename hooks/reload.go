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
		g := p.Compile(s.id.Load().subject)
		s.grants.Store(g)
		h.trimSession(cl, g, "policy reloaded")
		n++
		return true
	})
	h.audit.Info("policy reloaded", slog.String("event", "policy_reload"), slog.Int("sessions", n),
		slog.String("policy", p.Summary()))
}

// SubjectStore keeps the identity behind each persistent session across restarts,
// keyed by client id. It holds no token.
type SubjectStore interface {
	Put(clientID string, s authz.Subject) error
	Get(clientID string) (authz.Subject, bool, error)
	Delete(clientID string) error
}
