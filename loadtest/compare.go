package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"imb/internal/issuer"
	"imb/loadtest/wire"
)

// runCompare is the compare subcommand.
func runCompare(args []string, stdout, stderr io.Writer) int {
	return command("compare", args, false, stdout, stderr, func(ctx context.Context, o Options, cmd string, progress io.Writer) (*Report, error) {
		return compare(ctx, o, cmd, progress)
	})
}

// command is the frame of compare and run: flags, interrupt handling, the
// reports, the summary on stdout, and the exit status (1 when a run failed).
func command(name string, args []string, url bool, stdout, stderr io.Writer,
	do func(ctx context.Context, o Options, cmd string, progress io.Writer) (*Report, error)) int {
	o, err := parseOptions(name, args, stderr, url)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "loadtest %s: %v\n", name, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer = stderr
	if o.Quiet {
		progress = nil
	}
	rep, err := do(ctx, o, strings.Join(append([]string{"go run ./loadtest " + name}, args...), " "), progress)
	if err == nil {
		err = os.MkdirAll(o.Out, 0o755)
	}
	var paths []string
	if err == nil {
		paths, err = writeReports(rep, o.Out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest %s: %v\n", name, err)
		return 1
	}
	fmt.Fprint(stdout, markdown(rep))
	fmt.Fprintf(stdout, "\nreports: %s\n", strings.Join(paths, " "))
	for _, s := range rep.Summaries {
		if s.Failed > 0 {
			return 1
		}
	}
	return 0
}

// compare runs the scenario against every target o.Repeat times, interleaving the
// targets so that a disturbance of the shared machine hits them alike.
func compare(ctx context.Context, o Options, command string, progress io.Writer) (*Report, error) {
	rep := &Report{Scenario: o.Scenario, Command: command, Started: time.Now().UTC(), Options: o, Host: hostInfo()}
	targets := slices.Clone(o.Targets)
	if slices.Contains(targets, targetMosquitto) && rep.Host.Mosquitto == "" {
		targets = slices.DeleteFunc(targets, func(t string) bool { return t == targetMosquitto })
		rep.Notes = append(rep.Notes, "mosquitto skipped: "+mosquittoPath+" is not installed (apt-get install -y mosquitto)")
	}
	if slices.Contains(targets, targetRabbitMQ) && rep.Host.RabbitMQ == "" {
		targets = slices.DeleteFunc(targets, func(t string) bool { return t == targetRabbitMQ })
		rep.Notes = append(rep.Notes, "rabbitmq-oauth2 skipped: "+rabbitmqServer+" is not installed (apt-get install -y rabbitmq-server)")
	}
	if !slices.Contains(targets, targetBaseline) && o.Nodes <= 1 {
		rep.Notes = append(rep.Notes, "no baseline target: ratios are not computed")
	}
	if o.Scenario == scenarioMemory {
		if err := checkFDs(o.Clients); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	iss, err := issuer.Start(issuer.Config{Latency: o.IntrospectLatency, ErrorRate: o.IntrospectErrorRate})
	if err != nil {
		return nil, err
	}
	defer iss.Close()
	// One signing key for the whole run, read back from the JWKS as any target
	// would: imb children fetch the JWKS themselves, RabbitMQ gets it as a file.
	ref, err := issuerRefOf(ctx, iss)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if v := o.mqttVersion(t); v == wire.V311 && o.MQTT != mqtt311 {
			rep.Notes = append(rep.Notes, t+" speaks MQTT 3.1.1 only: its clients used 3.1.1, the others 5 (--mqtt 3.1.1 for the same protocol everywhere)")
		}
	}
	things, apps := identityCounts(o)
	toks := mintTokens(iss, things, apps)
	if o.Scenario == scenarioConnect {
		if rep.CryptoFloor, err = es256Floor(time.Second); err != nil {
			return nil, err
		}
	}
	baseline := targetBaseline
	if o.Nodes > 1 {
		targets, baseline = clusterPlacements, clusterSame
		rep.Notes = append(rep.Notes, fmt.Sprintf("cluster of %d imb-jwt nodes (embedded NATS JetStream); CPU and memory are the sums over the nodes; ratios are to the same-node placement", o.Nodes))
	}
	stamp := rep.Started.Format("20060102-150405")
	base := time.Now()
	for r := 1; r <= o.Repeat; r++ {
		for _, t := range targets {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			prefix := filepath.Join(o.Out, fmt.Sprintf("%s-%s-%s-r%d", o.Scenario, stamp, t, r))
			var run Run
			if o.Nodes > 1 {
				run = compareCluster(ctx, o, t, r, ref, toks.forTarget(targetJWT), prefix, base, progress)
			} else {
				run = compareOne(ctx, o, t, r, ref, toks.forTarget(t), iss.IntrospectCalls, prefix, base, progress)
			}
			if run.Failure != "" && progress != nil {
				fmt.Fprintf(progress, "[%s %d/%d] FAILED: %s\n", t, r, o.Repeat, run.Failure)
			}
			rep.Runs = append(rep.Runs, run)
		}
	}
	rep.Host.LoadAvg = append(rep.Host.LoadAvg, loadAverage())
	rep.Metrics = metricsFor(o.Scenario)
	rep.Summaries = summarize(rep.Runs, targets, baseline)
	return rep, nil
}

// compareOne starts one target, runs the scenario, and stops the target. A
// failure is recorded in the run, not hidden.
func compareOne(ctx context.Context, o Options, target string, repeat int, ref issuerRef, toks map[string]string,
	upstream func() int64, prefix string, base time.Time, progress io.Writer) Run {
	profile := ""
	if _, imb := targetModes[target]; o.CPUProfile && imb { // only imb children write Go profiles
		profile = prefix + ".cpu.pprof"
	}
	proc, err := startBroker(ctx, target, ref, o, prefix+".log", profile)
	if err != nil {
		return Run{Target: target, Repeat: repeat, Started: time.Now(), Failure: err.Error()}
	}
	e := &runEnv{target: target, addr: proc.addr, tokens: toks, o: o, proc: proc, errs: &errorCounts{},
		upstream: upstream, progress: progress, label: fmt.Sprintf("%s %d/%d", target, repeat, o.Repeat), base: base}
	run, err := runScenario(ctx, e)
	proc.stop()
	run.Target, run.Repeat, run.Profile = target, repeat, profile
	run.Errors = e.errs.snapshot()
	if err != nil {
		run.Failure = err.Error()
	}
	return run
}

// runScenario dispatches on the scenario.
func runScenario(ctx context.Context, e *runEnv) (Run, error) {
	switch e.o.Scenario {
	case scenarioConnect:
		return runConnect(ctx, e)
	case scenarioMemory:
		return runMemory(ctx, e)
	case scenarioNoisy:
		return runNoisy(ctx, e)
	default:
		return runTraffic(ctx, e)
	}
}

// hostInfo describes this machine.
func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		h.NoFile = lim.Cur
	}
	h.RabbitMQ = rabbitmqVersion()
	h.LoadAvg = []string{loadAverage()}
	if _, err := os.Stat(mosquittoPath); err == nil {
		// mosquitto -h prints its version on the first line and exits 3.
		out, _ := exec.Command(mosquittoPath, "-h").Output()
		first, _, _ := strings.Cut(string(out), "\n")
		h.Mosquitto = strings.TrimSpace(first)
		if h.Mosquitto == "" {
			h.Mosquitto = "installed"
		}
	}
	return h
}

// loadAverage is the first three fields of /proc/loadavg ("" when unreadable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// writeReports writes the JSON, Markdown and HTML reports and returns their paths.
func writeReports(rep *Report, dir string) ([]string, error) {
	name := filepath.Join(dir, fmt.Sprintf("%s-%s", rep.Scenario, rep.Started.Format("20060102-150405")))
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	files := []struct {
		path string
		data []byte
	}{
		{name + ".json", js},
		{name + ".md", []byte(markdown(rep))},
		{name + ".html", []byte(htmlReport(rep))},
	}
	var paths []string
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("write report: %w", err)
		}
		paths = append(paths, f.path)
	}
	return paths, nil
}
