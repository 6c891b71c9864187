// Package examples_test runs the built example programs as a user does: the thermostat and the cloud
// application as separate processes against imb and amdev, stopped with SIGINT.
package examples_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"imb/examples/internal/examplestest"
)

// buildExamples builds the named example packages into a temporary directory, with -race when the
// test itself runs with it.
func buildExamples(t *testing.T, pkgs ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceBuild {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, append(args, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// process is an example binary running in the background.
type process struct {
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	out   strings.Builder
	done  chan struct{} // closed when the process has exited; err is then its status
	err   error
}

func start(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), lines: make(chan string, 4096), done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	p.cmd.Stderr = &stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-copied
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill() // only this test's own child
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", filepath.Base(bin), p.output(), stderr.String())
		}
	})
	return p
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *process) await(t *testing.T, re *regexp.Regexp) {
	t.Helper()
	timer := time.NewTimer(examplestest.WaitLong)
	defer timer.Stop()
	for {
		select {
		case line := <-p.lines:
			if re.MatchString(line) {
				return
			}
		case <-timer.C:
			t.Fatalf("no line matching %s within %s", re, examplestest.WaitLong)
		}
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and waits for the exit status.
func (p *process) interrupt(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(examplestest.WaitLong):
		t.Fatal("no exit within WaitLong of SIGINT")
		return nil
	}
}

func TestThermostatAndCloudApp(t *testing.T) {
	bin := buildExamples(t, "imb/examples/thing/thermostat", "imb/examples/cloud-app")
	env := examplestest.Start(t, examplestest.Options{Broker: true})

	cloud := start(t, filepath.Join(bin, "cloud-app"), "-url", env.URL(), "-broker", env.BrokerAddr(),
		"-thing", "thermostat-e2e", "-command", `{"setpoint":24}`)
	cloud.await(t, regexp.MustCompile(`^Subscribing to .*\.\.\. Done$`))
	thermostat := start(t, filepath.Join(bin, "thermostat"), "-url", env.URL(), "-broker", env.BrokerAddr(),
		"-name", "thermostat-e2e", "-interval", "200ms", "-mqtt311")
	thermostat.await(t, regexp.MustCompile(`^Command: set-point 24\.0$`))
	cloud.await(t, regexp.MustCompile(`^things/thermostat-e2e/state \{"setpoint":24,"heating":true\}$`))

	for name, p := range map[string]*process{"thermostat": thermostat, "cloud-app": cloud} {
		if err := p.interrupt(t); err != nil {
			t.Errorf("%s after SIGINT: %v, want exit status 0", name, err)
		}
	}
	if out := thermostat.output(); !regexp.MustCompile(`(?m)^Stopped after \d+ messages$`).MatchString(out) {
		t.Errorf("thermostat did not report its stop:\n%s", out)
	}
	if !strings.Contains(cloud.output(), "Sending {\"setpoint\":24} to things/thermostat-e2e/commands/setpoint... Done\n") {
		t.Errorf("cloud-app did not report the command:\n%s", cloud.output())
	}

	// A bad command line exits with status 2, as flag errors do.
	err := exec.Command(filepath.Join(bin, "thermostat"), "-interval", "0").Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("thermostat -interval 0: %v, want exit status 2", err)
	}
}
