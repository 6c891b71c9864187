package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configures a node's connection to the cluster engine. Either URLs (join an
// existing NATS cluster) or Embed (run a NATS node with JetStream in this process).
type Options struct {
	// URLs of an existing NATS cluster with JetStream.
	URLs []string
	// Creds is a NATS credentials file for URLs.
	Creds string
	// TLS, if set, is used to connect to URLs.
	TLS *tls.Config
	// Embed is the HOST:PORT the embedded NATS node listens on for its routes to the
	// other nodes. Empty: no embedded node.
	Embed string
	// Routes are the other embedded nodes' route URLs (nats://HOST:PORT).
	Routes []string
	// StoreDir is where the embedded node keeps JetStream's files (default: a
	// temporary directory, for tests and imb dev --in-memory).
	StoreDir string
	// NodeName names this node; it must be unique in the cluster.
	NodeName string
	// Replicas of the streams and the bucket (default: 3 when the embedded node has
	// at least two routes or URLs name three servers, else 1).
	Replicas int
	// RequestTimeout bounds one request to the engine (default 2 s).
	RequestTimeout time.Duration
	// Logger receives the engine's log lines.
	Logger *slog.Logger
}

// Engine is one node's connection to the cluster: the NATS connection, JetStream,
// and the embedded NATS node when there is one.
type Engine struct {
	opts Options
	log  *slog.Logger
	ns   *natsserver.Server // nil when joining an existing cluster
	nc   *nats.Conn
	// ncGroups carries the shared subscriptions' QoS 0 queue subscriptions. It
	// receives the node's own messages (nc does not), so that a group member
	// here can be the one a message of this node goes to.
	ncGroups *nats.Conn
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	limits   jetstream.KeyValue // per-identity connect and session counts (limits.go)
	// persisted describes persistent sessions and holds the nodes' heartbeats (persist.go).
	persisted jetstream.KeyValue
	// provisioned names the streams created so far at start.
	provisioned map[string]bool
	joined      atomic.Bool
	rtt         atomic.Int64 // nanoseconds, the last probe's round trip
	stop        chan struct{}
	probed      chan struct{} // closed when probe has returned
	subj        string        // this node's message subject, imb.m1.<node>
}

const (
	streamMsgs     = "IMB_MSGS"
	streamRetained = "IMB_RETAINED"
	bucketSessions = "imb_sessions"
	bucketLimits   = "imb_limits"
	subjectQoS0    = "imb.m0"
	subjectEvents  = "imb.events"
)

// Start connects to the engine (starting the embedded NATS node first if asked),
// and creates the streams and the bucket if they do not exist. It returns when the
// node has joined, or ctx ends.
func Start(ctx context.Context, opts Options) (*Engine, error) {
	if opts.NodeName == "" {
		return nil, errors.New("cluster: a node name is required")
	}
	if !validToken(opts.NodeName) {
		return nil, fmt.Errorf("cluster: node name %q: use letters, digits, '-' and '_' only", opts.NodeName)
	}
	if (len(opts.URLs) == 0) == (opts.Embed == "") {
		return nil, errors.New("cluster: give either NATS URLs to join or an address to embed a NATS node on")
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{opts: opts, log: opts.Logger.With("component", "cluster"),
		subj: "imb.m1." + opts.NodeName}
	natsOpts := []nats.Option{
		nats.Name("imb " + opts.NodeName),
		nats.NoEcho(), // a node never receives its own QoS 0 messages back
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			e.joined.Store(false)
			e.log.Warn("cluster engine lost", "error", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			e.joined.Store(true)
			e.log.Info("cluster engine back")
		}),
	}
	url := strings.Join(opts.URLs, ",")
	base := len(natsOpts) // what follows, the way to the servers, both connections share
	if opts.Embed != "" {
		ns, err := e.startEmbedded()
		if err != nil {
			return nil, err
		}
		e.ns = ns
		natsOpts = append(natsOpts, nats.InProcessServer(ns))
		url = ns.ClientURL()
	} else {
		if opts.Creds != "" {
			natsOpts = append(natsOpts, nats.UserCredentials(opts.Creds))
		}
		if opts.TLS != nil {
			natsOpts = append(natsOpts, nats.Secure(opts.TLS))
		}
	}
	nc, err := nats.Connect(url, natsOpts...)
	if err != nil {
		e.shutdownEmbedded()
		return nil, fmt.Errorf("cluster: connect to NATS: %w", err)
	}
	e.nc = nc
	groupOpts := []nats.Option{nats.Name("imb " + opts.NodeName + " groups"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond), nats.RetryOnFailedConnect(true)}
	groupOpts = append(groupOpts, natsOpts[base:]...)
	if e.ncGroups, err = nats.Connect(url, groupOpts...); err != nil {
		e.Close()
		return nil, fmt.Errorf("cluster: connect to NATS: %w", err)
	}
	if e.js, err = jetstream.New(nc); err != nil {
		e.Close()
		return nil, fmt.Errorf("cluster: JetStream: %w", err)
	}
	if err := e.provision(ctx); err != nil {
		e.Close()
		return nil, err
	}
	e.joined.Store(nc.IsConnected())
	e.stop = make(chan struct{})
	e.probed = make(chan struct{})
	go e.probe()
	return e, nil
}

// probe asks for the sessions bucket's status every half second. The NATS
// connection alone says too little: an embedded node is always connected to
// itself, even when it has lost its routes and JetStream its quorum.
func (e *Engine) probe() {
	defer close(e.probed)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-e.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.RequestTimeout)
		start := time.Now()
		// The sessions bucket's status comes from its stream's leader, which a node
		// that lost its quorum no longer has (a read of a key, or the account's
		// figures, any node answers alone).
		_, err := e.kv.Status(ctx)
		cancel()
		if err == nil && !e.quorate() {
			err = errors.New("too few routes to the other nodes for a quorum")
			failures = 1 // no need to wait for a second look: routes are counted, not guessed
		}
		if err == nil && e.nc.IsConnected() {
			e.rtt.Store(int64(time.Since(start)))
			failures = 0
			if !e.joined.Swap(true) {
				e.log.Info("cluster engine usable again")
			}
			continue
		}
		failures++
		if failures >= 2 && e.joined.Swap(false) {
			e.log.Warn("cluster engine lost", "error", err)
		}
	}
}

// startEmbedded runs the embedded NATS node with JetStream.
func (e *Engine) startEmbedded() (*natsserver.Server, error) {
	host, portS, err := net.SplitHostPort(e.opts.Embed)
	if err != nil {
		return nil, fmt.Errorf("cluster: embed address %q: %w", e.opts.Embed, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("cluster: embed address %q: port: %w", e.opts.Embed, err)
	}
	no := &natsserver.Options{
		ServerName: e.opts.NodeName,
		// A client port on loopback only, on a port of the kernel's choosing: nats-server
		// starts no route listener without one; this node talks to it in process.
		Host:      "127.0.0.1",
		Port:      natsserver.RANDOM_PORT,
		NoSigs:    true,
		JetStream: true,
		StoreDir:  e.opts.StoreDir,
	}
	// The route listener is always open, so that nodes started later can join
	// through routes that name this one.
	no.Cluster = natsserver.ClusterOpts{Name: "imb", Host: host, Port: port}
	no.Routes = natsserver.RoutesFromStr(strings.Join(e.opts.Routes, ","))
	ns, err := natsserver.NewServer(no)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLoggerV2(natsLogger{log: e.log, fatal: fatal}, false, false, false)
	go ns.Start()
	// A loaded machine can take a while to open JetStream's store; a listener
	// that cannot bind never will, and says so at once.
	deadline := time.Now().Add(30 * time.Second)
	for !ns.ReadyForConnections(250 * time.Millisecond) {
		select {
		case msg := <-fatal:
			ns.Shutdown()
			return nil, fmt.Errorf("cluster: embedded NATS on %s: %s", e.opts.Embed, msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("cluster: embedded NATS on %s did not start within 30s", e.opts.Embed)
		}
	}
	return ns, nil
}

func (e *Engine) replicas() int {
	if e.opts.Replicas > 0 {
		return e.opts.Replicas
	}
	if len(e.opts.Routes) >= 2 || len(e.opts.URLs) >= 3 {
		return 3
	}
	return 1
}

// provision creates the streams and the bucket, retrying while a clustered
// JetStream elects its first leader.
func (e *Engine) provision(ctx context.Context) error {
	r := e.replicas()
	streams := []jetstream.StreamConfig{{
		Name:       streamMsgs,
		Subjects:   []string{"imb.m1.*"},
		Storage:    jetstream.FileStorage,
		Replicas:   r,
		MaxAge:     time.Hour, // every node's consumer has read a message long before
		Duplicates: 2 * time.Minute,
	}, {
		Name:              streamRetained,
		Subjects:          []string{"imb.r.*"},
		Storage:           jetstream.FileStorage,
		Replicas:          r,
		MaxMsgsPerSubject: 1,
	}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := e.provisionOnce(ctx, streams, r)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("cluster: create streams: %w", err)
		}
		e.log.Debug("cluster engine not ready yet", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// provisionOnce creates what is not created yet, each with a deadline of its
// own: while three nodes start together, each creation waits for a raft group
// to form, and a retry need not redo what an earlier attempt did.
func (e *Engine) provisionOnce(ctx context.Context, streams []jetstream.StreamConfig, r int) error {
	for _, sc := range streams {
		if e.provisioned[sc.Name] {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := e.js.CreateOrUpdateStream(cctx, sc)
		cancel()
		if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		e.markProvisioned(sc.Name)
	}
	for _, b := range []struct {
		kv  *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&e.kv, jetstream.KeyValueConfig{Bucket: bucketSessions, Storage: jetstream.FileStorage, Replicas: r, History: 1}},
		{&e.limits, jetstream.KeyValueConfig{Bucket: bucketLimits, Storage: jetstream.FileStorage, Replicas: r, History: 1, TTL: limitsMaxAge}},
		{&e.persisted, jetstream.KeyValueConfig{Bucket: bucketPersisted, Storage: jetstream.FileStorage, Replicas: r, History: 1}},
	} {
		if *b.kv != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := e.js.CreateOrUpdateKeyValue(cctx, b.cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("bucket %s: %w", b.cfg.Bucket, err)
		}
		*b.kv = kv
	}
	return nil
}

func (e *Engine) markProvisioned(name string) {
	if e.provisioned == nil {
		e.provisioned = map[string]bool{}
	}
	e.provisioned[name] = true
}

// quorate reports whether an embedded node still reaches a majority of the
// cluster. JetStream notices a lost quorum only when its leaders time out (tens of
// seconds); the routes say it at once.
func (e *Engine) quorate() bool {
	if e.ns == nil || len(e.opts.Routes) == 0 {
		return true
	}
	peers := len(e.opts.Routes) + 1
	return e.ns.NumRemotes()+1 > peers/2
}

// Joined reports whether the node can use the engine now: connected, and
// JetStream answering (checked every half second).
func (e *Engine) Joined() bool { return e.joined.Load() && e.nc.IsConnected() }

// NodeName is this node's name.
func (e *Engine) NodeName() string { return e.opts.NodeName }

// Close leaves the cluster: it drains the connection and stops the embedded node.
func (e *Engine) Close() {
	if e.stop != nil {
		close(e.stop)
		<-e.probed
		e.stop = nil
	}
	if e.ncGroups != nil {
		e.ncGroups.Close()
	}
	if e.nc != nil {
		_ = e.nc.Drain()
		deadline := time.Now().Add(2 * time.Second)
		for !e.nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		e.nc.Close()
	}
	e.shutdownEmbedded()
}

func (e *Engine) shutdownEmbedded() {
	if e.ns != nil {
		e.ns.Shutdown()
		e.ns.WaitForShutdown()
	}
}

// nameRune reports whether r may be part of a node name, which is one token of a
// NATS subject.
func nameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// validToken reports whether s can be a node name.
func validToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !nameRune(r) })
}

// NodeNameOf turns a host name into a node name, each character a node name
// cannot hold replaced by '_'.
func NodeNameOf(host string) string {
	return strings.Map(func(r rune) rune {
		if nameRune(r) {
			return r
		}
		return '_'
	}, host)
}

// natsLogger hands the embedded NATS node's lines to slog. A fatal line (a
// listener that cannot bind) also goes to fatal, so that the start says why
// at once instead of waiting out its deadline.
type natsLogger struct {
	log   *slog.Logger
	fatal chan<- string
}

func (l natsLogger) Noticef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...), "nats", true) }
func (l natsLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l natsLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default: // the first one is enough
	}
}
func (l natsLogger) Errorf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.HasPrefix(msg, "Error trying to connect to route") {
		// Routes are dialled until the peer answers, and peers that start
		// together refuse the first attempts; a route that never comes up shows
		// as a node that is not joined (/readyz, imb_cluster_joined).
		l.log.Info(msg)
		return
	}
	l.log.Error(msg)
}
func (l natsLogger) Debugf(f string, v ...any) {}
func (l natsLogger) Tracef(f string, v ...any) {}

// RTT is the round trip of the last successful JetStream request the node made to
// check the engine.
func (e *Engine) RTT() time.Duration { return time.Duration(e.rtt.Load()) }
