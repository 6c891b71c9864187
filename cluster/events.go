package cluster

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Event is an identity event one node tells all: a token revoked, a thing
// disconnected by an administrator, a policy to reload. Fields name what it is
// about; the receiving node's identity hook decides what that means for its sessions.
type Event struct {
	Kind     string `json:"kind"`                   // EventEnd, EventTokenRevoked, EventReload
	Node     string `json:"node"`                   // the node it came from
	ClientID string `json:"client_id,omitempty"`    // EventEnd: this client id
	Subject  string `json:"sub,omitempty"`          // EventEnd: every session of this thing id
	Token    string `json:"token_sha256,omitempty"` // EventTokenRevoked: the token's SHA-256, hex
	Reason   string `json:"reason,omitempty"`
	// EventRevoke and EventClaims: what they are about, as a hooks.Match (kind, value, issuer), and when the
	// revocation took effect (tokens issued before it are refused).
	MatchKind   string         `json:"match,omitempty"`
	MatchValue  string         `json:"value,omitempty"`
	MatchIssuer string         `json:"issuer,omitempty"`
	At          time.Time      `json:"at,omitzero"`
	Claims      map[string]any `json:"claims,omitempty"` // EventClaims: the new claim values
	SETID       string         `json:"jti,omitempty"`    // the Security Event Token it came from, if any
}

// Kinds of events.
const (
	EventEnd          = "end"
	EventTokenRevoked = "token_revoked"
	EventReload       = "reload"
	EventRevoke       = "revoke" // a Security Event Token or an administrator revoked a subject, client id or token
	EventClaims       = "claims" // a subject's claims changed (CAEP token-claims-change)
)

// Broadcast tells every other node of ev.
func (h *Hook) Broadcast(ev Event) error {
	ev.Node = h.e.opts.NodeName
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("cluster: event: %w", err)
	}
	if err := h.e.nc.Publish(subjectEvents, b); err != nil {
		return fmt.Errorf("cluster: broadcast %s: %w", ev.Kind, err)
	}
	return nil
}

func (h *Hook) onEvent(m *nats.Msg) {
	var ev Event
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Kind == "" {
		h.stats.Errors.Add(1)
		return
	}
	if ev.Node == h.e.opts.NodeName || h.cfg.Event == nil {
		return
	}
	h.cfg.Event(ev)
}
