package amdev

import (
	"maps"
	"slices"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// realmClients are the OAuth 2.0 clients changed through the admin REST
// (realm-config/agents/OAuth2Client), per realm. A realm sees the
// configured clients (settings.Clients) and, over them, its own: a client
// created or updated there, or a nil entry where a configured client was
// deleted in that realm. Every client lookup goes through client().
type realmClients struct {
	mu      sync.RWMutex
	byRealm map[string]map[string]*Client
	// edit serialises the admin REST's read-modify-write of one client.
	edit sync.Mutex
}

// client is realm's client id, nil when there is none or it is inactive
// (AM refuses an inactive client's authentication like an unknown one's).
func (s *Server) client(realm, id string) *Client {
	c := s.clientEntry(realm, id)
	if c == nil || c.Inactive {
		return nil
	}
	return c
}

// clientEntry is realm's client id, active or not.
func (s *Server) clientEntry(realm, id string) *Client {
	s.agents.mu.RLock()
	defer s.agents.mu.RUnlock()
	if c, ok := s.agents.byRealm[realm][id]; ok {
		return c
	}
	return s.settings.Clients[id]
}

// clientIDs are the ids of realm's clients, active or not, sorted.
func (s *Server) clientIDs(realm string) []string {
	s.agents.mu.RLock()
	defer s.agents.mu.RUnlock()
	ids := map[string]bool{}
	for id := range s.settings.Clients {
		ids[id] = true
	}
	for id, c := range s.agents.byRealm[realm] {
		ids[id] = c != nil
	}
	var out []string
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if ids[id] {
			out = append(out, id)
		}
	}
	return out
}

// setClient creates or replaces realm's client id; nil deletes it.
func (s *Server) setClient(realm, id string, c *Client) {
	s.agents.mu.Lock()
	defer s.agents.mu.Unlock()
	if s.agents.byRealm == nil {
		s.agents.byRealm = map[string]map[string]*Client{}
	}
	if s.agents.byRealm[realm] == nil {
		s.agents.byRealm[realm] = map[string]*Client{}
	}
	s.agents.byRealm[realm][id] = c
}

// dropRealmClients forgets a deleted realm's own clients.
func (s *Server) dropRealmClients(realm string) {
	s.agents.mu.Lock()
	defer s.agents.mu.Unlock()
	delete(s.agents.byRealm, realm)
	s.pubAgents.mu.Lock()
	delete(s.pubAgents.byRealm, realm)
	s.pubAgents.mu.Unlock()
}

// realmPublishers are the software publisher agents changed through the
// admin REST (realm-config/agents/SoftwarePublisher), per realm, over the
// configured ones (settings.SoftwarePublishers); a nil entry is a
// configured publisher deleted in that realm.
type realmPublishers struct {
	mu      sync.RWMutex
	byRealm map[string]map[string]*SoftwarePublisher
}

// publisherEntry is realm's software publisher agent id, nil if none.
func (s *Server) publisherEntry(realm, id string) *SoftwarePublisher {
	s.pubAgents.mu.RLock()
	defer s.pubAgents.mu.RUnlock()
	if p, ok := s.pubAgents.byRealm[realm][id]; ok {
		return p
	}
	return s.settings.SoftwarePublishers[id]
}

// publisherIDs are the agent ids of realm's software publishers, sorted.
func (s *Server) publisherIDs(realm string) []string {
	s.pubAgents.mu.RLock()
	defer s.pubAgents.mu.RUnlock()
	ids := map[string]bool{}
	for id := range s.settings.SoftwarePublishers {
		ids[id] = true
	}
	for id, p := range s.pubAgents.byRealm[realm] {
		ids[id] = p != nil
	}
	var out []string
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if ids[id] {
			out = append(out, id)
		}
	}
	return out
}

// publisherKeys are the keys of realm's software publisher whose issuer is
// iss, nil if there is none.
func (s *Server) publisherKeys(realm, iss string) *jose.JSONWebKeySet {
	for _, id := range s.publisherIDs(realm) {
		if p := s.publisherEntry(realm, id); p != nil && p.Issuer == iss {
			set, err := parseThingKeys(p.JWKS)
			if err != nil {
				s.log.Warn("software publisher keys", "realm", realm, "agent", id, "err", err)
				return nil
			}
			return set
		}
	}
	return nil
}

// setPublisher creates or replaces realm's publisher id; nil deletes it.
func (s *Server) setPublisher(realm, id string, p *SoftwarePublisher) {
	s.pubAgents.mu.Lock()
	defer s.pubAgents.mu.Unlock()
	if s.pubAgents.byRealm == nil {
		s.pubAgents.byRealm = map[string]map[string]*SoftwarePublisher{}
	}
	if s.pubAgents.byRealm[realm] == nil {
		s.pubAgents.byRealm[realm] = map[string]*SoftwarePublisher{}
	}
	s.pubAgents.byRealm[realm][id] = p
}
