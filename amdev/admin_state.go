package amdev

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"imb/amdev/store"
)

// What the admin REST changes is kept in the store, so that it survives a
// restart with the same data directory, as AM's configuration does. It is
// one record: the admin REST's changes are small and rare, and one
// snapshot cannot be half written. The secret mappings have records of
// their own (bucketSecretMappings), next to their keys.
const (
	bucketAdmin   = "admin"
	keyAdminState = "state"
)

// adminState is the admin REST's changes over the config file: the realm
// table and, per realm, the overlays of the provider, the IoT Service,
// agents and journeys (a null entry is a configured one deleted in that
// realm), and the certificate authorities in use.
type adminState struct {
	Realms        map[string]storedRealm                   `json:"realms"`
	DeletedRealms []string                                 `json:"deletedRealms,omitempty"`
	Providers     map[string]OAuth2Provider                `json:"providers,omitempty"`
	IoT           map[string]IoTService                    `json:"iot,omitempty"`
	Clients       map[string]map[string]*Client            `json:"clients,omitempty"`
	Publishers    map[string]map[string]*SoftwarePublisher `json:"publishers,omitempty"`
	Trees         map[string]map[string]map[string]any     `json:"trees,omitempty"`
	Nodes         map[string]map[string]*journeyNode       `json:"nodes,omitempty"`
	CAs           []string                                 `json:"certificateAuthorities,omitempty"`
}

type storedRealm struct {
	Active  bool     `json:"active"`
	Aliases []string `json:"aliases"`
}

// isAdminWrite reports a request that may have changed the admin REST's
// state: anything but a read below realm-config or global-config.
func isAdminWrite(r *http.Request, segs []string) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return false
	}
	_, rest, ok := splitRealmPath(segs)
	return ok && len(rest) > 0 && (rest[0] == "realm-config" || rest[0] == "global-config")
}

// saveAdminState stores the admin REST's state after a change. A failure
// is logged, not answered: the change is in force, only not kept.
func (s *Server) saveAdminState() {
	// One save at a time, snapshot and write together: otherwise an older
	// snapshot could be written after a newer one.
	s.adminSave.Lock()
	defer s.adminSave.Unlock()
	st := adminState{Realms: map[string]storedRealm{}}
	s.realmTab.mu.RLock()
	for p, ri := range s.realmTab.realms {
		st.Realms[p] = storedRealm{Active: ri.active, Aliases: slices.Clone(ri.aliases)}
	}
	st.DeletedRealms = slices.Sorted(func(yield func(string) bool) {
		for p := range s.realmTab.deleted {
			if !yield(p) {
				return
			}
		}
	})
	s.realmTab.mu.RUnlock()
	s.provMu.RLock()
	st.Providers, st.IoT = s.providers, s.iotServices
	data, err := s.marshalAdminState(&st)
	s.provMu.RUnlock()
	if err == nil {
		err = s.db.Put(bucketAdmin, keyAdminState, json.RawMessage(data), time.Time{})
	}
	if err != nil {
		s.log.Error("admin REST changes not stored: they are lost at restart", "err", err)
	}
}

// marshalAdminState completes st with the agents, journeys and CAs and
// encodes it while their locks are held (the caller holds provMu).
func (s *Server) marshalAdminState(st *adminState) ([]byte, error) {
	s.agents.mu.RLock()
	defer s.agents.mu.RUnlock()
	s.pubAgents.mu.RLock()
	defer s.pubAgents.mu.RUnlock()
	s.journeys.mu.RLock()
	defer s.journeys.mu.RUnlock()
	s.caMu.RLock()
	defer s.caMu.RUnlock()
	st.Clients, st.Publishers = s.agents.byRealm, s.pubAgents.byRealm
	st.Trees, st.Nodes = s.journeys.trees, s.journeys.nodes
	st.CAs = s.caEntries
	data, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode admin state: %w", err)
	}
	return data, nil
}

// loadAdminState applies the stored admin REST state over the config
// file's at start. Realms of the config file that the admin REST never
// saw (added to the file since) are kept; those it deleted stay deleted.
func (s *Server) loadAdminState() error {
	var raw json.RawMessage
	err := s.db.Get(bucketAdmin, keyAdminState, &raw, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // tree JSON keeps its numbers as sent, as the admin REST decoded it
	var st adminState
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("stored admin state: %w", err)
	}
	t := s.realmTab
	for _, p := range st.DeletedRealms {
		delete(t.realms, p)
		t.deleted[p] = true
	}
	for p, r := range st.Realms {
		t.realms[p] = &realmInfo{active: r.Active || p == "/", aliases: r.Aliases}
	}
	restore(&s.providers, st.Providers)
	restore(&s.iotServices, st.IoT)
	restore(&s.agents.byRealm, st.Clients)
	restore(&s.pubAgents.byRealm, st.Publishers)
	restore(&s.journeys.trees, st.Trees)
	restore(&s.journeys.nodes, st.Nodes)
	// Only CAs the config file still names can be in use.
	cas := slices.DeleteFunc(st.CAs, func(e string) bool { return !slices.Contains(s.settings.CertificateAuthorities, e) })
	if len(cas) > 0 {
		keys, err := loadCAKeys(cas)
		if err != nil {
			return fmt.Errorf("stored certificate mapping: %w", err)
		}
		s.caEntries, s.caKeys = cas, keys
	}
	s.log.Info("admin REST changes restored", "realms", len(st.Realms))
	return nil
}

// restore sets *dst to a stored overlay, keeping an empty one made at start.
func restore[M ~map[string]V, V any](dst *M, stored M) {
	if stored != nil {
		*dst = stored
	}
}
