package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = ".."

// imbCLI is the imb binary built from ../cmd/imb, and the flag sets its
// subcommands print with --help: the deployment files are checked against them.
type imbCLI struct {
	bin   string
	flags map[string]flagSet // by subcommand
}

// flagSet maps a flag name to whether it takes a value, and keeps the defaults
// the help text shows.
type flagSet struct {
	takesValue map[string]bool
	defaults   map[string]string
}

// buildIMB compiles the imb command into dir and reads the flags of the
// subcommands deployment uses.
func buildIMB(dir string) (*imbCLI, error) {
	bin := filepath.Join(dir, "imb")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/imb")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/imb: %w\n%s", err, out)
	}
	c := &imbCLI{bin: bin, flags: map[string]flagSet{}}
	for _, sub := range []string{"serve", "am", "health"} {
		out, err := exec.CommandContext(ctx, bin, sub, "--help").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("imb %s --help: %w\n%s", sub, err, out)
		}
		fs := parseHelp(string(out))
		if len(fs.takesValue) == 0 {
			return nil, fmt.Errorf("imb %s --help lists no flags:\n%s", sub, out)
		}
		c.flags[sub] = fs
	}
	return c, nil
}

// helpLine matches a flag line of imb's help: "  --name type" (or Go's "  -name type") or
// "  -name" for a boolean, the usage following on the same or the next line.
var helpLine = regexp.MustCompile(`^  --?([A-Za-z0-9][A-Za-z0-9_.-]*)(?: (\S+))?(?:\t|$)`)

var helpDefault = regexp.MustCompile(`\(default "?([^")]*)"?\)\s*$`)

// parseHelp reads the flags out of a flag.PrintDefaults listing.
func parseHelp(help string) flagSet {
	fs := flagSet{takesValue: map[string]bool{}, defaults: map[string]string{}}
	var last string
	for line := range strings.SplitSeq(help, "\n") {
		if m := helpLine.FindStringSubmatch(line); m != nil {
			last = m[1]
			fs.takesValue[last] = m[2] != ""
		}
		if last != "" {
			if m := helpDefault.FindStringSubmatch(line); m != nil {
				fs.defaults[last] = m[1]
			}
		}
	}
	return fs
}

// arg is one flag of a command line.
type arg struct {
	name, value string
	hasValue    bool
}

// parseArgs splits a subcommand's arguments into flags the way Go's flag package
// reads them (-f, --f, -f=v, --f v), refusing flags the subcommand does not have.
func parseArgs(fs flagSet, args []string) ([]arg, error) {
	var out []arg
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return nil, fmt.Errorf("argument %q: the subcommands take flags only", a)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		value, hasValue := "", false
		if n, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = n, v, true
		}
		takes, ok := fs.takesValue[name]
		if !ok {
			return nil, fmt.Errorf("flag --%s does not exist", name)
		}
		if takes && !hasValue {
			if i+1 == len(args) {
				return nil, fmt.Errorf("flag --%s needs a value", name)
			}
			i++
			value, hasValue = args[i], true
		}
		out = append(out, arg{name: name, value: value, hasValue: hasValue})
	}
	return out, nil
}

// value returns the last value given for name (Go's flag package keeps the last).
func value(args []arg, name string) (string, bool) {
	v, found := "", false
	for _, a := range args {
		if a.name == name {
			v, found = a.value, true
		}
	}
	return v, found
}

// effective is value, or the flag's default from the help text.
func effective(fs flagSet, args []arg, name string) string {
	if v, ok := value(args, name); ok {
		return v
	}
	return fs.defaults[name]
}

// joinArgs turns parsed flags back into a command line.
func joinArgs(args []arg) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if a.hasValue {
			out = append(out, "--"+a.name+"="+a.value)
		} else {
			out = append(out, "--"+a.name)
		}
	}
	return out
}

// port is the port of a host:port address or of an http URL.
func port(addr string) (int, error) {
	if u, err := url.Parse(addr); err == nil && u.Scheme != "" && u.Host != "" {
		addr = u.Host
		if u.Port() == "" {
			addr += ":80"
		}
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// process is a running imb subcommand whose stdout lines can be waited on.
type process struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *lockedBuffer
	done   chan struct{}
}

// lockedBuffer collects a process's stderr for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs the imb binary with args and env (added to this process's
// environment), and stops it with SIGTERM when the test ends.
func (c *imbCLI) start(t *testing.T, env map[string]string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, lines: make(chan string, 64), stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start imb %v: %v", args, err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// scan reads stdout lines into match until it returns true, failing the test
// when the process exits first or 20 s pass; what names the awaited output.
func (p *process) scan(t *testing.T, what string, match func(line string) bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				<-p.done
				t.Fatalf("imb %v exited (%v) before printing %s; stderr:\n%s",
					p.cmd.Args[1:], p.cmd.ProcessState, what, p.stderr)
			}
			if match(line) {
				return
			}
		case <-deadline:
			t.Fatalf("imb %v printed no %s within 20s; stderr:\n%s", p.cmd.Args[1:], what, p.stderr)
		}
	}
}

// waitLine waits for a stdout line starting with prefix and returns the rest.
func (p *process) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	var rest string
	p.scan(t, strconv.Quote(prefix), func(line string) bool {
		r, found := strings.CutPrefix(line, prefix)
		rest = strings.TrimSpace(r)
		return found
	})
	return rest
}

// waitListening waits for the "imb: NAME listening on ADDR" line of each name
// (printed in no particular order) and returns the addresses by name.
func (p *process) waitListening(t *testing.T, names ...string) map[string]string {
	t.Helper()
	addrs := map[string]string{}
	p.scan(t, fmt.Sprintf("listening lines for %v", names), func(line string) bool {
		var name, addr string
		if _, err := fmt.Sscanf(line, "imb: %s listening on %s", &name, &addr); err == nil && slices.Contains(names, name) {
			addrs[name] = addr
		}
		return len(addrs) == len(names)
	})
	return addrs
}

// waitHealthy runs a health check command until it exits 0, for at most 30 s
// (the broker is ready once it has fetched the identity provider's keys).
func (c *imbCLI) waitHealthy(t *testing.T, args []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, c.bin, args...).CombinedOutput()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health check imb %v still failing after 30s: %v\n%s", args, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
