package deploy

import (
	"context"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"imb/amdev"
)

// The compose files: the single broker with amdev (and the external-am
// profile), and the cluster of docs/cluster.md.
const (
	composeFile        = "docker-compose.yml"
	clusterComposeFile = "docker-compose.cluster.yml"
)

// externalAMEnv is what an operator sets for the external-am profile: AM's base
// URL, the realm /iot as it appears in AM's OAuth2 URLs, and the broker's client.
var externalAMEnv = map[string]string{
	"AM_URL":           "https://am.example.com/am",
	"AM_REALM_SEGMENT": "/realms/root/realms/iot",
	"AM_CLIENT_ID":     "imb-broker-prod",
	"AM_CLIENT_SECRET": "s3cret-from-the-environment",
}

// loadCompose loads docker-compose.yml with the compose specification's own loader,
// as docker compose would with these variables, profiles and services named on its
// command line. Nothing of this process's environment leaks in.
func loadCompose(t *testing.T, env map[string]string, profiles []string, services ...string) *types.Project {
	t.Helper()
	return loadComposeFile(t, composeFile, env, profiles, services...)
}

// loadComposeFile is loadCompose for another compose file of the repository.
func loadComposeFile(t *testing.T, file string, env map[string]string, profiles []string, services ...string) *types.Project {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(abs, file)},
		cli.WithWorkingDirectory(abs),
		cli.WithEnv(list),
		cli.WithProfiles(profiles),
		cli.WithSelectedServices(services...),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("load %s (profiles %v, services %v): %v", file, profiles, services, err)
	}
	return p
}

// TestComposeServices checks which services each documented invocation starts.
func TestComposeServices(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		profiles []string
		services []string
		want     []string
	}{
		{name: "docker compose up", want: []string{"amdev", "imb"}},
		{name: "docker compose --profile external-am up imb-external", env: externalAMEnv,
			profiles: []string{"external-am"}, services: []string{"imb-external"}, want: []string{"imb-external"}},
		{name: "docker compose up imb-external", env: externalAMEnv,
			services: []string{"imb-external"}, want: []string{"imb-external"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := loadCompose(t, tc.env, tc.profiles, tc.services...)
			got := p.ServiceNames()
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("services %v, want %v", got, tc.want)
			}
		})
	}
}

// TestComposeAgreesWithIMB checks every service of both setups against the flags of
// the imb binary, the Dockerfile and the other services.
func TestComposeAgreesWithIMB(t *testing.T) {
	df := readDockerfile(t)
	for _, tc := range []struct {
		name     string
		env      map[string]string
		profiles []string
		services []string
	}{
		{name: "default"},
		{name: "external-am", env: externalAMEnv, profiles: []string{"external-am"}, services: []string{"imb-external"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := loadCompose(t, tc.env, tc.profiles, tc.services...)
			for _, name := range p.ServiceNames() {
				t.Run(name, func(t *testing.T) {
					s := p.Services[name]
					checkImage(t, p, s)
					checkContainer(t, s, df)
				})
			}
		})
	}
}

// TestComposeWiring checks how the broker of each setup reaches its identity
// provider: amdev by service name, or the AM the environment names.
func TestComposeWiring(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		checkAmdevWiring(t, loadCompose(t, nil, nil), "imb")
	})
	t.Run("external-am", func(t *testing.T) {
		p := loadCompose(t, externalAMEnv, []string{"external-am"}, "imb-external")
		broker := mustCommand(t, p, "imb-external", "serve")
		issuer := externalAMEnv["AM_URL"] + "/oauth2" + externalAMEnv["AM_REALM_SEGMENT"]
		for flag, want := range map[string]string{
			"issuer":         issuer,
			"introspect-url": issuer + "/introspect",
			"client-id":      externalAMEnv["AM_CLIENT_ID"],
		} {
			if got, _ := value(broker, flag); got != want {
				t.Errorf("--%s %q, want %q", flag, got, want)
			}
		}
		checkAudience(t, broker, []string{amdev.DefaultClientID, amdev.CloudAppClientID})
		if got := envValue(p.Services["imb-external"], "IMB_CLIENT_SECRET"); got != externalAMEnv["AM_CLIENT_SECRET"] {
			t.Errorf("IMB_CLIENT_SECRET %q, want AM_CLIENT_SECRET %q", got, externalAMEnv["AM_CLIENT_SECRET"])
		}
		if len(p.Services["imb-external"].DependsOn) != 0 {
			t.Errorf("imb-external depends on %v: it runs without amdev", p.Services["imb-external"].DependsOn)
		}
		if secret, _ := value(broker, "client-secret"); secret != "" {
			t.Errorf("the client secret is on the command line (visible in ps and docker inspect); use IMB_CLIENT_SECRET")
		}
	})
	t.Run("external-am without AM_URL fails fast", func(t *testing.T) {
		// Interpolation cannot require AM_URL (it would break `docker compose up`
		// too), so the broker must refuse the relative URLs an unset AM_URL leaves.
		p := loadCompose(t, nil, []string{"external-am"}, "imb-external")
		args := localArgs(t, p.Services["imb-external"], nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := imb.command(ctx, args...).CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("imb %v with AM_URL unset: %v, want a prompt failure\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "want an absolute http or https URL") {
			t.Errorf("error does not say what is wrong:\n%s", out)
		}
	})
}

// checkAmdevWiring: the broker service reaches amdev by its service name, trusts
// the issuer its tokens carry, introspects with amdev's broker client and its
// secret, and waits for amdev's health.
func checkAmdevWiring(t *testing.T, p *types.Project, service string) {
	t.Helper()
	am, broker := mustCommand(t, p, "amdev", "am"), mustCommand(t, p, service, "serve")
	base, _ := value(am, "base-url")
	u, err := url.Parse(base)
	if err != nil || u.Hostname() != "amdev" {
		t.Fatalf("amdev --base-url %q: the broker reaches amdev by its service name", base)
	}
	if lp, up := mustPort(t, effective(imb.flags["am"], am, "listen")), mustPort(t, base); lp != up {
		t.Errorf("amdev --base-url port %d, but it listens on %d", up, lp)
	}
	issuer, _ := value(broker, "issuer")
	if want := base + "/oauth2"; issuer != want {
		t.Errorf("%s --issuer %q; amdev's tokens carry iss %q", service, issuer, want)
	}
	if in, _ := value(broker, "introspect-url"); in != issuer+"/introspect" {
		t.Errorf("%s --introspect-url %q, want %q", service, in, issuer+"/introspect")
	}
	if id, _ := value(broker, "client-id"); id != amdev.BrokerClientID {
		t.Errorf("%s --client-id %q: amdev's introspection client is %q", service, id, amdev.BrokerClientID)
	}
	if got := envValue(p.Services[service], "IMB_CLIENT_SECRET"); got != amdev.BrokerClientSecret {
		t.Errorf("%s IMB_CLIENT_SECRET %q: amdev's broker client secret is %q", service, got, amdev.BrokerClientSecret)
	}
	checkAudience(t, broker, []string{amdev.DefaultClientID, amdev.CustomThingClientID, amdev.CloudAppClientID})
	dep, ok := p.Services[service].DependsOn["amdev"]
	if !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("%s depends_on amdev %+v: want condition %s, so that amdev's keys are there at start",
			service, dep, types.ServiceConditionHealthy)
	}
}

// checkAudience: the broker accepts tokens issued to exactly these clients, and
// never its own introspection client's.
func checkAudience(t *testing.T, broker []arg, want []string) {
	t.Helper()
	var got []string
	for _, a := range broker {
		if a.name == "audience" {
			got = append(got, strings.Split(a.value, ",")...)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("--audience %v, want %v: without it a token issued to any client of the issuer connects", got, want)
	}
	if slices.Contains(got, amdev.BrokerClientID) {
		t.Errorf("--audience includes the broker's own client %s", amdev.BrokerClientID)
	}
}

// checkImage: every service runs the image built from this repository's Dockerfile.
func checkImage(t *testing.T, p *types.Project, s types.ServiceConfig) {
	t.Helper()
	if s.Build == nil {
		t.Fatalf("no build section: the image %q is built from the Dockerfile", s.Image)
	}
	df := s.Build.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(s.Build.Context, df)
	}
	if _, err := os.Stat(df); err != nil {
		t.Errorf("build: %v", err)
	}
	for _, other := range p.Services {
		if isNATS(other) {
			continue // the cluster's engine, an image of its own (compose_cluster_test.go)
		}
		if other.Image != s.Image || other.Build == nil || other.Build.Context != s.Build.Context {
			t.Errorf("%s and %s use different images (%s, %s): one image serves both", s.Name, other.Name, s.Image, other.Image)
		}
	}
	if !s.ReadOnly {
		t.Errorf("read_only is off: imb writes only its data volume")
	}
}

// checkContainer checks a service's command, ports, volumes and health check
// against the imb subcommand it runs.
func checkContainer(t *testing.T, s types.ServiceConfig, df dockerfile) {
	t.Helper()
	if len(s.Command) == 0 {
		t.Fatal("no command: each service names its imb subcommand")
	}
	sub := s.Command[0]
	fs, ok := imb.flags[sub]
	if !ok || (sub != "serve" && sub != "am") {
		t.Fatalf("command %v: want imb serve or imb am", s.Command)
	}
	args, err := parseArgs(fs, s.Command[1:])
	if err != nil {
		t.Fatalf("command %v: imb %s: %v", s.Command, sub, err)
	}
	if _, ok := value(args, "config"); ok && sub == "serve" {
		t.Errorf("--config: the services are configured with flags, so that this test sees the whole setup")
	}

	listeners := listenAddrs(fs, sub, args)
	if len(listeners) == 0 {
		t.Fatalf("command %v listens nowhere", s.Command)
	}
	for flag, addr := range listeners {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "0.0.0.0" {
			t.Errorf("--%s %q: inside a container imb must listen on 0.0.0.0 to be reachable", flag, addr)
		}
	}

	// Ports: each published port is one the command listens on; the admin
	// endpoint (unauthenticated /metrics) is published on the host's loopback only.
	published := map[int]bool{}
	for _, pc := range s.Ports {
		flag, ok := listenerOn(listeners, int(pc.Target))
		if !ok {
			t.Errorf("port %s:%d published, but %s listens on %v", pc.Published, pc.Target, sub, listeners)
			continue
		}
		published[int(pc.Target)] = true
		if pc.Protocol != "" && pc.Protocol != "tcp" {
			t.Errorf("port %d protocol %s, want tcp", pc.Target, pc.Protocol)
		}
		if (flag == "admin-addr" || sub == "am") && pc.HostIP != "127.0.0.1" {
			t.Errorf("port %d (--%s of imb %s) published on %q: publish it on 127.0.0.1 only (unauthenticated /metrics, amdev's public development secrets)",
				pc.Target, flag, sub, pc.HostIP)
		}
	}
	for flag, addr := range listeners {
		if flag != "admin-addr" && !published[mustPort(t, addr)] {
			t.Errorf("--%s %s is not published", flag, addr)
		}
	}
	for _, p := range []int{1883, 9100} {
		if sub == "serve" && published[p] && !slices.Contains(df.expose, p) {
			t.Errorf("port %d published but not in the Dockerfile's EXPOSE %v", p, df.expose)
		}
	}

	checkVolumes(t, s, sub, args)
	checkHealth(t, s, sub, args, listeners, df)
}

// listenAddrs are the TCP addresses the command listens on, by flag.
func listenAddrs(fs flagSet, sub string, args []arg) map[string]string {
	names := []string{"listen"}
	if sub == "serve" {
		names = []string{"mqtt-addr", "tls-addr", "ws-addr", "wss-addr", "admin-addr"}
	}
	out := map[string]string{}
	for _, n := range names {
		if v := effective(fs, args, n); v != "" {
			out[n] = v
		}
	}
	return out
}

// listenerOn finds the listener flag whose address has port p.
func listenerOn(listeners map[string]string, p int) (string, bool) {
	for flag, addr := range listeners {
		if lp, err := port(addr); err == nil && lp == p {
			return flag, true
		}
	}
	return "", false
}

// checkVolumes: the only writable mount is a named volume on the --data directory;
// anything else is a read-only bind of a file that a flag names and that exists.
func checkVolumes(t *testing.T, s types.ServiceConfig, sub string, args []arg) {
	t.Helper()
	data, ok := value(args, "data")
	if !ok || data == "" {
		t.Errorf("no --data: imb %s would keep its state in memory or in the working directory", sub)
	}
	dataMounted := false
	for _, v := range s.Volumes {
		switch v.Type {
		case types.VolumeTypeVolume:
			if v.Target != data {
				t.Errorf("volume %s on %s, but --data is %q", v.Source, v.Target, data)
			}
			dataMounted = dataMounted || v.Target == data
		case types.VolumeTypeBind:
			if !v.ReadOnly {
				t.Errorf("bind mount %s -> %s is writable", v.Source, v.Target)
			}
			if !namesPath(args, v.Target) {
				t.Errorf("bind mount on %s, which no flag of %v names", v.Target, s.Command)
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("bind mount source: %v", err)
			}
		default:
			t.Errorf("mount %s -> %s of type %s", v.Source, v.Target, v.Type)
		}
	}
	if data != "" && !dataMounted {
		t.Errorf("--data %s is not a volume: state would be lost with the container", data)
	}
}

// namesPath reports whether a flag's value is p.
func namesPath(args []arg, p string) bool {
	return slices.ContainsFunc(args, func(a arg) bool { return a.hasValue && a.value == p })
}

// checkHealth: the health check is `imb health` (the image has no shell) on the
// container's loopback, at the admin address of imb serve or amdev's server-info.
func checkHealth(t *testing.T, s types.ServiceConfig, sub string, args []arg, listeners map[string]string, df dockerfile) {
	t.Helper()
	hc := s.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 3 {
		t.Fatalf("healthcheck %+v: want [CMD, %s, health, --url, URL]", hc, df.entrypoint)
	}
	if hc.Test[0] != "CMD" {
		t.Errorf("healthcheck %v: CMD-SHELL needs a shell, the image has none", hc.Test)
	}
	if len(df.entrypoint) == 0 || hc.Test[1] != df.entrypoint[0] || hc.Test[2] != "health" {
		t.Fatalf("healthcheck %v: want the image's binary %v with `health`", hc.Test, df.entrypoint)
	}
	hargs, err := parseArgs(imb.flags["health"], hc.Test[3:])
	if err != nil {
		t.Fatalf("healthcheck %v: imb health: %v", hc.Test, err)
	}
	u, err := url.Parse(effective(imb.flags["health"], hargs, "url"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" {
		t.Errorf("healthcheck URL %s: probe the container's own loopback", u)
	}
	var wantPort int
	var wantPath string
	switch sub {
	case "serve":
		wantPort, wantPath = mustPort(t, listeners["admin-addr"]), "/readyz"
	case "am":
		base, _ := value(args, "base-url")
		bu, err := url.Parse(base)
		if err != nil || base == "" {
			t.Fatalf("amdev --base-url %q", base)
		}
		wantPort, wantPath = mustPort(t, listeners["listen"]), path.Join(bu.Path, "json/serverinfo/*")
	}
	if p, err := port(u.String()); err != nil || p != wantPort || u.Path != wantPath {
		t.Errorf("healthcheck URL %s: want port %d path %s", u, wantPort, wantPath)
	}
	if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil {
		t.Errorf("healthcheck without interval, timeout or retries: %+v", hc)
	}
	if sub == "serve" && (hc.StartPeriod == nil || time.Duration(*hc.StartPeriod) < 10*time.Second) {
		t.Errorf("healthcheck start_period %v: give the broker time to fetch the identity provider's keys", hc.StartPeriod)
	}
}

// mustCommand returns the parsed flags of a service that runs imb sub.
func mustCommand(t *testing.T, p *types.Project, service, sub string) []arg {
	t.Helper()
	s, ok := p.Services[service]
	if !ok || len(s.Command) == 0 || s.Command[0] != sub {
		t.Fatalf("service %s: want command imb %s, have %v", service, sub, s.Command)
	}
	args, err := parseArgs(imb.flags[sub], s.Command[1:])
	if err != nil {
		t.Fatalf("service %s: %v", service, err)
	}
	return args
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	p, err := port(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

// envValue is a service's environment variable after interpolation.
func envValue(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}
