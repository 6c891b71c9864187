package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"imb/cluster"
	"imb/hooks"
	"imb/ssf"
)

// revoke applies a revocation on this node (see hooks.Hook.Revoke) and tells every other node of the cluster,
// which applies it to its own sessions and refuses the same tokens. jti names the SET it came from ("" for an
// administrator's): the other nodes' receivers remember it, so that the SET is not accepted twice by pushing it to
// another node. It returns the sessions ended here.
func (b *Broker) revoke(m hooks.Match, at time.Time, reason, jti string) int {
	if b.hook == nil {
		return 0
	}
	if at.IsZero() {
		at = time.Now()
	}
	n := b.hook.Revoke(m, at, reason)
	if b.cluster != nil {
		ev := cluster.Event{Kind: cluster.EventRevoke, MatchKind: m.Kind, MatchValue: m.Value, MatchIssuer: m.Issuer,
			At: at, Reason: reason, SETID: jti}
		if err := b.cluster.hook.Broadcast(ev); err != nil {
			b.log.Warn("revocation not told to the cluster; the other nodes rely on their re-check", "error", err)
		}
	}
	return n
}

// updateClaims applies changed claims on this node (see hooks.Hook.UpdateClaims) and on every other node.
func (b *Broker) updateClaims(m hooks.Match, claims map[string]any, reason, jti string) int {
	if b.hook == nil {
		return 0
	}
	n := b.hook.UpdateClaims(m, claims, reason)
	if b.cluster != nil {
		ev := cluster.Event{Kind: cluster.EventClaims, MatchKind: m.Kind, MatchValue: m.Value, MatchIssuer: m.Issuer,
			Claims: claims, Reason: reason, SETID: jti}
		if err := b.cluster.hook.Broadcast(ev); err != nil {
			b.log.Warn("claims change not told to the cluster", "error", err)
		}
	}
	return n
}

// startSSF builds the Security Event Token receiver of the ssf: section, nil when it is not configured.
func (b *Broker) startSSF(ctx context.Context) (*ssf.Receiver, error) {
	c := b.cfg.SSF
	if !c.Enabled() || b.hook == nil {
		return nil, nil
	}
	results := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imb_security_events_total",
		Help: "Security Event Tokens pushed to /ssf/events, by result: accepted, or the RFC 8935 error code."}, []string{"result"})
	b.registry.MustRegister(results)
	r, err := ssf.New(ctx, ssf.Config{
		Issuer: c.Issuer, JWKSURL: c.JWKSURL, JWKSFile: c.JWKSFile, Audience: c.Audience, MaxAge: c.MaxAge,
		Apply:   b.applyEvent,
		Observe: func(result string) { results.WithLabelValues(result).Inc() },
		Logger:  b.log.With("component", "ssf"),
	})
	if err != nil {
		return nil, configErr(err)
	}
	return r, nil
}

// eventReasons are the reason strings of the DISCONNECT each event type sends.
var eventReasons = map[string]string{
	ssf.SessionRevoked:    "session revoked",
	ssf.CredentialChange:  "credential changed",
	ssf.AccountDisabled:   "account disabled",
	ssf.AccountPurged:     "account deleted",
	ssf.TokenRevoked:      "token revoked",
	ssf.TokenClaimsChange: "claims changed",
}

// applyEvent acts on one verified security event: revocations end the sessions they name, here and on every node,
// and refuse their tokens; a change of claims recompiles the grants of the sessions it names.
func (b *Broker) applyEvent(_ context.Context, set *ssf.SET, ev ssf.Event) error {
	reason := eventReasons[ev.Type]
	if ev.Reason != "" {
		reason += ": " + ev.Reason
	}
	var m hooks.Match
	switch ev.Subject.Format {
	case ssf.FormatIssSub:
		m = hooks.Match{Kind: hooks.MatchSubject, Value: ev.Subject.ID, Issuer: ev.Subject.Issuer}
	case ssf.FormatOpaque:
		m = hooks.Match{Kind: hooks.MatchSubject, Value: ev.Subject.ID}
	case ssf.FormatEmail:
		m = hooks.Match{Kind: hooks.MatchEmail, Value: ev.Subject.ID}
	}
	if ev.Type == ssf.TokenRevoked {
		m = hooks.Match{Kind: hooks.MatchToken, Value: ev.Token}
	}
	if !m.Valid() {
		return fmt.Errorf("event %s names no subject", ev.Type)
	}
	var n int
	if ev.Type == ssf.TokenClaimsChange {
		claims, _ := ev.Claims.(map[string]any)
		n = b.updateClaims(m, claims, reason, set.ID)
	} else {
		n = b.revoke(m, ev.At, reason, set.ID)
	}
	b.log.Info("security event", "type", ev.Type, "jti", set.ID, "match", m.String(), "sessions_here", n)
	return nil
}

// rememberSET tells this node's receiver of a SET another node accepted, so that it is refused here as a replay.
func (b *Broker) rememberSET(jti string) {
	if jti != "" && b.ssf != nil {
		b.ssf.Remember(jti)
	}
}
