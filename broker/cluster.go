package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"imb/cluster"
	"imb/hooks"
)

// fill checks the cluster: section and puts in its defaults.
func (c *ClusterConfig) fill() error {
	if !c.Enabled() {
		return nil
	}
	if len(c.NATS) > 0 && c.Embed != "" {
		return errors.New("cluster: give nats (join a NATS cluster) or embed (run one in this process), not both")
	}
	if len(c.Routes) > 0 && c.Embed == "" {
		return errors.New("cluster: routes need embed")
	}
	if c.NodeName == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("cluster: node_name not set and no host name: %w", err)
		}
		c.NodeName = cluster.NodeNameOf(host)
	}
	if c.LostGrace == 0 {
		c.LostGrace = Defaults().Cluster.LostGrace
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("cluster: replicas %d: want 1 to 5", c.Replicas)
	}
	return nil
}

// clusterNode is what the broker keeps of its cluster membership.
type clusterNode struct {
	engine  *cluster.Engine
	hook    *cluster.Hook
	tempDir string // the embedded node's store without a data directory
}

// joinCluster connects to the cluster engine (starting the embedded NATS node when
// configured) before the hooks are assembled, so that a node that cannot join does
// not start.
func (b *Broker) joinCluster(ctx context.Context) error {
	c := b.cfg.Cluster
	opts := cluster.Options{URLs: c.NATS, Creds: c.NATSCreds, Embed: c.Embed, Routes: c.Routes, NodeName: c.NodeName,
		Replicas: c.Replicas, RequestTimeout: 2 * time.Second, Logger: b.log}
	if c.NATSCA != "" {
		pem, err := os.ReadFile(c.NATSCA)
		if err != nil {
			return configErr(fmt.Errorf("cluster: nats_ca: %w", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return configErr(fmt.Errorf("cluster: nats_ca %s: no PEM certificate in it", c.NATSCA))
		}
		opts.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	node := &clusterNode{}
	if c.Embed != "" {
		if b.cfg.DataDir != "" {
			opts.StoreDir = filepath.Join(b.cfg.DataDir, "cluster")
		} else {
			dir, err := os.MkdirTemp("", "imb-cluster-")
			if err != nil {
				return fmt.Errorf("cluster: store directory: %w", err)
			}
			node.tempDir, opts.StoreDir = dir, dir
		}
	}
	jctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	e, err := cluster.Start(jctx, opts)
	if err != nil {
		if node.tempDir != "" {
			_ = os.RemoveAll(node.tempDir)
		}
		return err
	}
	node.engine = e
	node.hook = cluster.NewHook(e, b.server, cluster.HookConfig{
		Yield: func(clientID, owner string, handOver func(*mqtt.Client)) bool {
			return b.hook != nil && b.hook.Yield(clientID, owner, handOver)
		},
		Event: b.onClusterEvent,
		Query: b.answerQuery,
	})
	b.cluster = node
	return nil
}

// onClusterEvent applies an identity event another node broadcast.
func (b *Broker) onClusterEvent(ev cluster.Event) {
	if b.hook == nil {
		return
	}
	switch ev.Kind {
	case cluster.EventTokenRevoked:
		if b.cache != nil {
			b.cache.Refuse(ev.Token)
		}
		b.hook.EndSessions("", "", ev.Token, packets.ErrNotAuthorized, "token revoked (found on node "+ev.Node+")")
	case cluster.EventEnd:
		b.hook.EndSessions(ev.ClientID, ev.Subject, "", packets.ErrAdministrativeAction, ev.Reason)
	case cluster.EventRevoke:
		b.rememberSET(ev.SETID)
		b.hook.Revoke(hooks.Match{Kind: ev.MatchKind, Value: ev.MatchValue, Issuer: ev.MatchIssuer}, ev.At,
			ev.Reason+" (on node "+ev.Node+")")
	case cluster.EventClaims:
		b.rememberSET(ev.SETID)
		b.hook.UpdateClaims(hooks.Match{Kind: ev.MatchKind, Value: ev.MatchValue, Issuer: ev.MatchIssuer}, ev.Claims,
			ev.Reason+" (on node "+ev.Node+")")
	}
}

// watchCluster ends every connection of a node that has lost the engine for longer
// than lost_grace: it can no longer prove it owns their client ids, and another node
// may have taken them over.
func (b *Broker) watchCluster() {
	grace := b.cfg.Cluster.LostGrace
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var lostAt time.Time
	for {
		select {
		case <-b.stopped:
			return
		case <-tick.C:
		}
		if b.cluster.engine.Joined() {
			lostAt = time.Time{}
			continue
		}
		if lostAt.IsZero() {
			lostAt = time.Now()
			continue
		}
		if grace > 0 && time.Since(lostAt) >= grace && b.hook != nil {
			if n := b.hook.EndSessions("*", "", "", packets.ErrServerUnavailable, "this node lost the cluster"); n > 0 {
				b.log.Warn("cluster lost: connections ended", "connections", n, "after", grace)
			}
		}
	}
}

// registerClusterMetrics exports the figures of the cluster layer.
func registerClusterMetrics(reg prometheus.Registerer, n *clusterNode) {
	st := n.hook.Stats()
	counter := func(name, help string, f func() uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help,
			ConstLabels: prometheus.Labels{"node": n.engine.NodeName()}}, func() float64 { return float64(f()) }))
	}
	counter("imb_cluster_messages_out_total", "Messages this node forwarded to the other nodes.", st.Out.Load)
	counter("imb_cluster_messages_in_total", "Messages other nodes forwarded that this node delivered locally.", st.In.Load)
	counter("imb_cluster_errors_total", "Messages or events the cluster engine failed to carry or that arrived malformed.", st.Errors.Load)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imb_cluster_joined",
		Help: "1 while this node is connected to the cluster engine.", ConstLabels: prometheus.Labels{"node": n.engine.NodeName()}},
		func() float64 {
			if n.engine.Joined() {
				return 1
			}
			return 0
		}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imb_cluster_engine_rtt_seconds",
		Help: "Round trip to the cluster engine, measured at scrape time.", ConstLabels: prometheus.Labels{"node": n.engine.NodeName()}},
		func() float64 { return n.engine.RTT().Seconds() }))
}

// leave stops the cluster hook and leaves the engine.
func (n *clusterNode) leave() {
	_ = n.hook.Stop()
	n.engine.Close()
	if n.tempDir != "" {
		_ = os.RemoveAll(n.tempDir)
	}
}

var _ hooks.Cluster = (*cluster.Hook)(nil)
