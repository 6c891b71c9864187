package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"imb/internal/issuer"
)

// targetURL is the target name of a broker given by --url.
const targetURL = "url"

// runURL is the run subcommand: one scenario against a broker the harness did not
// start. Broker RSS and CPU are not available (no process to read), and the memory
// scenario is refused.
func runURL(args []string, stdout, stderr io.Writer) int {
	return command("run", args, true, stdout, stderr, func(ctx context.Context, o Options, cmd string, progress io.Writer) (*Report, error) {
		return runAgainstURL(ctx, o, cmd, progress, stderr)
	})
}

// runAgainstURL runs o.Repeat times against o.URL. With --auth issuer, things
// present ES256 JWTs from an in-process issuer whose URL is printed: the broker
// must trust it (imb serve --issuer URL).
func runAgainstURL(ctx context.Context, o Options, command string, progress, stderr io.Writer) (*Report, error) {
	if o.Scenario == scenarioMemory {
		return nil, errors.New("the memory scenario reads the broker's RSS from /proc: use compare")
	}
	rep := &Report{Scenario: o.Scenario, Command: command, Started: time.Now().UTC(), Options: o, Host: hostInfo()}
	var toks map[string]string
	var upstream func() int64
	if o.Auth == "issuer" {
		iss, err := issuer.Start(issuer.Config{Addr: o.IssuerAddr, Latency: o.IntrospectLatency, ErrorRate: o.IntrospectErrorRate})
		if err != nil {
			return nil, err
		}
		defer iss.Close()
		fmt.Fprintf(stderr, "loadtest: token issuer at %s (introspection %s, client %s)\n", iss.URL(), iss.IntrospectURL(), iss.ClientID())
		things, apps := identityCounts(o)
		toks = mintTokens(iss, things, apps).jwt
		upstream = iss.IntrospectCalls
	}
	base := time.Now()
	for r := 1; r <= o.Repeat; r++ {
		e := &runEnv{target: targetURL, addr: strings.TrimPrefix(o.URL, "mqtt://"), tokens: toks, o: o, errs: &errorCounts{},
			upstream: upstream, progress: progress, label: fmt.Sprintf("%s %d/%d", o.URL, r, o.Repeat), base: base}
		run, err := runScenario(ctx, e)
		run.Target, run.Repeat, run.Errors = targetURL, r, e.errs.snapshot()
		if err != nil {
			run.Failure = err.Error()
		}
		rep.Runs = append(rep.Runs, run)
	}
	rep.Host.LoadAvg = append(rep.Host.LoadAvg, loadAverage())
	rep.Metrics = metricsFor(o.Scenario)
	rep.Summaries = summarize(rep.Runs, []string{targetURL}, "")
	return rep, nil
}
