// Package broker assembles a running imb: the mochi-mqtt server with imb's identity
// hook, its listeners (TCP, TLS, WebSocket), optional persistence, and the admin
// HTTP endpoints (health, readiness, Prometheus metrics, the status page). cmd/imb,
// the dev command, the tests and the load test all start brokers through it.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/bbolt"

	"imb/authz"
	"imb/cluster"
	"imb/hooks"
	"imb/introspect"
	"imb/ssf"
)

// Broker is one running imb.
type Broker struct {
	cfg       Config
	log       *slog.Logger
	server    *mqtt.Server
	hook      *hooks.Hook
	sessions  *boltSubjects
	store     mqtt.Hook // the storage hook, nil without a data directory
	registry  *prometheus.Registry
	admin     *adminServer
	denials   *denialRing // recent denials, for the status page
	addrs     map[string]string
	bound     map[string]net.Listener // sockets bound by bind, until listen hands them over
	ready     func(ctx context.Context) error
	jwt       *introspect.JWTValidator // nil without local JWT validation
	cache     *introspect.Cache        // nil without a cache
	cluster   *clusterNode             // nil for a single node
	door      *door                    // the HTTP door, nil without http_addr and https_addr
	ssf       *ssf.Receiver            // the Security Event Token receiver, nil without ssf:
	validator hooks.TokenValidator     // judges the administrator's API tokens too

	mu      sync.Mutex
	closed  bool
	stopped chan struct{}
}

// Start builds the broker from cfg, opens its listeners and serves until Close.
// The listeners are bound when Start returns, so Addr answers at once.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if err := cfg.fill(); err != nil {
		return nil, configErr(err)
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, addrs: map[string]string{}, stopped: make(chan struct{})}
	if cfg.AllowAll {
		if err := cfg.checkLoopbackOnly(); err != nil {
			return nil, configErr(err)
		}
	}
	// Bind first: an address in use is the commonest start-up failure, and its
	// message should come before anything the server logs while it assembles.
	if err := b.bind(); err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			b.unbind()
		}
	}()
	if cfg.AllowAll {
		b.server = mqtt.New(&mqtt.Options{Capabilities: cfg.capabilities(), Logger: mochiLogger(cfg.Logger),
			SysTopicResendInterval: int64(cfg.SysInterval / time.Second)})
		b.registry = prometheus.NewRegistry()
		if err := b.server.AddHook(new(auth.AllowHook), nil); err != nil {
			return nil, err
		}
		if err := b.server.AddHook(b.protocolHook(), nil); err != nil {
			return nil, err
		}
		started = true
		return b.serve(ctx)
	}
	policy := cfg.Policy
	if policy == nil {
		p, err := authz.Load(cfg.PolicyFile)
		if err != nil {
			return nil, configErr(fmt.Errorf("policy: %w", err))
		}
		policy = p
	}
	validator, ready, err := cfg.validator(ctx)
	if err != nil {
		return nil, err
	}
	b.ready = ready
	b.validator = validator
	b.denials = newDenialRing(recentDenials)
	b.jwt = cfg.jwt
	b.cache, _ = validator.(*introspect.Cache)
	b.server = mqtt.New(&mqtt.Options{
		Capabilities:           cfg.capabilities(),
		Logger:                 mochiLogger(cfg.Logger),
		SysTopicResendInterval: int64(cfg.SysInterval / time.Second),
	})
	b.registry = prometheus.NewRegistry()
	b.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := hooks.NewMetrics(b.registry)

	// The identity hook goes first; the storage hook (if any) after it, so that the
	// token is scrubbed from the client record before storage sees it.
	var store mqtt.Hook
	var storeOpts *bolt.Options
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		if b.sessions, err = openSubjects(filepath.Join(cfg.DataDir, "sessions.db"), cfg.DataFsync); err != nil {
			return nil, err
		}
		store = boltStore{new(bolt.Hook)}
		b.store = store
		// Without fsync a write survives a killed process (it is in the kernel), not a
		// power cut; DataFsync buys the latter at a disk flush per QoS>0 message.
		storeOpts = &bolt.Options{
			Path:    filepath.Join(cfg.DataDir, "mqtt.db"),
			Options: &bbolt.Options{Timeout: 2 * time.Second, NoSync: !cfg.DataFsync, NoFreelistSync: true},
		}
	}
	if cfg.Cluster.Enabled() {
		if err := b.joinCluster(ctx); err != nil {
			return nil, err
		}
	}
	if b.hook, err = b.newHook(validator, policy, metrics, store); err != nil {
		err = configErr(err)
	} else {
		err = b.server.AddHook(b.hook, nil)
	}
	if err == nil {
		err = b.server.AddHook(b.protocolHook(), nil)
	}
	if err == nil && b.cluster != nil {
		err = b.server.AddHook(b.cluster.hook, nil)
	}
	if err == nil && store != nil {
		if err = b.server.AddHook(store, storeOpts); err != nil {
			err = fmt.Errorf("open %s: %w", storeOpts.Path, err)
		}
	}
	if err != nil {
		if b.sessions != nil {
			_ = b.sessions.Close()
		}
		if b.cluster != nil {
			b.cluster.leave()
		}
		return nil, err
	}
	metrics.Watch(b.registry, b.hook)
	if b.cluster != nil {
		registerClusterMetrics(b.registry, b.cluster)
	}
	if c, ok := validator.(*introspect.Cache); ok {
		registerCacheMetrics(b.registry, c)
	}
	started = true
	return b.serve(ctx)
}

// serve binds the listeners and the admin endpoint and starts the broker.
func (b *Broker) serve(ctx context.Context) (*Broker, error) {
	fail := func(err error) (*Broker, error) {
		b.unbind()
		_ = b.server.Close()
		if b.cluster != nil {
			b.cluster.leave()
		}
		if b.sessions != nil {
			_ = b.sessions.Close()
		}
		if b.ssf != nil {
			_ = b.ssf.Close()
		}
		return nil, err
	}
	// The receiver exists before the cluster's events arrive: they name the SETs other nodes accepted.
	ssfr, err := b.startSSF(ctx)
	if err != nil {
		return fail(err)
	}
	b.ssf = ssfr
	if b.cluster != nil {
		// Retained messages of the cluster are loaded before any client can subscribe.
		if err := b.cluster.hook.Run(ctx); err != nil {
			return fail(err)
		}
		go b.watchCluster()
	}
	if err := b.listen(); err != nil {
		return fail(err)
	}
	if err := b.server.Serve(); err != nil {
		return fail(fmt.Errorf("serve: %w", err))
	}
	if err := b.replayJournal(); err != nil {
		return fail(err)
	}
	if b.cfg.AdminAddr != "" {
		admin, err := startAdmin(b.cfg.AdminAddr, b)
		if err != nil {
			return fail(&ListenError{Key: "admin_addr", Addr: b.cfg.AdminAddr, Err: err})
		}
		b.admin = admin
	}
	if b.hook != nil {
		go b.watchPolicy(ctx)
		b.log.Info("imb broker started", "listeners", b.addrs, "policy", b.hook.Policy().Summary())
	} else {
		b.log.Warn("imb broker started WITHOUT authentication or authorization (allow-all baseline)", "listeners", b.addrs)
	}
	return b, nil
}

// protocolHook is the hook for what CONNACK promises beyond mochi's options.
func (b *Broker) protocolHook() *protocolHook {
	return &protocolHook{keepAlive: uint16(b.cfg.ServerKeepAlive / time.Second)}
}

func (b *Broker) newHook(v hooks.TokenValidator, p *authz.Policy, m *hooks.Metrics, storage mqtt.Hook) (*hooks.Hook, error) {
	cfg := hooks.Config{
		Server:             b.server,
		Validator:          v,
		Policy:             p,
		ClientIDBinding:    b.cfg.ClientIDBinding,
		RequireUsername:    b.cfg.RequireUsername,
		TokenField:         b.cfg.TokenField,
		WillDenied:         hooks.WillPolicy(b.cfg.WillDenied),
		ValidateTimeout:    b.cfg.ValidateTimeout,
		RevalidateInterval: b.cfg.RevalidateInterval,
		MaxSubscriptions:   b.cfg.MaxSubscriptions,
		ConnectRatePerAddr: b.cfg.ConnectRatePerAddr,
		Audit:              b.cfg.Audit,
		Metrics:            m,
		Storage:            storage,
		Denied:             b.denials.add,

		RevocationRetention: b.cfg.RevocationRetention,
		ClaimMap:            b.cfg.claimMap(),
		PoPAudience:         b.cfg.PoPAudience,
	}
	if b.cluster != nil {
		cfg.Cluster = b.cluster.hook
		cfg.LimitCounter = b.cluster.hook.LimitCounter()
		cfg.Revoked = func(hash string) {
			if err := b.cluster.hook.Broadcast(cluster.Event{Kind: cluster.EventTokenRevoked, Token: hash}); err != nil {
				b.log.Warn("revocation not told to the cluster", "error", err)
			}
		}
	}
	if b.sessions != nil {
		cfg.Sessions = b.sessions
		cfg.Journal = journal{b.sessions}
	}
	return hooks.New(cfg)
}

// packetLimit is what connections need to enforce the Maximum Packet Size.
func (b *Broker) packetLimit() *packetLimit {
	return &packetLimit{max: b.cfg.MaxPacketSize, server: b.server, audit: b.cfg.Audit}
}

// listen binds every configured listener.
func (b *Broker) listen() error {
	type spec struct {
		id, addr, proto string
		tls, ws         bool
	}
	specs := []spec{
		{"tcp", b.cfg.MQTTAddr, "tcp", false, false},
		{"tls", b.cfg.TLSAddr, "tcp+tls", true, false},
		{"ws", b.cfg.WSAddr, "ws", false, true},
		{"wss", b.cfg.WSSAddr, "wss", true, true},
	}
	var tlsConf *tls.Config
	gate := newPendingGate(b.cfg.MaxPendingConnects, b.cfg.MaxPendingConnectsPerAddr, b.registry)
	for _, s := range specs {
		if s.addr == "" {
			continue
		}
		if s.tls && tlsConf == nil {
			c, err := b.cfg.tlsConfig()
			if err != nil {
				return configErr(err)
			}
			tlsConf = c
		}
		ln := b.bound[s.id]
		delete(b.bound, s.id) // the listener owns it from here
		var l net.Listener = ln
		switch {
		case s.ws && s.tls:
			l = newWSListener(ln, tlsConf, b.cfg.WSOrigins, b.cfg.ConnectDeadline)
		case s.ws:
			l = newWSListener(ln, nil, b.cfg.WSOrigins, b.cfg.ConnectDeadline)
		case s.tls:
			l = tls.NewListener(ln, tlsConf)
		}
		b.addrs[s.id] = ln.Addr().String()
		if err := b.server.AddListener(newListener(s.id, s.proto, l, b.cfg.ConnectDeadline, b.packetLimit(), gate, b.recovered, b.closeClients)); err != nil {
			return err
		}
	}
	if b.cfg.HTTPSAddr != "" && tlsConf == nil {
		c, err := b.cfg.tlsConfig()
		if err != nil {
			return configErr(err)
		}
		tlsConf = c
	}
	if err := b.listenDoor(gate, tlsConf); err != nil {
		return err
	}
	if len(b.addrs) == 0 {
		return configErr(errors.New("no MQTT listener configured"))
	}
	return nil
}

// listenerKeys are the listeners by id, with their imb.yaml keys: the MQTT ones and the HTTP
// door's.
func (c *Config) listenerKeys() [][3]string {
	return [][3]string{
		{"tcp", "mqtt_addr", c.MQTTAddr},
		{"tls", "tls_addr", c.TLSAddr},
		{"ws", "ws_addr", c.WSAddr},
		{"wss", "wss_addr", c.WSSAddr},
		{"http", "http_addr", c.HTTPAddr},
		{"https", "https_addr", c.HTTPSAddr},
	}
}

// bind opens every configured MQTT listener's socket and checks that the admin
// address is free, before the server is assembled (see Start).
func (b *Broker) bind() error {
	b.bound = map[string]net.Listener{}
	for _, l := range b.cfg.listenerKeys() {
		if l[2] == "" {
			continue
		}
		ln, err := net.Listen("tcp", l[2])
		if err != nil {
			b.unbind()
			return &ListenError{Key: l[1], Addr: l[2], Err: err}
		}
		b.bound[l[0]] = ln
	}
	if b.cfg.AdminAddr != "" {
		// The admin server binds its own socket later; trying the address now puts
		// a conflict first. Another process taking it in between still fails then.
		ln, err := net.Listen("tcp", b.cfg.AdminAddr)
		if err != nil {
			b.unbind()
			return &ListenError{Key: "admin_addr", Addr: b.cfg.AdminAddr, Err: err}
		}
		_ = ln.Close()
	}
	return nil
}

// unbind closes sockets bind opened that no listener took over.
func (b *Broker) unbind() {
	for id, ln := range b.bound {
		_ = ln.Close()
		delete(b.bound, id)
	}
}

// Check validates cfg and its policy without starting anything, and returns a
// one-line summary: the configuration check an operator (or ExecStartPre) runs.
func Check(cfg Config) (string, error) {
	if err := cfg.fill(); err != nil {
		return "", configErr(err)
	}
	if cfg.AllowAll {
		return "", configErr(errors.New("allow-all is a measurement baseline, not a configuration"))
	}
	if cfg.needsTLS() {
		if _, err := cfg.tlsConfig(); err != nil {
			return "", configErr(err)
		}
	}
	policy := cfg.Policy
	if policy == nil {
		p, err := authz.Load(cfg.PolicyFile)
		if err != nil {
			return "", configErr(fmt.Errorf("policy: %w", err))
		}
		policy = p
	}
	plan, err := cfg.plan()
	if err != nil {
		return "", err
	}
	if plan.introspect {
		// The key, certificate or token files must load now, not at the first CONNECT.
		if err := cfg.introspectCredentials(&introspect.IntrospectionConfig{}); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("configuration valid: tokens: %s; %s", plan, policy.Summary()), nil
}

// Addr returns the bound address of a listener: "tcp", "tls", "ws", "wss", "http",
// "https" or "admin"; "" if it is not configured.
func (b *Broker) Addr(name string) string { return b.addrs[name] }

// Hook returns the identity hook (for tests and the dev command).
func (b *Broker) Hook() *hooks.Hook { return b.hook }

// Server returns the embedded mochi server.
func (b *Broker) Server() *mqtt.Server { return b.server }

// Registry returns the Prometheus registry the admin endpoint serves.
func (b *Broker) Registry() *prometheus.Registry { return b.registry }

// Ready reports whether the broker can take connections: listeners bound and the
// identity provider's keys or introspection endpoint reachable.
func (b *Broker) Ready(ctx context.Context) error {
	if b.cluster != nil && !b.cluster.engine.Joined() {
		return errors.New("not joined to the cluster engine")
	}
	if b.ready == nil {
		return nil
	}
	return b.ready(ctx)
}

// ReloadKeys fetches the issuer's key set now (SIGHUP): a key added is known at once, a key removed is no longer
// trusted, and cached validations are dropped so that no session opens on the strength of a removed key.
func (b *Broker) ReloadKeys(ctx context.Context) error {
	if b.jwt == nil {
		return nil
	}
	if err := b.jwt.Refresh(ctx); err != nil {
		b.log.Error("key set reload failed; the keys in force stay", "error", err)
		return fmt.Errorf("reload keys: %w", err)
	}
	if b.cache != nil {
		b.cache.Purge()
	}
	b.log.Info("key set reloaded")
	return nil
}

// ReloadPolicy reads the policy file again; an invalid file leaves the policy in
// force untouched and returns why.
func (b *Broker) ReloadPolicy() error {
	if b.cfg.PolicyFile == "" {
		return errors.New("no policy file to reload")
	}
	p, err := authz.Load(b.cfg.PolicyFile)
	if err != nil {
		b.log.Error("policy reload rejected; the previous policy stays in force", "file", b.cfg.PolicyFile, "error", err)
		return err
	}
	if b.hook == nil {
		return errors.New("no policy in force: allow-all baseline")
	}
	b.hook.SetPolicy(p)
	b.log.Info("policy reloaded", "file", b.cfg.PolicyFile, "policy", p.Summary())
	return nil
}

// Close disconnects every client, stops the listeners and the admin endpoint, and
// flushes persistence.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stopped)
	if b.admin != nil {
		b.admin.close()
	}
	if b.ssf != nil {
		_ = b.ssf.Close()
	}
	b.closeDoor()
	err := b.server.Close()
	if b.cluster != nil {
		b.cluster.leave()
	}
	if b.sessions != nil {
		err = errors.Join(err, b.sessions.Close())
	}
	return err
}

// registerCacheMetrics exports the token cache's counters.
func registerCacheMetrics(reg prometheus.Registerer, c *introspect.Cache) {
	counter := func(name, help string, f func(introspect.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(c.Stats())) })
	}
	reg.MustRegister(
		counter("imb_token_cache_hits_total", "Token validations answered from the cache.", func(s introspect.Stats) uint64 { return s.Hits }),
		counter("imb_token_cache_misses_total", "Token validations the cache could not answer.", func(s introspect.Stats) uint64 { return s.Misses }),
		counter("imb_token_upstream_calls_total", "Validations that reached the validator (JWKS check or introspection request).", func(s introspect.Stats) uint64 { return s.Upstream }),
		counter("imb_token_upstream_errors_total", "Upstream validations that failed because the identity provider was unavailable.", func(s introspect.Stats) uint64 { return s.UpstreamErrors }),
	)
}

// ServeConn serves one already-accepted connection as if it came from the "tcp"
// listener, with the same protection against panics in mochi's packet decoders; it
// returns when the connection ends. Fuzz tests feed in-memory connections here.
func (b *Broker) ServeConn(conn net.Conn) error {
	return serveConn(b.server.EstablishConnection, "tcp", conn, b.packetLimit(), nil, b.log, b.recovered)
}

// closeClients disconnects every client of a listener, for shutdown.
func (b *Broker) closeClients(listenerID string) {
	for _, cl := range b.server.Clients.GetAll() { // a copy, taken under one read lock
		if cl.Net.Listener == listenerID && !cl.Closed() {
			_ = b.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// recovered finishes, after a panic inside mochi, what mochi's connection handler
// would have done when the connection ended: the hooks hear of the disconnect and
// a session that does not outlive its connection is removed. (No will is sent:
// mochi's will sending is not reachable from outside; the thing's connection ended
// with a malformed packet of its own.)
func (b *Broker) recovered(conn net.Conn, _ any) {
	for _, cl := range b.server.Clients.GetAll() {
		if cl.Net.Conn != conn {
			continue
		}
		cl.Stop(packets.ErrMalformedPacket)
		expire := (cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryInterval == 0) ||
			(cl.Properties.ProtocolVersion < 5 && cl.Properties.Clean)
		if b.hook != nil {
			b.hook.OnDisconnect(cl, packets.ErrMalformedPacket, expire)
		}
		if b.store != nil {
			b.store.OnDisconnect(cl, packets.ErrMalformedPacket, expire)
		}
		if expire && !cl.IsTakenOver() {
			cl.ClearInflights()
			b.server.UnsubscribeClient(cl)
			b.server.Clients.Delete(cl.ID)
		}
		return
	}
}

// replayJournal delivers the QoS 1/2 messages a previous run accepted but did not
// finish handing to their subscribers (it was killed in between). Subscribers may
// get such a message twice, as QoS 1 allows; they never lose it. Deliveries are
// judged by each subscriber's grants as usual.
func (b *Broker) replayJournal() error {
	if b.sessions == nil {
		return nil
	}
	pks, err := b.sessions.drain()
	if err != nil || len(pks) == 0 {
		return err
	}
	replayer := b.server.NewClient(nil, "local", "imb-journal-replay", true)
	for _, pk := range pks {
		pk.FixedHeader.Type = packets.Publish
		if err := b.server.InjectPacket(replayer, pk); err != nil {
			b.log.Warn("journal replay", "topic", pk.TopicName, "error", err)
		}
	}
	b.log.Info("journal replayed", "messages", len(pks))
	return nil
}
