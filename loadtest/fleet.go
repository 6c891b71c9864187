package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"imb/internal/issuer"
	"imb/loadtest/hist"
	"imb/loadtest/wire"
)

// The fleet scenario is the picture of a real fleet on one box: many
// things, each with its own identity and token, each subscribed to its own
// commands, a cloud application sending a command to a random share of them every
// second, and every thing publishing telemetry now and then. One process may
// hold at most 20,000 open files here, so the broker is a cluster of imb nodes
// (a thing connects to node i mod N) and the things live in several generator
// processes (children of this one, each dialling from its own loopback source
// address). The cloud application runs here, one connection per node.
//
//	go run ./loadtest fleet --things 100000 --nodes 6 --generators 6 --duration 60s

// fleetOptions are the fleet command's flags.
type fleetOptions struct {
	Things, Nodes, Generators int
	Duration, TelemetryEvery  time.Duration
	CommandShare              float64 // of the things, per second
	Concurrency               int     // connects in flight per generator
	Out                       string
}

// maxPerProcess is the most connections one process is given: the open-file
// limit here is 20,000, less headroom for the process's own files.
const maxPerProcess = 19000

func parseFleet(args []string, stderr io.Writer) (fleetOptions, error) {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o fleetOptions
	fs.IntVar(&o.Things, "things", 100000, "things, each with its own identity, token and commands subscription")
	fs.IntVar(&o.Nodes, "nodes", 6, "imb nodes (a cluster with embedded NATS JetStream); at most 19,000 things each")
	fs.IntVar(&o.Generators, "generators", 6, "load generator processes; at most 19,000 things each")
	fs.DurationVar(&o.Duration, "duration", 60*time.Second, "how long commands and telemetry run once every thing is connected")
	fs.DurationVar(&o.TelemetryEvery, "telemetry-every", 60*time.Second, "each thing publishes one QoS 1 telemetry message this often")
	fs.Float64Var(&o.CommandShare, "command-share", 0.01, "the cloud application sends a QoS 1 command to this share of the things every second")
	fs.IntVar(&o.Concurrency, "concurrency", 100, "connects in flight per generator")
	fs.StringVar(&o.Out, "out", "loadtest/out", "directory for the report and the nodes' logs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.Things < 1 || o.Nodes < 1 || o.Generators < 1:
		return o, errors.New("fleet: --things, --nodes and --generators must be at least 1")
	case (o.Things+o.Nodes-1)/o.Nodes > maxPerProcess:
		return o, fmt.Errorf("fleet: %d things on %d nodes is more than %d per node (one process may open 20,000 files here): use --nodes %d",
			o.Things, o.Nodes, maxPerProcess, (o.Things+maxPerProcess-1)/maxPerProcess)
	case (o.Things+o.Generators-1)/o.Generators > maxPerProcess:
		return o, fmt.Errorf("fleet: %d things in %d generators is more than %d per generator: use --generators %d",
			o.Things, o.Generators, maxPerProcess, (o.Things+maxPerProcess-1)/maxPerProcess)
	case o.Generators > 200:
		return o, errors.New("fleet: at most 200 generators (each dials from its own 127.0.0.x)")
	case o.Duration <= 0 || o.TelemetryEvery <= 0 || o.CommandShare < 0 || o.Concurrency < 1:
		return o, errors.New("fleet: --duration and --telemetry-every must be positive, --command-share not negative, --concurrency at least 1")
	}
	return o, nil
}

// FleetReport is what one fleet run measured.
type FleetReport struct {
	Options         fleetOptions `json:"options"`
	Started         time.Time    `json:"started"`
	LoadBefore      string       `json:"load_before"`
	LoadAfter       string       `json:"load_after"`
	Connected       int          `json:"connected"`
	Refused         int          `json:"refused"`          // CONNACK or SUBACK refusals: denied wrongly, every one
	Failed          int          `json:"failed"`           // connects that got no answer
	ConnectSeconds  float64      `json:"connect_seconds"`  // the whole fleet, first dial to last SUBACK
	NodesRSSMB      float64      `json:"nodes_rss_mb"`     // after the fleet connected, summed over the nodes
	KiBPerThing     float64      `json:"kib_per_thing"`    // nodes' RSS growth per connected thing
	ConnectCPU      float64      `json:"connect_cpu_s"`    // nodes' CPU seconds while the fleet connected
	SteadyCPU       float64      `json:"steady_cpu_s"`     // nodes' CPU seconds during the run
	Commands        int64        `json:"commands"`         // acknowledged to the cloud application
	CommandsLost    int64        `json:"commands_lost"`    // acknowledged, never received
	CommandP50ms    float64      `json:"command_p50_ms"`   // cloud publish to thing receipt
	CommandP99ms    float64      `json:"command_p99_ms"`   //
	Telemetry       int64        `json:"telemetry"`        // telemetry messages acknowledged
	TelemetryFailed int64        `json:"telemetry_failed"` // refused or unanswered
	Disconnected    int64        `json:"disconnected"`     // things whose connection ended during the run
}

// runFleet is the fleet command.
func runFleet(args []string, stdout, stderr io.Writer) int {
	o, err := parseFleet(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, err)
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute+o.Duration)
	defer cancel()
	rep, err := fleet(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "fleet: %v\n", err)
		return 1
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	name := filepath.Join(o.Out, "fleet-"+rep.Started.UTC().Format("20060102-150405")+".json")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		fmt.Fprintf(stderr, "fleet: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, fleetMarkdown(rep, args))
	fmt.Fprintf(stdout, "\nreport: %s\n", name)
	if rep.Refused > 0 || rep.Failed > 0 || rep.CommandsLost > 0 {
		return 1
	}
	return 0
}

func fleet(ctx context.Context, o fleetOptions, progress io.Writer) (*FleetReport, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	rep := &FleetReport{Options: o, Started: time.Now(), LoadBefore: loadAverage()}
	say := func(format string, a ...any) {
		fmt.Fprintf(progress, "fleet %s  "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, a...)...)
	}
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		return nil, err
	}
	defer iss.Close()
	ref, err := issuerRefOf(ctx, iss)
	if err != nil {
		return nil, err
	}
	say("minting %d tokens", o.Things)
	toks := make([]string, o.Things)
	var wg sync.WaitGroup
	for w := range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < o.Things; i += runtime.NumCPU() {
				toks[i] = iss.Mint(issuer.Claims{"sub": thingID(i), "scope": []string{"publish", "subscribe"}}, tokenTTL)
			}
		}()
	}
	wg.Wait()

	say("starting %d imb nodes", o.Nodes)
	prefix := filepath.Join(o.Out, "fleet-"+rep.Started.UTC().Format("20060102-150405"))
	proc, err := startClusterProc(ctx, ref, Options{Nodes: o.Nodes, Out: o.Out}, prefix)
	if err != nil {
		return nil, err
	}
	defer proc.stop()
	addrs := proc.addrs()
	nodesRSS := func() (rss int64, cpu float64) {
		for _, p := range proc.nodes {
			_ = p.collectGarbage()
			st, err := readProc(p.Pid())
			if err == nil {
				rss += st.RSSBytes
				cpu += st.CPUSeconds
			}
		}
		return rss, cpu
	}
	rss0, cpu0 := nodesRSS()

	// The generators: thing i belongs to generator i mod G and connects to node i mod N.
	say("starting %d generators, %d things", o.Generators, o.Things)
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	gens := make([]*generator, o.Generators)
	start := time.Now()
	for g := range gens {
		if gens[g], err = startGenerator(ctx, exe, prefix, g, o, toks, addrs); err != nil {
			for _, x := range gens[:g] {
				x.kill()
			}
			return nil, err
		}
		defer gens[g].kill()
	}
	for _, g := range gens {
		c, err := g.connected(ctx)
		if err != nil {
			return nil, err
		}
		rep.Connected += c.OK
		rep.Refused += c.Refused
		rep.Failed += c.Failed
	}
	rep.ConnectSeconds = time.Since(start).Seconds()
	rss1, cpu1 := nodesRSS()
	rep.NodesRSSMB = float64(rss1) / (1 << 20)
	rep.ConnectCPU = cpu1 - cpu0
	if rep.Connected > 0 {
		rep.KiBPerThing = float64(rss1-rss0) / 1024 / float64(rep.Connected)
	}
	say("%d connected, %d refused, %d failed in %.1f s; nodes' RSS %.0f MB (%.1f KiB per thing)",
		rep.Connected, rep.Refused, rep.Failed, rep.ConnectSeconds, rep.NodesRSSMB, rep.KiBPerThing)

	// The run: telemetry from the things, commands from the cloud application.
	for _, g := range gens {
		g.send("go")
	}
	cl, err := startCloud(ctx, addrs, func(id string) string {
		return iss.Mint(issuer.Claims{"sub": id, "scope": []string{"fleet:command"}}, tokenTTL)
	})
	if err != nil {
		return nil, err
	}
	perSecond := o.CommandShare * float64(o.Things)
	say("running %s: %.0f commands/s, telemetry every %s", o.Duration, perSecond, o.TelemetryEvery)
	cl.run(ctx, o.Things, perSecond, o.Duration)
	time.Sleep(5 * time.Second) // the last commands' way to their things
	_, cpu2 := nodesRSS()
	rep.SteadyCPU = cpu2 - cpu1
	cl.close()

	var lat hist.Histogram
	received := map[int64]bool{}
	for _, g := range gens {
		g.send("stop")
		r, err := g.result(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range r.Seqs {
			received[s] = true
		}
		for _, us := range r.LatencyUS {
			lat.Record(time.Duration(us) * time.Microsecond)
		}
		rep.Telemetry += r.TelemetryAcked
		rep.TelemetryFailed += r.TelemetryFailed
		rep.Disconnected += r.Disconnected
	}
	rep.Commands = int64(len(cl.acked))
	for _, s := range cl.acked {
		if !received[s] {
			rep.CommandsLost++
		}
	}
	rep.CommandP50ms = float64(lat.Quantile(0.50)) / 1e6
	rep.CommandP99ms = float64(lat.Quantile(0.99)) / 1e6
	rep.LoadAfter = loadAverage()
	return rep, nil
}

func fleetMarkdown(r *FleetReport, args []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## loadtest fleet\n\n`go run ./loadtest fleet %s`\n\n", strings.Join(args, " "))
	fmt.Fprintf(&b, "%s UTC; load average (1, 5, 15 min) at start and end: %s; %s.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04"), r.LoadBefore, r.LoadAfter)
	b.WriteString("| figure | value |\n|---|---:|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("things (own identity, token, commands subscription)", fmt.Sprint(r.Options.Things))
	row("imb nodes / generator processes", fmt.Sprintf("%d / %d", r.Options.Nodes, r.Options.Generators))
	row("connected and subscribed", fmt.Sprint(r.Connected))
	row("refused (denied wrongly)", fmt.Sprint(r.Refused))
	row("connects without an answer", fmt.Sprint(r.Failed))
	row("whole fleet connected in", fmt.Sprintf("%.1f s (%.0f things/s)", r.ConnectSeconds, float64(r.Connected)/r.ConnectSeconds))
	row("nodes' CPU while connecting", fmt.Sprintf("%.1f s (%.0f µs per thing, all nodes)", r.ConnectCPU, r.ConnectCPU*1e6/float64(max(r.Connected, 1))))
	row("nodes' RSS, fleet connected", fmt.Sprintf("%.0f MB (%.1f KiB per thing)", r.NodesRSSMB, r.KiBPerThing))
	row("commands acknowledged (QoS 1)", fmt.Sprint(r.Commands))
	row("commands lost (acknowledged, never received)", fmt.Sprint(r.CommandsLost))
	row("command latency p50 / p99", fmt.Sprintf("%.1f ms / %.1f ms", r.CommandP50ms, r.CommandP99ms))
	row("telemetry acknowledged / failed", fmt.Sprintf("%d / %d", r.Telemetry, r.TelemetryFailed))
	row("things disconnected during the run", fmt.Sprint(r.Disconnected))
	row("nodes' CPU during the run (and the 5 s after it)", fmt.Sprintf("%.1f s over %s", r.SteadyCPU, r.Options.Duration+5*time.Second))
	return b.String()
}

// cloud is the cloud application: one connection per node, sending QoS 1
// commands to random things.
type cloud struct {
	conns []*cloudConn
	acked []int64
}

type cloudConn struct {
	c        *wire.Conn
	mu       sync.Mutex
	inflight map[uint16]int64 // packet id → command seq
	next     uint16
	acked    []int64
	done     chan struct{}
}

// startCloud connects the cloud application to every node, each connection an
// identity of its own (imb binds a client id to its token's subject).
func startCloud(ctx context.Context, addrs []string, token func(id string) string) (*cloud, error) {
	cl := &cloud{}
	for i, a := range addrs {
		c, err := wire.Dial(ctx, a, wire.Options{})
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		id := fmt.Sprintf("lt-cloud%d", i)
		code, err := c.Connect(cctx, wire.ConnectOptions{ClientID: id, Password: token(id)})
		cancel()
		if err != nil || code != 0 {
			return nil, fmt.Errorf("cloud application on node %d: CONNACK 0x%02x %v", i+1, code, err)
		}
		cc := &cloudConn{c: c, inflight: map[uint16]int64{}, done: make(chan struct{})}
		go cc.readAcks()
		cl.conns = append(cl.conns, cc)
	}
	return cl, nil
}

func (cc *cloudConn) readAcks() {
	defer close(cc.done)
	for {
		f, err := cc.c.ReadFrame()
		if err != nil {
			return
		}
		if f.Type != wire.TypePuback {
			continue
		}
		id, code, err := wire.ParsePuback(f.Body)
		cc.mu.Lock()
		if seq, ok := cc.inflight[id]; ok {
			delete(cc.inflight, id)
			if err == nil && code < 0x80 {
				cc.acked = append(cc.acked, seq)
			}
		}
		cc.mu.Unlock()
	}
}

// run sends perSecond commands a second for d, spread over the connections, each
// to a random thing, with the send time in the payload.
func (cl *cloud) run(ctx context.Context, things int, perSecond float64, d time.Duration) {
	if perSecond <= 0 {
		time.Sleep(d)
		return
	}
	interval := time.Duration(float64(time.Second) / perSecond)
	tick := time.NewTicker(max(interval, time.Millisecond))
	defer tick.Stop()
	perTick := max(1, int(float64(time.Millisecond)/float64(interval)))
	end := time.Now().Add(d)
	var seq int64
	for time.Now().Before(end) && ctx.Err() == nil {
		<-tick.C
		for range perTick {
			seq++
			cc := cl.conns[int(seq)%len(cl.conns)]
			thing := rand.IntN(things)
			payload := strconv.FormatInt(seq, 10) + " " + strconv.FormatInt(time.Now().UnixMicro(), 10)
			cc.mu.Lock()
			cc.next++
			if cc.next == 0 {
				cc.next = 1
			}
			if _, busy := cc.inflight[cc.next]; busy { // 65,535 unanswered: skip this one
				cc.mu.Unlock()
				continue
			}
			cc.inflight[cc.next] = seq
			err := cc.c.WritePublish("things/"+thingID(thing)+"/commands/set", 1, cc.next, []byte(payload))
			if err == nil {
				err = cc.c.Flush()
			}
			cc.mu.Unlock()
		}
	}
}

func (cl *cloud) close() {
	for _, cc := range cl.conns {
		_ = cc.c.Close()
		<-cc.done
		cl.acked = append(cl.acked, cc.acked...)
	}
}

// generator is one child process holding a share of the things.
type generator struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

// genConnected is a generator's first line: how its things connected.
type genConnected struct {
	OK, Refused, Failed int
}

// genResult is a generator's last line.
type genResult struct {
	Seqs            []int64 `json:"seqs"`       // commands received
	LatencyUS       []int64 `json:"latency_us"` // their latencies
	TelemetryAcked  int64   `json:"telemetry_acked"`
	TelemetryFailed int64   `json:"telemetry_failed"`
	Disconnected    int64   `json:"disconnected"`
}

func startGenerator(ctx context.Context, exe, prefix string, g int, o fleetOptions, toks []string, addrs []string) (*generator, error) {
	file := fmt.Sprintf("%s-g%d.things", prefix, g+1)
	var b strings.Builder
	for i := g; i < o.Things; i += o.Generators {
		fmt.Fprintf(&b, "%s %s %s\n", thingID(i), addrs[i%len(addrs)], toks[i])
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "fleet-things", "--things-file", file,
		"--source", fmt.Sprintf("127.0.0.%d", 10+g), "--telemetry-every", o.TelemetryEvery.String(),
		"--concurrency", strconv.Itoa(o.Concurrency))
	cmd.Env = append(os.Environ(), roleEnv+"=fleet-things")
	logf, err := os.Create(fmt.Sprintf("%s-g%d.log", prefix, g+1))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("generator %d: %w", g+1, err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	return &generator{cmd: cmd, stdin: stdin, lines: sc}, nil
}

func (g *generator) send(line string) { _, _ = io.WriteString(g.stdin, line+"\n") }

func (g *generator) readLine(ctx context.Context, v any) error {
	done := make(chan error, 1)
	go func() {
		if !g.lines.Scan() {
			done <- fmt.Errorf("generator %d ended: %v (its log is next to the report)", g.cmd.Process.Pid, g.lines.Err())
			return
		}
		done <- json.Unmarshal(g.lines.Bytes(), v)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *generator) connected(ctx context.Context) (genConnected, error) {
	var c genConnected
	return c, g.readLine(ctx, &c)
}

func (g *generator) result(ctx context.Context) (genResult, error) {
	var r genResult
	return r, g.readLine(ctx, &r)
}

func (g *generator) kill() {
	_ = g.stdin.Close()
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
	}
}

// fleetThingsMain is a generator child: it connects the things of its file,
// each subscribed to its own commands, says how that went, and on "go" publishes
// every thing's telemetry, spread over the period, and counts the commands that
// arrive, until "stop".
func fleetThingsMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleet-things", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("things-file", "", "lines of client id, node address, token")
	source := fs.String("source", "", "source address to dial from")
	every := fs.Duration("telemetry-every", time.Minute, "each thing's telemetry period")
	conc := fs.Int("concurrency", 100, "connects in flight")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	type thing struct{ id, addr, token string }
	var things []thing
	for l := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 {
			things = append(things, thing{f[0], f[1], f[2]})
		}
	}
	src := net.ParseIP(*source)
	type fleetConn struct {
		c       *wire.Conn
		topic   string // its telemetry
		wmu     sync.Mutex
		next    uint16
		pending atomic.Int32
	}
	conns := make([]*fleetConn, len(things))
	var ok, refused, failed atomic.Int64
	var idx atomic.Int64
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(idx.Add(1)) - 1
				if i >= len(things) {
					return
				}
				t := things[i]
				cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				c, err := wire.Dial(cctx, t.addr, wire.Options{LocalAddr: src, ReadBuffer: 512, WriteBuffer: 512})
				var code byte
				if err == nil {
					code, err = c.Connect(cctx, wire.ConnectOptions{ClientID: t.id, Password: t.token})
				}
				if err == nil && code == 0 {
					var granted byte
					granted, err = c.Subscribe(cctx, "things/"+t.id+"/commands/#", 1)
					if err == nil && granted >= 0x80 {
						fmt.Fprintf(stderr, "%s: SUBACK 0x%02x\n", t.id, granted)
						refused.Add(1)
						cancel()
						_ = c.Close()
						continue
					}
				}
				cancel()
				switch {
				case err != nil:
					fmt.Fprintf(stderr, "%s: %v\n", t.id, err)
					failed.Add(1)
					if c != nil {
						_ = c.Close()
					}
				case code != 0:
					fmt.Fprintf(stderr, "%s: CONNACK 0x%02x\n", t.id, code)
					refused.Add(1)
					_ = c.Close()
				default:
					conns[i] = &fleetConn{c: c, topic: telemetryTopic(t.id)}
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	enc := json.NewEncoder(stdout)
	_ = enc.Encode(genConnected{OK: int(ok.Load()), Refused: int(refused.Load()), Failed: int(failed.Load())})

	lines := bufio.NewScanner(stdin)
	if !lines.Scan() || lines.Text() != "go" {
		return 0
	}
	var mu sync.Mutex
	var res genResult
	var telAcked, telFailed, disconnected atomic.Int64
	running := atomic.Bool{}
	running.Store(true)
	var readers sync.WaitGroup
	for _, fc := range conns {
		if fc == nil {
			continue
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				f, err := fc.c.ReadFrame()
				if err != nil {
					if running.Load() {
						disconnected.Add(1)
					}
					return
				}
				switch f.Type {
				case wire.TypePublish:
					p, err := fc.c.ParsePublish(f)
					if err != nil {
						continue
					}
					now := time.Now().UnixMicro()
					if seqS, tsS, found := strings.Cut(string(p.Payload), " "); found {
						seq, _ := strconv.ParseInt(seqS, 10, 64)
						ts, _ := strconv.ParseInt(tsS, 10, 64)
						mu.Lock()
						res.Seqs = append(res.Seqs, seq)
						res.LatencyUS = append(res.LatencyUS, now-ts)
						mu.Unlock()
					}
					if p.QoS > 0 {
						fc.wmu.Lock()
						_ = fc.c.Write(wire.AppendPuback(nil, p.ID))
						_ = fc.c.Flush()
						fc.wmu.Unlock()
					}
				case wire.TypePuback:
					_, code, err := wire.ParsePuback(f.Body)
					fc.pending.Add(-1)
					if err == nil && code < 0x80 {
						telAcked.Add(1)
					} else {
						telFailed.Add(1)
					}
				}
			}
		}()
	}
	// Telemetry: one thing after another, spread evenly over the period.
	stop := make(chan struct{})
	go func() {
		live := []*fleetConn{}
		for _, fc := range conns {
			if fc != nil {
				live = append(live, fc)
			}
		}
		if len(live) == 0 {
			return
		}
		tick := time.NewTicker(max(*every/time.Duration(len(live)), 100*time.Microsecond))
		defer tick.Stop()
		payload := []byte(`{"t":21.5}`)
		for i := 0; ; i = (i + 1) % len(live) {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			fc := live[i]
			fc.wmu.Lock()
			fc.next++
			if fc.next == 0 {
				fc.next = 1
			}
			fc.pending.Add(1)
			err := fc.c.WritePublish(fc.topic, 1, fc.next, payload)
			if err == nil {
				err = fc.c.Flush()
			}
			fc.wmu.Unlock()
			if err != nil {
				telFailed.Add(1)
			}
		}
	}()
	for lines.Scan() && lines.Text() != "stop" {
	}
	close(stop)
	// What was sent before the stop gets its answer first.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		waiting := false
		for _, fc := range conns {
			if fc != nil && fc.pending.Load() > 0 {
				waiting = true
				break
			}
		}
		if !waiting {
			break
		}
	}
	running.Store(false)
	for _, fc := range conns {
		if fc != nil {
			telFailed.Add(int64(max(fc.pending.Load(), 0)))
			_ = fc.c.Close()
		}
	}
	readers.Wait()
	res.TelemetryAcked, res.TelemetryFailed, res.Disconnected = telAcked.Load(), telFailed.Load(), disconnected.Load()
	_ = enc.Encode(res)
	return 0
}
