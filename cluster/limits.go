package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster-wide per-identity limits: the connects an identity may make per
// interval, and the sessions it may hold, counted over every node in the
// imb_limits bucket (compare-and-set on each entry's revision), so that a thing
// cannot multiply its limit by the number of nodes behind the load balancer.
// Publish rates stay per node: they are checked on every message, and a
// publisher's messages all go through the one node it is connected to.
//
// Connects are counted in fixed windows of the limit's interval (key: identity
// and window number), so up to twice the limit can pass around a window's edge,
// where the node's own token bucket would not; a window longer than the
// bucket's age (7 days) is counted as 7 days. Sessions are the set of client ids the
// identity holds, each with its node; the entries of a node that no longer
// answers are dropped when the set is full. When the engine cannot be asked the
// counter lets the connect through: the client-id claim that follows cannot
// be made either, and refuses it with 0x88.

// limitsMaxAge bounds how long a window's count is kept (the bucket's age).
const limitsMaxAge = 7 * 24 * time.Hour

// LimitCounter counts per-identity connects and sessions across the cluster.
// It implements hooks.LimitCounter.
type LimitCounter struct{ h *Hook }

// LimitCounter returns the hook's cluster-wide counter.
func (h *Hook) LimitCounter() *LimitCounter { return &LimitCounter{h: h} }

func limitKey(kind, identity string) string {
	return hashedName(kind+".", identity, 16)
}

// AllowConnect reports whether identity may connect once more under n connects per interval.
func (c *LimitCounter) AllowConnect(identity string, n int, per time.Duration) bool {
	per = min(max(per, time.Millisecond), limitsMaxAge)
	e := c.h.e
	window := time.Now().UnixNano() / int64(per)
	key := limitKey("c", identity) + "." + strconv.FormatInt(window, 36)
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.RequestTimeout)
	defer cancel()
	for range 8 {
		entry, err := e.limits.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := e.limits.Create(ctx, key, []byte("1")); err == nil {
				return n >= 1
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return true
			}
			continue
		}
		if err != nil {
			return true
		}
		count, _ := strconv.Atoi(string(entry.Value()))
		if count >= n {
			return false
		}
		if _, err := e.limits.Update(ctx, key, []byte(strconv.Itoa(count+1)), entry.Revision()); err == nil {
			return true
		} else if !isWrongRevision(err) {
			return true
		}
	}
	return true
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// AcquireSession reports whether identity may hold a session under clientID with
// at most max sessions cluster-wide (0: no quota); a client id it holds already is not counted
// again. release gives the session back.
func (c *LimitCounter) AcquireSession(identity, clientID string, max int) (release func(), ok bool) {
	if max <= 0 {
		return func() {}, true // no quota: nothing to count, no round trip
	}
	key := limitKey("s", identity)
	node := c.h.e.opts.NodeName
	ok = c.update(key, func(held map[string]string) bool {
		if _, mine := held[clientID]; !mine && len(held) >= max {
			c.dropGone(held)
			if len(held) >= max {
				return false
			}
		}
		held[clientID] = node
		return true
	})
	if !ok {
		return nil, false
	}
	return func() {
		c.update(key, func(held map[string]string) bool {
			if held[clientID] == node { // a takeover elsewhere holds it now: not ours to give back
				delete(held, clientID)
			}
			return true
		})
	}, true
}

// update applies change to the set of held client ids under key with
// compare-and-set; change reports whether to write. An engine that cannot be
// asked allows (see above).
func (c *LimitCounter) update(key string, change func(held map[string]string) bool) bool {
	kv := c.h.e.limits
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.h.e.opts.RequestTimeout)
	defer cancel()
	for range 8 {
		held := map[string]string{}
		var rev uint64
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return true
		default:
			rev = entry.Revision()
			_ = json.Unmarshal(entry.Value(), &held)
		}
		if !change(held) {
			return false
		}
		val, _ := json.Marshal(held)
		if rev == 0 {
			_, err = kv.Create(ctx, key, val)
		} else {
			_, err = kv.Update(ctx, key, val, rev)
		}
		if err == nil {
			return true
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongRevision(err) {
			return true
		}
	}
	return true
}

// dropGone removes the client ids held by nodes that do not answer: a node that
// died holds nothing.
func (c *LimitCounter) dropGone(held map[string]string) {
	alive := map[string]bool{c.h.e.opts.NodeName: true}
	for id, node := range held {
		up, asked := alive[node]
		if !asked {
			ctx, cancel := context.WithTimeout(context.Background(), c.h.e.opts.RequestTimeout)
			_, err := c.h.e.nc.RequestWithContext(ctx, "imb.node."+node+".ping", nil)
			cancel()
			up = !errors.Is(err, nats.ErrNoResponders)
			alive[node] = up
		}
		if !up {
			delete(held, id)
		}
	}
}
