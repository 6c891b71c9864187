package examplestest

import (
	"bufio"
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"imb/examples/internal/cli"
)

// Run runs an example to its end and returns what it printed on stdout and its error.
func Run(t testing.TB, run cli.RunFunc, args ...string) (string, error) {
	t.Helper()
	p := Launch(t, run, args...)
	return p.Wait(t)
}

// Program is an example running in the background; its stdout is read line by line.
type Program struct {
	cancel context.CancelFunc
	lines  chan string
	done   chan struct{}
	err    error

	mu     sync.Mutex
	output strings.Builder
	stderr strings.Builder
}

// Launch runs an example in the background until it ends, Stop is called or the test ends.
func Launch(t testing.TB, run cli.RunFunc, args ...string) *Program {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	p := &Program{cancel: cancel, lines: make(chan string, 4096), done: make(chan struct{})}
	r, w := io.Pipe()
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.output.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
	}()
	go func() {
		defer close(p.done)
		p.err = run(ctx, args, w, lockedWriter{p})
		_ = w.Close()
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("stdout of %v:\n%s\nstderr:\n%s", args, p.Output(), p.Stderr())
		}
	})
	return p
}

type lockedWriter struct{ p *Program }

func (l lockedWriter) Write(b []byte) (int, error) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	return l.p.stderr.Write(b)
}

// Stop cancels the example's context, as SIGINT does.
func (p *Program) Stop() { p.cancel() }

// Wait waits for the example to end and returns its stdout and error.
func (p *Program) Wait(t testing.TB) (string, error) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("example did not end")
	}
	for range p.lines { // the reader has seen everything once the pipe is closed
	}
	return p.Output(), p.err
}

// Output is everything printed on stdout so far.
func (p *Program) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// Stderr is everything printed on stderr so far.
func (p *Program) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Await reads lines until one matches re and returns its submatches; it fails the test after WaitLong
// or when the example ends first.
func (p *Program) Await(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	timer := time.NewTimer(WaitLong)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("example ended (%v) before printing a line matching %s", p.err, re)
			}
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-timer.C:
			t.Fatalf("no line matching %s within %s", re, WaitLong)
		}
	}
}
