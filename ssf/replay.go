package ssf

import (
	"container/list"
	"sync"
	"time"
)

// replayCache remembers the jti of accepted SETs for as long as their iat is accepted (max age plus skew), so that
// no SET is applied twice; a SET older than that is refused by its iat, so nothing needs remembering longer. It
// holds at most max entries: when they are all younger than the window, a new SET is refused (the transmitter
// delivers it again) rather than an old jti forgotten, for a replay could undo a later change of claims.
type replayCache struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	byID   map[string]*list.Element
	order  *list.List // of entry, oldest first
}

type entry struct {
	id string
	at time.Time
}

type addResult int

const (
	added addResult = iota
	replayed
	full
)

func newReplayCache(max int, window time.Duration) *replayCache {
	return &replayCache{max: max, window: window, byID: map[string]*list.Element{}, order: list.New()}
}

// add records id as received at now, unless it was already received within the window.
func (c *replayCache) add(id string, now time.Time) addResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.order.Front(); e != nil && now.Sub(e.Value.(entry).at) > c.window; e = c.order.Front() {
		delete(c.byID, e.Value.(entry).id)
		c.order.Remove(e)
	}
	if _, ok := c.byID[id]; ok {
		return replayed
	}
	if c.order.Len() >= c.max {
		return full
	}
	c.byID[id] = c.order.PushBack(entry{id: id, at: now})
	return added
}

// remove forgets id (its SET was not applied).
func (c *replayCache) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		c.order.Remove(e)
		delete(c.byID, id)
	}
}
