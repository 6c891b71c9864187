package hooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Cluster is the cluster a node belongs to, as the hook needs it: one owner per
// client identifier across all nodes. Package cluster's Hook implements it; a
// single node has none.
type Cluster interface {
	// Claim makes this node the holder of clientID for owner. inUse means another
	// owner's connection is live on another node; an error that the cluster could
	// not be asked (the node cannot prove it owns the client id). With resume, a
	// session of owner that another node kept comes here, for mochi to resume.
	Claim(ctx context.Context, clientID, owner string, resume bool) (rev uint64, inUse bool, err error)
	// Release gives up the hold taken at rev; keep says the session stays here offline.
	Release(clientID string, rev uint64, keep bool)
}

// claim asks the cluster for the client id, after the local checks of OnConnect.
func (h *Hook) claim(s *session, owner string) *refusal {
	if h.cfg.Cluster == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.ValidateTimeout)
	defer cancel()
	rev, inUse, err := h.cfg.Cluster.Claim(ctx, s.cl.ID, owner, !s.cl.Properties.Clean)
	switch {
	case err != nil:
		r := unavailable("cluster unavailable")
		r.detail = truncateDetail(err.Error())
		return r
	case inUse:
		return notAuthorized("client identifier in use by another identity")
	}
	s.claim.Store(rev)
	return nil
}

// release gives the cluster's hold back when a connection ends.
func (h *Hook) release(s *session, expire bool) {
	if h.cfg.Cluster == nil {
		return
	}
	if rev := s.claim.Swap(0); rev != 0 {
		h.cfg.Cluster.Release(s.cl.ID, rev, !expire && persistent(s.cl))
	}
}

// Yield answers another node of the cluster that wants clientID for owner. A live
// connection of another owner here refuses (the other node answers CONNACK 0x87);
// a live connection of the same owner is taken over as a local takeover is (0x8E,
// waited for). What remains of the session here is handed to handOver (when set)
// if owner is the session's owner, so that the other node resumes it, and then
// discarded, for it lives elsewhere now. Another owner never gets the session.
func (h *Hook) Yield(clientID, owner string, handOver func(*mqtt.Client)) (refused bool) {
	existing, ok := h.cfg.Server.Clients.Get(clientID)
	if !ok {
		return false
	}
	if !existing.Closed() {
		if string(existing.Properties.Username) != owner {
			return true
		}
		h.finishOld(existing)
	}
	if existing, ok = h.cfg.Server.Clients.Get(clientID); !ok || !existing.Closed() {
		return false // a clean session mochi removed as it ended, or a reconnect here meanwhile
	}
	if handOver != nil && string(existing.Properties.Username) == owner {
		handOver(existing)
	}
	h.discardSession(existing, "the client id now lives on another node")
	if s := h.session(existing); s != nil {
		s.stopTimers()
		h.sessions.Delete(existing)
	}
	return false
}

// EndSessions disconnects every live session of this node whose client id is
// clientID, whose thing id is subject, or whose token's SHA-256 is tokenHash (hex;
// an empty argument matches nothing; clientID "*" matches every session), with
// code and reason; it returns how many.
func (h *Hook) EndSessions(clientID, subject, tokenHash string, code packets.Code, reason string) int {
	n := 0
	h.sessions.Range(func(_, v any) bool {
		s := v.(*session)
		if s.cl.Closed() {
			return true
		}
		id := s.id.Load()
		if clientID == "*" || (clientID != "" && s.cl.ID == clientID) || (subject != "" && id.subject.ID == subject) || (tokenHash != "" && id.tokenHash == tokenHash) {
			h.endSession(s, code, "cluster_event", "disconnect", "disconnect", reason)
			n++
		}
		return true
	})
	if n > 0 {
		h.audit.Info("identity event applied", slog.String("event", "cluster_event"), slog.String("reason", reason), slog.Int("sessions", n))
	}
	return n
}

// TokenHash names a token across nodes without revealing it: the hex SHA-256 that
// introspect's cache keys it by.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
