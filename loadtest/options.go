package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"imb/loadtest/wire"
)

// Scenario names.
const (
	scenarioP2P     = "p2p"
	scenarioFanout  = "fanout"
	scenarioFanin   = "fanin"
	scenarioConnect = "connect"
	scenarioMemory  = "memory"
	scenarioNoisy   = "noisy-neighbour"
)

var scenarios = []string{scenarioP2P, scenarioFanout, scenarioFanin, scenarioConnect, scenarioMemory, scenarioNoisy}

// Options are the flags shared by compare and run.
type Options struct {
	Scenario    string        `json:"scenario"`
	Clients     int           `json:"clients"`     // p2p pairs, fan-out subscribers, fan-in publishers, connect/memory things
	Subscribers int           `json:"subscribers"` // fan-in: members of the shared subscription
	QoS         int           `json:"qos"`
	Payload     int           `json:"payload_bytes"`
	Duration    time.Duration `json:"duration"`
	Messages    int           `json:"messages_per_publisher"` // 0: until Duration
	Rate        float64       `json:"rate_per_publisher"`     // messages/s per publisher; 0: as fast as flow control allows
	Inflight    int           `json:"inflight"`               // QoS 1 window per publisher
	Concurrency int           `json:"concurrency"`            // connects in flight at once (connect, memory, setup)
	Drain       time.Duration `json:"drain"`                  // how long to wait for stragglers after publishing stops
	Settle      time.Duration `json:"settle"`                 // memory: quiet time before each RSS reading
	FloodFactor float64       `json:"flood_factor,omitempty"` // noisy-neighbour: the flooder publishes at this multiple of its limit

	IntrospectLatency   time.Duration `json:"introspect_latency"`
	IntrospectErrorRate float64       `json:"introspect_error_rate"`
	IntrospectMaxConns  int           `json:"introspect_max_conns,omitempty"`

	// MQTT is the protocol version the clients speak: "5" or "3.1.1". A target
	// that speaks only one version is loaded in that one (see mqttVersion).
	MQTT string `json:"mqtt"`

	Targets []string `json:"targets"`
	// Nodes > 1: compare runs imb-jwt as a cluster of that many nodes, once with
	// every subscriber on its publisher's node and once with none (cluster.go).
	Nodes int `json:"nodes,omitempty"`
	// clusterArgs are the cluster flags of one node's child (set per node).
	clusterArgs []string
	Repeat      int    `json:"repeat"`
	Policy      string `json:"policy"` // empty: the harness's own policy (the default topics.yaml's thing and fleet rules)
	Out         string `json:"out"`
	CPUProfile  bool   `json:"cpu_profile"`
	HeapProfile bool   `json:"heap_profile,omitempty"`
	// heapPrefix is where one imb child writes its heap profiles (set per run).
	heapPrefix  string
	AllowRemote bool `json:"allow_remote"`
	Quiet       bool `json:"-"`

	// run only
	URL        string `json:"url,omitempty"`
	Auth       string `json:"auth,omitempty"`
	IssuerAddr string `json:"issuer_addr,omitempty"`
}

// MQTT versions of --mqtt.
const (
	mqtt5   = "5"
	mqtt311 = "3.1.1"
)

// mqttVersion is the protocol level the clients use against target: --mqtt,
// unless the target speaks only 3.1.1 (RabbitMQ 3.10's MQTT plugin).
func (o Options) mqttVersion(target string) byte {
	if o.MQTT == mqtt311 || target == targetRabbitMQ {
		return wire.V311
	}
	return wire.V5
}

// listFlag is a comma-separated list flag.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.v = append(*l.v, p)
		}
	}
	return nil
}

// parseOptions reads the flags of compare (run=false) or run (run=true).
func parseOptions(name string, args []string, stderr io.Writer, run bool) (Options, error) {
	o := Options{Targets: slices.Clone(defaultTargets)}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Scenario, "scenario", scenarioP2P, "scenario: "+strings.Join(scenarios, "|"))
	fs.IntVar(&o.Clients, "clients", 0, "p2p: publisher/subscriber pairs; fanout: subscribers; fanin: publishers; connect, memory: things; noisy-neighbour: well-behaved things (default 10, 50, 50, 1000, 1000, 1000)")
	fs.IntVar(&o.Clients, "things", 0, "same as --clients")
	fs.IntVar(&o.Subscribers, "subscribers", 1, "fanin: members of the shared subscription")
	fs.IntVar(&o.QoS, "qos", 1, "QoS of publishes and subscriptions: 0 or 1")
	fs.IntVar(&o.Payload, "payload", 64, "payload bytes (at least 8: the send timestamp)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long publishers publish")
	fs.IntVar(&o.Messages, "messages", 0, "messages per publisher (0: until --duration; publishing stops at whichever comes first)")
	fs.Float64Var(&o.Rate, "rate", 0, "messages/s per publisher (0: as fast as flow control allows; noisy-neighbour: 1)")
	fs.IntVar(&o.Inflight, "inflight", 64, "QoS 1: unacknowledged publishes per publisher")
	fs.IntVar(&o.Concurrency, "concurrency", 200, "connects in flight at once (connect, memory, and setup of the others)")
	fs.DurationVar(&o.Drain, "drain", 3*time.Second, "after publishing: wait this long without progress before counting the rest as dropped")
	fs.DurationVar(&o.Settle, "settle", 2*time.Second, "memory: how long the broker is left alone before each RSS reading")
	fs.Float64Var(&o.FloodFactor, "flood-factor", 100, "noisy-neighbour: the flooder publishes at this multiple of its limit (20 messages/s)")
	fs.DurationVar(&o.IntrospectLatency, "introspect-latency", 0, "latency the token issuer adds to every introspection request")
	fs.Float64Var(&o.IntrospectErrorRate, "introspect-error-rate", 0, "fraction of introspection requests the issuer answers with HTTP 500")
	fs.IntVar(&o.IntrospectMaxConns, "introspect-max-conns", 0, "imb introspection modes: connections to the endpoint (0: imb's default)")
	fs.StringVar(&o.MQTT, "mqtt", mqtt5, "MQTT version the clients speak: 5 or 3.1.1 (a target that speaks only 3.1.1, such as rabbitmq-oauth2, always gets 3.1.1)")
	fs.Var(listFlag{&o.Targets}, "targets", "comma-separated targets: "+strings.Join(allTargets, ","))
	fs.IntVar(&o.Nodes, "nodes", 1, "p2p, fanout: run imb-jwt as a cluster of N nodes (embedded NATS JetStream), clients spread over them, once same-node and once cross-node (--targets is then ignored)")
	fs.IntVar(&o.Repeat, "repeat", 1, "runs per target (interleaved); figures are medians")
	fs.StringVar(&o.Policy, "policy", "", "topics.yaml for the imb targets (default: the harness writes one with the default policy's thing and fleet rules)")
	fs.StringVar(&o.Out, "out", "loadtest/out", "directory for the JSON, Markdown and HTML reports")
	fs.BoolVar(&o.CPUProfile, "cpuprofile", false, "write a CPU profile of every imb broker run into --out")
	fs.BoolVar(&o.HeapProfile, "heapprofile", false, "write a heap profile of every imb broker into --out at each settled memory reading (memory scenario: before and after the things connect)")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow a target that is not on a loopback address")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress lines")
	if run {
		fs.StringVar(&o.URL, "url", "", "broker to load: mqtt://HOST:PORT")
		fs.StringVar(&o.Auth, "auth", "none", "none (anonymous) or issuer (tokens from an in-process issuer the broker must trust)")
		fs.StringVar(&o.IssuerAddr, "issuer-addr", "127.0.0.1:0", "--auth issuer: where the issuer listens (a fixed port lets the broker be configured first: imb serve --issuer http://ADDR)")
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, o.check(run)
}

// check fills scenario defaults and refuses what cannot be measured.
func (o *Options) check(run bool) error {
	if !slices.Contains(scenarios, o.Scenario) {
		return fmt.Errorf("--scenario %q: want one of %s", o.Scenario, strings.Join(scenarios, ", "))
	}
	var errs []error
	if o.Clients == 0 {
		o.Clients = map[string]int{scenarioP2P: 10, scenarioFanout: 50, scenarioFanin: 50, scenarioConnect: 1000, scenarioMemory: 1000, scenarioNoisy: 1000}[o.Scenario]
	}
	if o.Scenario == scenarioNoisy && o.Rate == 0 {
		o.Rate = 1 // "a normal rate": a reading a second per thing
	}
	if o.FloodFactor <= 0 {
		errs = append(errs, fmt.Errorf("--flood-factor %g: want more than 0", o.FloodFactor))
	}
	if o.Clients < 1 {
		errs = append(errs, errors.New("--clients must be at least 1"))
	}
	if o.Subscribers < 1 {
		errs = append(errs, errors.New("--subscribers must be at least 1"))
	}
	if o.QoS != 0 && o.QoS != 1 {
		errs = append(errs, fmt.Errorf("--qos %d: want 0 or 1", o.QoS))
	}
	if o.Payload < 8 || o.Payload > 256<<10 {
		errs = append(errs, fmt.Errorf("--payload %d: want 8 to 262144 bytes", o.Payload))
	}
	if o.Duration <= 0 || o.Duration > time.Hour {
		errs = append(errs, fmt.Errorf("--duration %s: want more than 0 and at most 1h", o.Duration))
	}
	if o.Inflight < 1 || o.Inflight > 65535 {
		errs = append(errs, fmt.Errorf("--inflight %d: want 1 to 65535", o.Inflight))
	}
	if o.Concurrency < 1 {
		errs = append(errs, errors.New("--concurrency must be at least 1"))
	}
	if o.Repeat < 1 || o.Repeat > 20 {
		errs = append(errs, fmt.Errorf("--repeat %d: want 1 to 20", o.Repeat))
	}
	if o.IntrospectErrorRate < 0 || o.IntrospectErrorRate > 1 {
		errs = append(errs, fmt.Errorf("--introspect-error-rate %g: want 0 to 1", o.IntrospectErrorRate))
	}
	if o.MQTT != mqtt5 && o.MQTT != mqtt311 {
		errs = append(errs, fmt.Errorf("--mqtt %q: want 5 or 3.1.1", o.MQTT))
	}
	if o.Rate < 0 {
		errs = append(errs, errors.New("--rate must not be negative"))
	}
	if err := o.checkCluster(); err != nil {
		errs = append(errs, err)
	}
	if !run {
		if len(o.Targets) == 0 {
			errs = append(errs, errors.New("--targets: empty"))
		}
		for _, t := range o.Targets {
			if !slices.Contains(allTargets, t) {
				errs = append(errs, fmt.Errorf("--targets: unknown target %q (want %s)", t, strings.Join(allTargets, ", ")))
			}
		}
	} else if err := o.checkURL(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkURL accepts mqtt://HOST:PORT on a loopback address, or anywhere with
// --allow-remote.
func (o *Options) checkURL() error {
	addr, ok := strings.CutPrefix(o.URL, "mqtt://")
	if !ok {
		return fmt.Errorf("--url %q: want mqtt://HOST:PORT", o.URL)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--url %q: %w", o.URL, err)
	}
	if o.Auth != "none" && o.Auth != "issuer" {
		return fmt.Errorf("--auth %q: want none or issuer", o.Auth)
	}
	if o.AllowRemote {
		return nil
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--url %s is not a loopback address: pass --allow-remote to load another machine", o.URL)
	}
	return nil
}
