package hooks

import (
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Kinds of Match: what an identity event or an administrator names.
const (
	// MatchSubject names a subject: sub as issued (e.g. "(usr!thing-1)") or the plain thing id, of Issuer
	// when it is set, of any issuer when it is "".
	MatchSubject = "sub"
	// MatchEmail names the identities whose token carries this email claim (compared case-insensitively).
	MatchEmail = "email"
	// MatchClientID names an MQTT client identifier.
	MatchClientID = "client_id"
	// MatchToken names one token by TokenHash (hex SHA-256).
	MatchToken = "token_sha256"
)

// Match selects identities for a revocation or a change of claims.
type Match struct {
	Kind   string // MatchSubject, MatchEmail, MatchClientID or MatchToken
	Value  string
	Issuer string // MatchSubject only: the subject's issuer; "" matches any
}

// Valid reports whether m names anything.
func (m Match) Valid() bool {
	switch m.Kind {
	case MatchSubject, MatchEmail, MatchClientID, MatchToken:
		return m.Value != ""
	}
	return false
}

// String is m for logs: kind, issuer when set, value. A token appears only by its hash.
func (m Match) String() string {
	if m.Issuer != "" {
		return m.Kind + "=" + m.Value + " (issuer " + m.Issuer + ")"
	}
	return m.Kind + "=" + m.Value
}

// matches reports whether the identity id, connected as clientID, is one m names.
func (m Match) matches(id *identity, clientID string) bool {
	switch m.Kind {
	case MatchToken:
		return id.tokenHash != "" && id.tokenHash == m.Value
	case MatchClientID:
		return clientID == m.Value
	case MatchSubject:
		if id.subject.Anonymous || (m.Issuer != "" && m.Issuer != id.issuer) {
			return false
		}
		return (id.sub != "" && id.sub == m.Value) || id.subject.ID == m.Value
	case MatchEmail:
		email, _ := id.subject.Claims["email"].(string)
		return email != "" && strings.EqualFold(email, m.Value)
	}
	return false
}

// DefaultRevocationRetention is how long a revocation is remembered unless configured otherwise: longer than
// access tokens live (AM's default is an hour), so that a token issued before the revocation has expired by the
// time it is forgotten.
const DefaultRevocationRetention = 24 * time.Hour

// maxRevocations bounds the revocations remembered (about 200 bytes each). Beyond it the oldest is forgotten
// first, with a warning: its tokens fall back to the re-check and exp.
const maxRevocations = 100_000

// revocationSkew is how much later than a revocation a token's iat must be for the token to count as issued
// after it: the issuer's clock may be ahead of this node's (validation tolerates as much on iat), and a token it
// issued just before the revocation must not pass for a new one.
const revocationSkew = 30 * time.Second

// revocation is one remembered revocation.
type revocation struct {
	at    time.Time // tokens issued at or before at are refused (all of them for MatchToken)
	until time.Time // forgotten then
}

// revocationList remembers what was revoked, so that a revoked token (or a token issued before its subject was
// revoked) is refused at CONNECT and re-authentication, not only disconnected once.
type revocationList struct {
	mu      sync.RWMutex // every CONNECT reads; only revocations write
	entries map[Match]revocation
}

func (l *revocationList) add(m Match, at, until time.Time, now time.Time, log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.entries == nil {
		l.entries = map[Match]revocation{}
	}
	if old, ok := l.entries[m]; ok && old.at.After(at) {
		at = old.at // a later revocation of the same name covers more tokens
	}
	if _, ok := l.entries[m]; !ok && len(l.entries) >= maxRevocations {
		maps.DeleteFunc(l.entries, func(_ Match, r revocation) bool { return !now.Before(r.until) })
		if len(l.entries) >= maxRevocations {
			var oldest Match
			var oldestAt time.Time
			for k, r := range l.entries {
				if oldestAt.IsZero() || r.until.Before(oldestAt) {
					oldest, oldestAt = k, r.until
				}
			}
			delete(l.entries, oldest)
			log.Warn("revocation list full: the oldest revocation is forgotten before its time",
				slog.String("event", "revocation_forgotten"), slog.String("match", oldest.String()),
				slog.Int("limit", maxRevocations))
		}
	}
	l.entries[m] = revocation{at: at, until: until}
}

// refuses returns the revocation that refuses identity id connecting as clientID now, if any.
func (l *revocationList) refuses(id *identity, clientID string, now time.Time) (Match, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.entries) == 0 {
		return Match{}, false
	}
	candidates := []Match{
		{Kind: MatchToken, Value: id.tokenHash},
		{Kind: MatchClientID, Value: clientID},
		{Kind: MatchSubject, Value: id.sub}, {Kind: MatchSubject, Value: id.sub, Issuer: id.issuer},
		{Kind: MatchSubject, Value: id.subject.ID}, {Kind: MatchSubject, Value: id.subject.ID, Issuer: id.issuer},
	}
	if email, _ := id.subject.Claims["email"].(string); email != "" {
		candidates = append(candidates, Match{Kind: MatchEmail, Value: strings.ToLower(email)})
	}
	for _, m := range candidates {
		if m.Value == "" {
			continue
		}
		r, ok := l.entries[m]
		if !ok || !now.Before(r.until) {
			continue
		}
		// A token issued after the revocation is a new grant (the thing signed in again, its user changed the
		// password): only older ones are revoked, with revocationSkew for the issuer's clock. A token without iat
		// cannot show it is newer.
		if m.Kind == MatchToken || id.issuedAt.IsZero() || !id.issuedAt.After(r.at.Add(revocationSkew)) {
			return m, true
		}
	}
	return Match{}, false
}

// tokenRefuser is implemented by validators that can be told a token is revoked (introspect.Cache): its cached
// answer is replaced, so that no path reuses it.
type tokenRefuser interface {
	Refuse(tokenHash string)
}

// Revoke ends every live session of this node that m names with DISCONNECT 0x87 (3.1.1: the connection is closed)
// and reason, and refuses from then on what m names: the token named by hash always, and for the other kinds every
// token issued before at (zero: now) plus revocationSkew, at CONNECT and at re-authentication, until the retention
// (Config.RevocationRetention) ends. The
// cached validation of each ended session's token is dropped. It returns how many sessions it ended.
func (h *Hook) Revoke(m Match, at time.Time, reason string) int {
	if !m.Valid() {
		return 0
	}
	now := h.cfg.Now()
	if at.IsZero() || at.After(now) {
		at = now
	}
	key := m
	if key.Kind == MatchEmail {
		key.Value = strings.ToLower(key.Value)
	}
	h.revocations.add(key, at, now.Add(h.cfg.RevocationRetention), now, h.audit)
	refuser, _ := h.cfg.Validator.(tokenRefuser)
	if refuser != nil && m.Kind == MatchToken {
		refuser.Refuse(m.Value)
	}
	n := 0
	h.sessions.Range(func(k, v any) bool {
		cl, s := k.(*mqtt.Client), v.(*session)
		id := s.id.Load()
		if cl.Closed() || !m.matches(id, cl.ID) {
			return true
		}
		if refuser != nil && id.tokenHash != "" {
			refuser.Refuse(id.tokenHash)
		}
		h.endSession(s, packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: reason}, "revoked", "disconnect", "disconnect", reason)
		n++
		return true
	})
	h.audit.Warn("revocation applied", slog.String("event", "revocation"), slog.String("match", m.String()),
		slog.String("reason", reason), slog.Int("sessions", n), slog.Time("issued_before", at))
	return n
}

// checkRevoked refuses an identity a revocation names (see Revoke).
func (h *Hook) checkRevoked(id *identity, clientID string) *refusal {
	if m, ok := h.revocations.refuses(id, clientID, h.cfg.Now()); ok {
		// 0x86 as for a token the identity provider reports revoked: the token is no good, another one may be.
		r := badToken("token revoked")
		r.detail = "revocation of " + m.Kind
		return r
	}
	return nil
}

// UpdateClaims puts new values of claims in force for every live session of this node that m names (a CAEP
// token-claims-change event): the claims given replace the token's, the scopes are read again by the claim map,
// the grants are compiled again and subscriptions they no longer allow are removed, as a policy reload does. It
// returns how many sessions changed.
func (h *Hook) UpdateClaims(m Match, claims map[string]any, reason string) int {
	if !m.Valid() || len(claims) == 0 {
		return 0
	}
	n := 0
	p := h.policy.Load()
	h.sessions.Range(func(k, v any) bool {
		cl, s := k.(*mqtt.Client), v.(*session)
		old := s.id.Load()
		if cl.Closed() || !m.matches(old, cl.ID) {
			return true
		}
		id := *old
		id.subject.Claims = maps.Clone(old.subject.Claims)
		if id.subject.Claims == nil {
			id.subject.Claims = map[string]any{}
		}
		maps.Copy(id.subject.Claims, claims)
		scopes, err := h.cfg.ClaimMap.ScopesOf(id.subject.Claims)
		if err != nil {
			h.audit.Warn("claims change not applied", slog.String("event", "claims_change"),
				slog.String("client_id", cl.ID), slog.String("error", err.Error()))
			return true
		}
		id.subject.Scopes = scopes
		g, ok := s.replace(old, &id, p)
		if !ok {
			return true // re-authenticated meanwhile: the new token's claims stand
		}
		h.applyLimits(s)
		h.trimSession(cl, g, "claims changed: "+reason)
		n++
		return true
	})
	h.audit.Info("claims change applied", slog.String("event", "claims_change"), slog.String("match", m.String()),
		slog.String("reason", reason), slog.Int("sessions", n))
	return n
}

// SessionInfo is one live session as an administrator sees it. It holds no token.
type SessionInfo struct {
	ClientID  string    `json:"client_id"`
	ThingID   string    `json:"sub"`
	Remote    string    `json:"remote"`
	Since     time.Time `json:"connected_since"`
	Method    string    `json:"method"`
	Expiry    time.Time `json:"expires,omitzero"`
	Protocol  byte      `json:"protocol"`
	Anonymous bool      `json:"anonymous,omitempty"`
}

// Sessions lists the live sessions of this node that m names (every one when m names nothing).
func (h *Hook) Sessions(m Match) []SessionInfo {
	out := []SessionInfo{}
	h.sessions.Range(func(k, v any) bool {
		cl, s := k.(*mqtt.Client), v.(*session)
		id := s.id.Load()
		if cl.Closed() || (m.Valid() && !m.matches(id, cl.ID)) {
			return true
		}
		out = append(out, SessionInfo{
			ClientID: cl.ID, ThingID: id.subject.ID, Remote: clientRemote(cl), Since: s.since,
			Method: id.method, Expiry: id.expiry, Protocol: cl.Properties.ProtocolVersion, Anonymous: id.subject.Anonymous,
		})
		return true
	})
	return out
}
