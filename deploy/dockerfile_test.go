package deploy

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dockerfile is what the tests need of the Dockerfile: no Docker engine runs here,
// so the file is read as text and held against the imb binary.
type dockerfile struct {
	args        map[string]string // ARG defaults before the first FROM
	from        []string          // base image of each stage
	run         []string
	copy        []string
	user        string
	expose      []int
	volumes     []string
	entrypoint  []string
	cmd         []string
	healthcheck []string // the CMD of HEALTHCHECK
}

// readDockerfile parses ../Dockerfile: continuation lines joined, comments dropped,
// exec-form (JSON) ENTRYPOINT, CMD and HEALTHCHECK required.
func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{args: map[string]string{}}
	var logical []string
	var cur strings.Builder
	for line := range strings.SplitSeq(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if body, cont := strings.CutSuffix(trimmed, "\\"); cont {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	execForm := func(instr, rest string) []string {
		var v []string
		if err := json.Unmarshal([]byte(rest), &v); err != nil {
			t.Fatalf("Dockerfile %s %s: use the exec (JSON) form, the image has no shell: %v", instr, rest, err)
		}
		return v
	}
	for _, l := range logical {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "ARG":
			if len(df.from) == 0 {
				k, v, _ := strings.Cut(rest, "=")
				df.args[k] = v
			}
		case "FROM":
			df.from = append(df.from, strings.Fields(rest)[0])
		case "RUN":
			df.run = append(df.run, rest)
		case "COPY":
			df.copy = append(df.copy, rest)
		case "USER":
			df.user = rest
		case "EXPOSE":
			for _, f := range strings.Fields(rest) {
				p, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					t.Fatalf("EXPOSE %s: %v", f, err)
				}
				df.expose = append(df.expose, p)
			}
		case "VOLUME":
			df.volumes = append(df.volumes, execForm(instr, rest)...)
		case "ENTRYPOINT":
			df.entrypoint = execForm(instr, rest)
		case "CMD":
			df.cmd = execForm(instr, rest)
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(rest, "CMD ")
			if !ok {
				t.Fatalf("HEALTHCHECK %s: no CMD", rest)
			}
			df.healthcheck = execForm(instr, strings.TrimSpace(cmd))
		}
	}
	return df
}

// TestDockerfile checks the image against the brief it serves: static binary of the
// module's Go version on a minimal base, non-root, and a default command, ports,
// volume and health check that agree with imb serve.
func TestDockerfile(t *testing.T) {
	df := readDockerfile(t)
	if len(df.from) < 2 {
		t.Fatalf("FROM %v: want a build stage and a runtime stage", df.from)
	}

	t.Run("build stage", func(t *testing.T) {
		gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
		if m == nil {
			t.Fatal("go.mod has no go directive")
		}
		image := strings.ReplaceAll(df.from[0], "${GO_VERSION}", df.args["GO_VERSION"])
		if image != "golang:"+string(m[1]) {
			t.Errorf("build stage %s, want golang:%s (go.mod)", image, m[1])
		}
		build := ""
		for _, r := range df.run {
			if strings.Contains(r, "go build") {
				build = r
			}
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "./cmd/imb"} {
			if !strings.Contains(build, want) {
				t.Errorf("go build step %q lacks %s", build, want)
			}
		}
	})

	t.Run("runtime stage", func(t *testing.T) {
		base := df.from[len(df.from)-1]
		if !strings.HasPrefix(base, "gcr.io/distroless/static") || !strings.HasSuffix(base, ":nonroot") {
			t.Errorf("runtime base %s: want distroless static, nonroot", base)
		}
		if u := strings.Split(df.user, ":")[0]; u == "" || u == "0" || u == "root" {
			t.Errorf("USER %q: the broker runs unprivileged", df.user)
		}
		if len(df.entrypoint) != 1 || !strings.HasSuffix(df.entrypoint[0], "/imb") {
			t.Errorf("ENTRYPOINT %v: want the imb binary", df.entrypoint)
		}
		for _, p := range []int{1883, 8883, 9100} {
			if !slices.Contains(df.expose, p) {
				t.Errorf("EXPOSE %v lacks %d", df.expose, p)
			}
		}
	})

	t.Run("default command", func(t *testing.T) {
		if len(df.cmd) == 0 || df.cmd[0] != "serve" {
			t.Fatalf("CMD %v: want imb serve", df.cmd)
		}
		fs := imb.flags["serve"]
		args, err := parseArgs(fs, df.cmd[1:])
		if err != nil {
			t.Fatalf("CMD %v: %v", df.cmd, err)
		}
		listeners := listenAddrs(fs, "serve", args)
		for flag, addr := range listeners {
			if !strings.HasPrefix(addr, "0.0.0.0:") {
				t.Errorf("CMD --%s %s: a container listens on 0.0.0.0", flag, addr)
			}
			if !slices.Contains(df.expose, mustPort(t, addr)) {
				t.Errorf("CMD --%s %s: port not in EXPOSE %v", flag, addr, df.expose)
			}
		}
		if data, _ := value(args, "data"); !slices.Contains(df.volumes, data) {
			t.Errorf("CMD --data %q is not a VOLUME %v", data, df.volumes)
		}
		policy, _ := value(args, "policy")
		if !strings.HasPrefix(policy, "/etc/imb/") || !strings.Contains(strings.Join(df.run, "\n"), "/out"+policy) {
			t.Errorf("CMD --policy %q: the build does not put the policy there", policy)
		}
		if lf, _ := value(args, "log-format"); lf != "json" {
			t.Errorf("CMD --log-format %q: containers log JSON", lf)
		}

		// HEALTHCHECK: the image's binary probes /readyz on the admin address.
		hc := df.healthcheck
		if len(hc) < 2 || len(df.entrypoint) == 0 || hc[0] != df.entrypoint[0] || hc[1] != "health" {
			t.Fatalf("HEALTHCHECK CMD %v: want %v health", hc, df.entrypoint)
		}
		hargs, err := parseArgs(imb.flags["health"], hc[2:])
		if err != nil {
			t.Fatalf("HEALTHCHECK CMD %v: %v", hc, err)
		}
		u, err := url.Parse(effective(imb.flags["health"], hargs, "url"))
		if err != nil {
			t.Fatal(err)
		}
		if u.Hostname() != "127.0.0.1" || mustPort(t, u.String()) != mustPort(t, listeners["admin-addr"]) || u.Path != "/readyz" {
			t.Errorf("HEALTHCHECK URL %s: want 127.0.0.1, the admin port of %s, /readyz", u, listeners["admin-addr"])
		}
	})
}

// TestDockerignore: the build context keeps what go build ./cmd/imb needs.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	for _, needed := range []string{"go.mod", "go.sum", "topics.yaml", "cmd/imb/main.go", "broker/config.go"} {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, needed); ok || strings.HasPrefix(needed, p+"/") {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, needed)
			}
		}
	}
	if !slices.Contains(patterns, ".git") {
		t.Errorf(".dockerignore does not exclude .git")
	}
}
