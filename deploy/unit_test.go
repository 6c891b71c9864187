package deploy

import (
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const unitFile = "deploy/imb.service"

// unit is a systemd unit file: directives by section, repeated ones in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T) unit {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, unitFile))
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not KEY=VALUE in a section", unitFile, i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// TestSystemdUnit checks imb.service against imb serve's flags and deploy/imb.yaml:
// the command line is valid, the state directory is imb.yaml's data, the TLS
// credentials are the files imb.yaml names, reload sends SIGHUP, and the service
// is confined.
func TestSystemdUnit(t *testing.T) {
	u := readUnit(t)
	cfg := readSample(t)

	start := strings.Fields(u.get("Service", "ExecStart"))
	if len(start) < 2 || start[1] != "serve" {
		t.Fatalf("ExecStart %v: want imb serve", start)
	}
	args, err := parseArgs(imb.flags["serve"], start[2:])
	if err != nil {
		t.Fatalf("ExecStart %v: %v", start, err)
	}
	if c, _ := value(args, "config"); c != "/etc/imb/imb.yaml" {
		t.Errorf("ExecStart --config %q, want /etc/imb/imb.yaml", c)
	}
	if f, _ := value(args, "log-format"); f != "json" {
		t.Errorf("ExecStart --log-format %q: the journal gets JSON lines", f)
	}
	for _, a := range args {
		if a.name != "config" && a.name != "log-format" && a.name != "log-level" {
			t.Errorf("ExecStart --%s: settings belong in imb.yaml (flags override it silently)", a.name)
		}
	}

	if got := u.get("Service", "ExecReload"); !strings.Contains(got, "-HUP $MAINPID") {
		t.Errorf("ExecReload %q: SIGHUP reloads the policy", got)
	}
	if sd := u.get("Service", "StateDirectory"); cfg.DataDir != path.Join("/var/lib", sd) {
		t.Errorf("StateDirectory=%s but imb.yaml data is %s", sd, cfg.DataDir)
	}
	creds := map[string]bool{}
	for _, c := range u["Service"]["LoadCredential"] {
		name, _, _ := strings.Cut(c, ":")
		creds["/run/credentials/imb.service/"+name] = true
	}
	for key, file := range map[string]string{"tls_cert": cfg.TLSCert, "tls_key": cfg.TLSKey} {
		if !creds[file] {
			t.Errorf("imb.yaml %s %s is not a LoadCredential of the unit (%v)", key, file, u["Service"]["LoadCredential"])
		}
	}
	if !strings.HasPrefix(cfg.PolicyFile, "/etc/imb/") {
		t.Errorf("imb.yaml policy %s: the unit's install steps put it in /etc/imb", cfg.PolicyFile)
	}
	for key, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
	} {
		if got, ok := u["Service"][key]; !ok || got[len(got)-1] != want {
			t.Errorf("%s=%v, want %q", key, got, want)
		}
	}
	if u.get("Service", "DynamicUser") != "yes" && u.get("Service", "User") == "" {
		t.Error("the service runs as root: set DynamicUser=yes or User=")
	}
	if !slices.Contains(u["Install"]["WantedBy"], "multi-user.target") {
		t.Errorf("WantedBy=%v", u["Install"]["WantedBy"])
	}
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit, with the built
// binary in place of /usr/local/bin/imb, where systemd is installed.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	data, err := os.ReadFile(filepath.Join(repoRoot, unitFile))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "imb.service")
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/imb", imb.bin)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", f).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
