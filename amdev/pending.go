package amdev

import (
	"container/list"
	"net"
	"net/http"
	"time"
)

// pendingAuths holds the authIds of tree flows in progress. It is bounded in
// total and per source address, and when a bound is reached it evicts the
// oldest authId (of that source, else of all) instead of refusing the new
// one: a flood of opening requests then costs its sender its own earlier
// authIds, and other clients at most a restarted flow, never a lock-out.
type pendingAuths struct {
	max, perSource int
	byID           map[string]*pendingAuth
	order          *list.List // *pendingAuth, oldest first
	bySource       map[string]*list.List
}

type pendingAuth struct {
	id, source string
	state      *authState
	all, src   *list.Element
}

func newPendingAuths(max, perSource int) *pendingAuths {
	return &pendingAuths{max: max, perSource: perSource, byID: map[string]*pendingAuth{}, order: list.New(),
		bySource: map[string]*list.List{}}
}

// add stores st under id for source, evicting as the bounds require.
func (p *pendingAuths) add(id, source string, st *authState, now time.Time) {
	p.expire(now)
	if q := p.bySource[source]; q != nil && q.Len() >= p.perSource {
		p.remove(q.Front().Value.(*pendingAuth))
	}
	if len(p.byID) >= p.max {
		p.remove(p.order.Front().Value.(*pendingAuth))
	}
	e := &pendingAuth{id: id, source: source, state: st}
	e.all = p.order.PushBack(e)
	q := p.bySource[source]
	if q == nil {
		q = list.New()
		p.bySource[source] = q
	}
	e.src = q.PushBack(e)
	p.byID[id] = e
}

// take removes and returns the state of id, nil when unknown.
func (p *pendingAuths) take(id string) *authState {
	e := p.byID[id]
	if e == nil {
		return nil
	}
	p.remove(e)
	return e.state
}

// expire drops the expired authIds; all share one lifetime, so they are the oldest.
func (p *pendingAuths) expire(now time.Time) {
	for f := p.order.Front(); f != nil; f = p.order.Front() {
		e := f.Value.(*pendingAuth)
		if now.Before(e.state.expires) {
			return
		}
		p.remove(e)
	}
}

func (p *pendingAuths) remove(e *pendingAuth) {
	delete(p.byID, e.id)
	p.order.Remove(e.all)
	if q := p.bySource[e.source]; q != nil {
		q.Remove(e.src)
		if q.Len() == 0 {
			delete(p.bySource, e.source)
		}
	}
}

func (p *pendingAuths) len() int { return len(p.byID) }

// sourceAddr is the address a request's share of bounded state is counted
// by: the peer's IP. amdev trusts no forwarding header, so behind a proxy
// every client shares the proxy's address.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
