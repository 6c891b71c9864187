package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// record is who holds a client id, as the imb_sessions bucket keeps it.
type record struct {
	Node  string `json:"node"`
	Owner string `json:"owner"`
	Live  bool   `json:"live"` // connected now; false: a persistent session kept offline
}

// takeover is a request to the node that holds a client id.
type takeover struct {
	ClientID string `json:"client_id"`
	Owner    string `json:"owner"`
	Resume   bool   `json:"resume,omitempty"` // the CONNECT asks for the session (clean start false)
}

// takeoverReply is what the holding node answers.
type takeoverReply struct {
	Refused bool           `json:"refused,omitempty"` // live there for another owner
	Session *handedSession `json:"session,omitempty"` // the owner's session, for a resume
}

// sessionKey is a client id as a bucket key (keys allow fewer characters than client ids).
func sessionKey(clientID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(clientID))
}

// Claim makes this node the holder of clientID for owner, cluster-wide. A live
// connection of the same owner on another node is taken over (that node sends it
// DISCONNECT 0x8E and waits until it is gone); a live connection of another owner
// makes Claim answer inUse. A session another node keeps offline is discarded
// there. The revision returned goes back to Release. An error means the engine
// could not be asked: the node cannot prove it owns the client id.
//
// With resume (a CONNECT with clean start false), the session another node kept
// for owner comes here with its subscriptions and the QoS 1 and 2 messages queued
// for it, and mochi resumes it as a session of this node.
func (h *Hook) Claim(ctx context.Context, clientID, owner string, resume bool) (rev uint64, inUse bool, err error) {
	if !h.e.Joined() {
		return 0, false, errors.New("cluster: not joined")
	}
	key := sessionKey(clientID)
	val, _ := json.Marshal(record{Node: h.e.opts.NodeName, Owner: owner, Live: true})
	ctx, cancel := context.WithTimeout(ctx, 2*h.e.opts.RequestTimeout)
	defer cancel()
	for attempt := 0; attempt < 8; attempt++ {
		entry, err := h.e.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			rev, err := h.e.kv.Create(ctx, key, val)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // claimed meanwhile: look again
			}
			if err != nil {
				return 0, false, fmt.Errorf("cluster: claim %q: %w", clientID, err)
			}
			return rev, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("cluster: claim %q: %w", clientID, err)
		}
		var cur record
		_ = json.Unmarshal(entry.Value(), &cur)
		if cur.Node != h.e.opts.NodeName && cur.Node != "" {
			rep, err := h.askHolder(ctx, cur.Node, takeover{ClientID: clientID, Owner: owner, Resume: resume})
			if err != nil {
				return 0, false, err
			}
			if rep.Refused {
				return 0, true, nil
			}
			switch {
			case !resume || cur.Owner != owner:
				h.forget(clientID) // a session is never inherited; clean start discards it
			case rep.Session != nil:
				h.adoptSession(clientID, owner, rep.Session)
			default:
				// The holder is gone, or came back without the session: rebuild it.
				if err := h.recoverSession(ctx, clientID, owner); err != nil {
					return 0, false, err
				}
				// Reading the stream may have taken the claim's time.
				var cancel2 context.CancelFunc
				ctx, cancel2 = context.WithTimeout(context.WithoutCancel(ctx), h.e.opts.RequestTimeout)
				defer cancel2()
			}
		}
		rev, err := h.e.kv.Update(ctx, key, val, entry.Revision())
		if err != nil {
			if isWrongRevision(err) {
				continue // changed meanwhile (the holder let go): look again
			}
			return 0, false, fmt.Errorf("cluster: claim %q: %w", clientID, err)
		}
		return rev, false, nil
	}
	return 0, false, fmt.Errorf("cluster: claim %q: contended", clientID)
}

// askHolder asks the node that holds a client id to give it up. A node that does
// not answer at all is gone, and so is its hold.
func (h *Hook) askHolder(ctx context.Context, node string, req takeover) (takeoverReply, error) {
	var rep takeoverReply
	body, _ := json.Marshal(req)
	rctx, cancel := context.WithTimeout(ctx, h.e.opts.RequestTimeout)
	defer cancel()
	m, err := h.e.nc.RequestWithContext(rctx, "imb.node."+node+".takeover", body)
	if errors.Is(err, nats.ErrNoResponders) {
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("cluster: ask node %s about %q: %w", node, req.ClientID, err)
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return rep, fmt.Errorf("cluster: node %s answered %d bytes that are not a takeover reply: %w", node, len(m.Data), err)
	}
	return rep, nil
}

// onTakeover answers another node that wants a client id this node holds.
func (h *Hook) onTakeover(m *nats.Msg) {
	var req takeover
	if err := json.Unmarshal(m.Data, &req); err != nil || req.ClientID == "" {
		_ = m.Respond([]byte(`{"refused":true}`))
		return
	}
	rep := takeoverReply{}
	if h.cfg.Yield != nil {
		var handOver func(*mqtt.Client)
		if req.Resume {
			handOver = func(cl *mqtt.Client) { rep.Session = h.handSession(cl) }
		}
		rep.Refused = h.cfg.Yield(req.ClientID, req.Owner, handOver)
	}
	b, _ := json.Marshal(rep)
	_ = m.Respond(b)
}

// Release gives up this node's hold on clientID taken at revision rev. With keep, the
// session stays here offline (a persistent session) and the hold says so; else the
// hold is deleted. A hold another claim has replaced meanwhile is left alone.
func (h *Hook) Release(clientID string, rev uint64, keep bool) {
	if rev == 0 || !h.e.Joined() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.e.opts.RequestTimeout)
	defer cancel()
	key := sessionKey(clientID)
	if keep {
		entry, err := h.e.kv.Get(ctx, key)
		if err != nil || entry.Revision() != rev {
			return
		}
		var cur record
		_ = json.Unmarshal(entry.Value(), &cur)
		cur.Live = false
		val, _ := json.Marshal(cur)
		_, _ = h.e.kv.Update(ctx, key, val, rev)
		return
	}
	_ = h.e.kv.Delete(ctx, key, jetstream.LastRevision(rev))
}
