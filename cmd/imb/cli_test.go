package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// runIMB runs the command line as main does.
func runIMB(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// busyPort holds a loopback port for the test and returns its address.
func busyPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

func TestVersionFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"go install imb/cmd/imb@v1.4.0", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"clean checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "false"}}}, "0123456789ab"},
		{"uncommitted changes", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, "0123456789ab+dirty"},
		{"no information", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionFromBuildInfo(&tc.bi); got != tc.want {
				t.Errorf("version %q, want %q", got, tc.want)
			}
		})
	}
}

func TestVersionCommands(t *testing.T) {
	want := "imb " + versionString() + "\n"
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		code, stdout, stderr := runIMB(args...)
		if code != 0 || stdout != want || stderr != "" {
			t.Errorf("imb %v: exit %d, stdout %q, stderr %q; want 0, %q", args, code, stdout, stderr, want)
		}
		if strings.Contains(stdout, " dev\n") {
			t.Errorf("imb %v prints the placeholder %q", args, stdout)
		}
	}
}

// TestHelpOnStdout: --help of every command goes to stdout, exits 0, and shows
// flags as the docs write them (--flag).
func TestHelpOnStdout(t *testing.T) {
	singleDash := regexp.MustCompile(`(?m)^  -[a-z][a-z-]+`)
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"serve", "--help"}, {"serve", "-h"}, {"dev", "--help"}, {"am", "--help"}, {"health", "--help"},
		{"version", "--help"}, {"policy", "--help"}, {"policy", "check", "--help"},
		{"policy", "explain", "--help"}, {"policy", "show-default", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runIMB(args...)
			if code != 0 || stderr != "" || !strings.Contains(stdout, "usage") {
				t.Fatalf("exit %d, stdout %q, stderr %q: want the help on stdout and exit 0", code, stdout, stderr)
			}
			if m := singleDash.FindString(stdout); m != "" {
				t.Errorf("help shows %q; the docs write --flag", m)
			}
		})
	}
	_, stdout, _ := runIMB("serve", "--help")
	for _, want := range []string{"  --mqtt-addr string", "  --log-level string", "  --log-format string", "  -v\n", "  --audience-any\n", "  --token-field string"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("imb serve --help lacks %q:\n%s", want, stdout)
		}
	}
	// The same logging flags on every long-running command.
	for _, cmd := range []string{"serve", "dev", "am"} {
		_, stdout, _ := runIMB(cmd, "--help")
		for _, want := range []string{"  --log-format string", "  --log-level string", "  -v\n"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("imb %s --help lacks %q", cmd, want)
			}
		}
	}
}

// TestExitCodes: 2 for configuration and usage errors, 1 for failures at run
// time, the same in every command; each with the message that says why.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badPolicy := write("bad.yaml", "rules:\n  - effect: allow\n    actions: [fly]\n    topics: [a]\n")
	goodPolicy := write("topics.yaml", "rules:\n  - {effect: allow, actions: [publish], topics: [\"things/{sub}/#\"]}\n")
	badConfig := write("imb.yaml", "issuer: http://127.0.0.1:1/am\nmqtt_adr: 127.0.0.1:0\nrevalidate_interval: soon\n")
	listConfig := write("list.yaml", "issuer: http://127.0.0.1:1/am\naudience: cloud-app\n")
	notADir := write("file", "")
	busy := busyPort(t)
	iss := []string{"--issuer", "http://127.0.0.1:1/am", "--audience", "cloud-app", "--policy", goodPolicy}
	free := []string{"--mqtt-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string // what stderr must contain
		first  bool   // ... as its first line
		stdout string
	}{
		{"no command", nil, 2, "usage: imb <command>", true, ""},
		{"unknown command", []string{"serv"}, 2, `imb: unknown command "serv"`, true, ""},
		{"serve: unknown flag", []string{"serve", "--mqtt-adr", "x"}, 2, "flag provided but not defined: -mqtt-adr", true, ""},
		{"serve: argument", []string{"serve", "extra"}, 2, `imb serve: unexpected argument "extra"`, false, ""},
		{"serve: no token validation", cat([]string{"serve"}, free), 2, "no token validation configured", false, ""},
		{"serve --check: no token validation", []string{"serve", "--check"}, 2, "no token validation configured", false, ""},
		{"serve: issuer without audience", cat([]string{"serve", "--issuer", "http://127.0.0.1:1/am"}, free), 2,
			"imb serve: issuer http://127.0.0.1:1/am is set but no audience", true, ""},
		{"serve --check: issuer without audience", []string{"serve", "--check", "--issuer", "http://127.0.0.1:1/am"}, 2,
			"set audience (--audience) to the clients whose tokens may connect, or audience_any: true (--audience-any)", false, ""},
		{"serve --check: --audience-any", []string{"serve", "--check", "--issuer", "http://127.0.0.1:1/am", "--audience-any", "--policy", goodPolicy}, 0,
			"", false, "configuration valid"},
		{"serve: bad policy", cat([]string{"serve"}, iss, []string{"--policy", badPolicy}, free), 2, badPolicy + `:3:15: unknown action "fly"`, false, ""},
		{"serve --check: bad policy", cat([]string{"serve", "--check"}, iss, []string{"--policy", badPolicy}), 2, badPolicy + `:3:15: unknown action "fly"`, false, ""},
		{"serve: MQTT port in use", cat([]string{"serve", "--mqtt-addr", busy, "--admin-addr", "127.0.0.1:0"}, iss), 2,
			"imb serve: `--mqtt-addr " + busy + "`: address already in use", true, ""},
		{"serve: admin port in use", cat([]string{"serve", "--mqtt-addr", "127.0.0.1:0", "--admin-addr", busy}, iss), 2,
			"imb serve: `--admin-addr " + busy + "`: address already in use", true, ""},
		{"serve: config errors", []string{"serve", "--config", badConfig}, 2,
			badConfig + ":2:1: unknown key \"mqtt_adr\" (did you mean \"mqtt_addr\"?)\n" +
				badConfig + ":3:22: revalidate_interval: want a duration such as 30s or 5m, not \"soon\"", true, ""},
		{"serve --check: a string for a list", []string{"serve", "--check", "--config", listConfig, "--policy", goodPolicy}, 0, "", false, "configuration valid"},
		{"serve: bad log level", cat([]string{"serve", "--log-level", "loud"}, iss, free), 2, `imb serve: log level "loud"`, true, ""},
		{"serve: unusable data directory (run time)", cat([]string{"serve", "--data", filepath.Join(notADir, "x")}, iss, free), 1,
			"imb serve: data dir:", false, ""},
		{"dev: MQTT port in use", []string{"dev", "--in-memory", "--mqtt-addr", busy, "--am-listen", "127.0.0.1:0", "--ws-addr", "", "--admin-addr", "127.0.0.1:0"}, 2,
			"imb dev: `--mqtt-addr " + busy + "`: address already in use", true, ""},
		{"dev: AM port in use", []string{"dev", "--in-memory", "--am-listen", busy, "--mqtt-addr", "127.0.0.1:0", "--ws-addr", "", "--admin-addr", "127.0.0.1:0"}, 2,
			"imb dev: `--am-listen " + busy + "`: address already in use", false, ""},
		{"dev: not loopback", []string{"dev", "--mqtt-addr", "0.0.0.0:1883"}, 2, "imb dev: `--mqtt-addr 0.0.0.0:1883` is not a loopback address", true, ""},
		{"dev: unknown flag", []string{"dev", "--bogus"}, 2, "flag provided but not defined: -bogus", true, ""},
		{"am: port in use", []string{"am", "--in-memory", "--listen", busy}, 2, "imb am: `--listen " + busy + "`: address already in use", false, ""},
		{"am: unknown flag", []string{"am", "--bogus"}, 2, "flag provided but not defined: -bogus", true, ""},
		{"am: argument", []string{"am", "extra"}, 2, `unexpected argument "extra"`, false, ""},
		{"policy: no subcommand", []string{"policy"}, 2, "usage:", true, ""},
		{"policy check: invalid", []string{"policy", "check", badPolicy}, 2, badPolicy + ":3:15:", true, ""},
		{"policy show-default: argument", []string{"policy", "show-default", "x"}, 2, `unexpected argument "x"`, false, ""},
		{"health: unknown flag", []string{"health", "--bogus"}, 2, "flag provided but not defined: -bogus", true, ""},
		{"health: nothing listening (run time)", []string{"health", "--url", "http://" + busy + "/readyz", "--timeout", "1s"}, 1, "imb health:", true, ""},
		{"version: argument", []string{"version", "x"}, 2, `unexpected argument "x"`, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runIMB(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.stderr, stderr)
			}
			if tc.first && !strings.HasPrefix(stderr, tc.stderr) {
				t.Errorf("stderr does not start with %q:\n%s", tc.stderr, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", tc.stdout, stdout)
			}
		})
	}
}

// TestExplainShapes: the first word is exactly ALLOW or DENY, then a space and
// what decided, the same shape for both; without --policy the built-in policy
// decides (this package's directory has no topics.yaml), or ./topics.yaml when
// there is one.
func TestExplainShapes(t *testing.T) {
	builtin := []struct {
		args []string
		code int
		line string // regexp of the first line
	}{
		{[]string{"--sub", "t1", "--scope", "publish", "--publish", "things/t1/telemetry/temperature"}, 0,
			`^ALLOW by builtin:topics\.yaml:\d+ \(rule thing-telemetry\)$`},
		{[]string{"--sub", "t1", "--scope", "publish", "--publish", "things/t1/firmware/v2"}, 3,
			`^DENY by builtin:topics\.yaml:\d+ \(rule no-device-firmware\)$`},
		{[]string{"--sub", "t1", "--scope", "publish", "--publish", "things/t1/telemetry/x", "--retain"}, 3,
			`^DENY by builtin:topics\.yaml:\d+ \(rule thing-telemetry\): retain not allowed$`},
		{[]string{"--sub", "t1", "--publish", "things/t2/telemetry/x"}, 3, `^DENY no rule grants it$`},
	}
	for _, tc := range builtin {
		code, stdout, stderr := runIMB(append([]string{"policy", "explain"}, tc.args...)...)
		first, _, _ := strings.Cut(stdout, "\n")
		if code != tc.code || !regexp.MustCompile(tc.line).MatchString(first) || stderr != "" {
			t.Errorf("explain %v: exit %d, first line %q, stderr %q; want %d and %s", tc.args, code, first, stderr, tc.code, tc.line)
		}
	}
	t.Chdir(t.TempDir())
	if err := os.WriteFile("topics.yaml", []byte("version: 1\nrules:\n  - name: mine\n    effect: allow\n    actions: [publish]\n    topics: [\"x/{sub}\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runIMB("policy", "explain", "--sub", "t1", "--publish", "x/t1")
	if first, _, _ := strings.Cut(stdout, "\n"); code != 0 || first != "ALLOW by topics.yaml:3 (rule mine)" {
		t.Errorf("explain with ./topics.yaml: exit %d, first line %q", code, first)
	}
}

func TestPolicyShowDefault(t *testing.T) {
	root, err := os.ReadFile("../../topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runIMB("policy", "show-default")
	if code != 0 || stdout != string(root) || stderr != "" {
		t.Errorf("imb policy show-default: exit %d, stderr %q, stdout equal to topics.yaml: %v", code, stderr, stdout == string(root))
	}
}
