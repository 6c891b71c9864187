package cluster

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A persistent session moves with its thing. When a thing resumes its session
// (clean start false) on another node, the node that kept it hands over, in its
// answer to the takeover request, the session's subscriptions and the QoS 1 and 2
// messages queued for it; the claiming node puts them into its own mochi as a
// disconnected session of the same owner, which mochi then resumes exactly as one
// kept locally (and the identity hook trims to the owner's current grants).

// handedSession is a session in transit between nodes.
type handedSession struct {
	Protocol      byte                   `json:"protocol"`
	SessionExpiry uint32                 `json:"session_expiry,omitempty"`
	Subscriptions []packets.Subscription `json:"subscriptions,omitempty"`
	Inflight      [][]byte               `json:"inflight,omitempty"` // PUBLISH packets, encoded as on the engine
	Dropped       int                    `json:"dropped,omitempty"`  // messages beyond maxHandedBytes
}

// maxHandedBytes bounds the queued messages one takeover answer carries, below
// NATS's default maximum payload (1 MB) with room for the subscriptions.
const maxHandedBytes = 768 << 10

// handSession describes cl's session for the node that resumes it. Only queued
// PUBLISH packets travel: a QoS 2 exchange already past PUBREC is complete for
// the subscriber, which the new node answers as mochi answers an unknown PUBREL.
func (h *Hook) handSession(cl *mqtt.Client) *handedSession {
	hs := &handedSession{Protocol: cl.Properties.ProtocolVersion, SessionExpiry: cl.Properties.Props.SessionExpiryInterval}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		hs.Subscriptions = append(hs.Subscriptions, sub)
	}
	size, now := 0, time.Now()
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		data, err := encodeWithID(pk, now)
		if err != nil || size+len(data) > maxHandedBytes {
			hs.Dropped++
			continue
		}
		size += len(data)
		hs.Inflight = append(hs.Inflight, data)
	}
	if hs.Dropped > 0 {
		h.e.log.Warn("session handed over without some of its queued messages",
			"client_id", cl.ID, "dropped", hs.Dropped, "handed", len(hs.Inflight))
	}
	return hs
}

// adoptSession puts a session another node handed over into the local server as
// a disconnected session of owner, unless a session for clientID is here already,
// and returns the one that is here.
func (h *Hook) adoptSession(clientID, owner string, hs *handedSession) *mqtt.Client {
	if cl, ok := h.srv.Clients.Get(clientID); ok {
		return cl
	}
	cl := h.srv.NewClient(nil, "cluster", clientID, false)
	cl.Properties.Username = []byte(owner)
	cl.Properties.ProtocolVersion = hs.Protocol
	cl.Properties.Props.SessionExpiryInterval = hs.SessionExpiry
	cl.Properties.Props.SessionExpiryIntervalFlag = hs.SessionExpiry > 0
	cl.Stop(packets.ErrSessionTakenOver) // a session with nobody connected, as mochi restores one from storage
	for _, sub := range hs.Subscriptions {
		h.srv.Topics.Subscribe(clientID, sub)
		cl.State.Subscriptions.Add(sub.Filter, sub)
		if isShared(sub.Filter) {
			if err := h.joinGroup(sub.Filter); err != nil {
				h.e.log.Warn("cluster shared subscription", "filter", sub.Filter, "error", err)
			}
		}
	}
	now := time.Now().Unix()
	for _, data := range hs.Inflight {
		pk, err := decode(data)
		if err != nil {
			h.stats.Errors.Add(1)
			continue
		}
		pk.Created = now
		if e := pk.Properties.MessageExpiryInterval; e > 0 {
			pk.Expiry = now + int64(e)
		}
		cl.State.Inflight.Set(pk)
	}
	h.srv.Clients.Add(cl)
	h.e.log.Info("session resumed from another node", "client_id", clientID,
		"subscriptions", len(hs.Subscriptions), "queued", len(hs.Inflight))
	return cl
}
