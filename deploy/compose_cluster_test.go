package deploy

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"imb/internal/freeport"
)

// The cluster file's services: amdev, the NATS nodes and the imb nodes.
var (
	clusterNATS = []string{"nats-1", "nats-2", "nats-3"}
	clusterIMB  = []string{"imb-1", "imb-2", "imb-3"}
)

// isNATS reports whether s is a NATS node of the cluster file: the official
// NATS image, not this repository's.
func isNATS(s types.ServiceConfig) bool {
	return s.Build == nil && strings.HasPrefix(s.Image, "nats:")
}

// natsOptions parses a NATS service's command with nats-server's own command
// line parser, as the image's entrypoint hands it to nats-server.
func natsOptions(t *testing.T, s types.ServiceConfig) *natsserver.Options {
	t.Helper()
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	no, err := natsserver.ConfigureOptions(fs, s.Command, func() {}, func() {}, func() {})
	if err != nil {
		t.Fatalf("%s: nats-server %v: %v", s.Name, s.Command, err)
	}
	if fs.NArg() != 0 {
		t.Fatalf("%s: nats-server takes no arguments, has %v", s.Name, fs.Args())
	}
	return no
}

// natsModuleVersion is the nats-server version this repository builds and
// tests with, as go.mod requires it.
func natsModuleVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod does not require nats-server")
	}
	return string(m[1])
}

// TestClusterCompose checks docker-compose.cluster.yml as compose loads it:
// three NATS nodes with JetStream routed to each other, three imb nodes of this
// repository's image joined to them, each set up as the single broker of
// docker-compose.yml is, under its own name, ports and volume.
func TestClusterCompose(t *testing.T) {
	p := loadComposeFile(t, clusterComposeFile, nil, nil)
	got := p.ServiceNames()
	sort.Strings(got)
	want := append(append([]string{"amdev"}, clusterIMB...), clusterNATS...)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	df := readDockerfile(t)
	for _, name := range append([]string{"amdev"}, clusterIMB...) {
		t.Run(name, func(t *testing.T) {
			s := p.Services[name]
			checkImage(t, p, s)
			checkContainer(t, s, df)
		})
	}

	// NATS: the image of the nats-server version imb is tested with, JetStream
	// on a volume, one cluster whose routes name each node's route port.
	routePort := map[string]int{}
	clientPort := map[string]int{}
	names := map[string]bool{}
	for _, name := range clusterNATS {
		s := p.Services[name]
		if !isNATS(s) {
			t.Fatalf("%s: image %q, want the official NATS image", name, s.Image)
		}
		if want := "nats:" + natsModuleVersion(t) + "-alpine"; s.Image != want {
			t.Errorf("%s: image %s, but imb is built and tested with nats-server %s: use %s", name, s.Image, natsModuleVersion(t), want)
		}
		no := natsOptions(t, s)
		if !no.JetStream || no.StoreDir == "" {
			t.Errorf("%s: JetStream %v store %q: the streams need JetStream on a store", name, no.JetStream, no.StoreDir)
		}
		if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Type == types.VolumeTypeVolume && v.Target == no.StoreDir
		}) {
			t.Errorf("%s: the store %s is not a named volume: JetStream's messages would die with the container", name, no.StoreDir)
		}
		if no.ServerName != name || names[no.ServerName] {
			t.Errorf("%s: server name %q: each node is named after its service", name, no.ServerName)
		}
		names[no.ServerName] = true
		if no.Cluster.Name != "imb" || no.Cluster.Port == 0 {
			t.Errorf("%s: cluster %q on port %d", name, no.Cluster.Name, no.Cluster.Port)
		}
		routePort[name] = no.Cluster.Port
		clientPort[name] = no.Port
		if clientPort[name] == 0 {
			clientPort[name] = natsserver.DEFAULT_PORT
		}
		var routed []string
		for _, r := range no.Routes {
			routed = append(routed, r.Host)
		}
		sort.Strings(routed)
		var wantRoutes []string
		for _, n := range clusterNATS {
			wantRoutes = append(wantRoutes, net.JoinHostPort(n, strconv.Itoa(no.Cluster.Port)))
		}
		if !slices.Equal(routed, wantRoutes) {
			t.Errorf("%s: routes %v, want %v", name, routed, wantRoutes)
		}
		hc := s.HealthCheck
		if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" ||
			!slices.Contains(hc.Test, fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", no.HTTPPort)) {
			t.Errorf("%s: healthcheck %v: want JetStream's health on the monitoring port %d", name, hc, no.HTTPPort)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes %v: the NATS nodes are for the imb nodes only", name, s.Ports)
		}
	}

	// imb: each node wired to amdev as the single broker is, joined to every NATS
	// node's client port, named, with ports and a volume of its own.
	published := map[string]string{}
	volumes := map[string]string{}
	for _, name := range clusterIMB {
		checkAmdevWiring(t, p, name)
		s := p.Services[name]
		args := mustCommand(t, p, name, "serve")
		if node, _ := value(args, "node-name"); node != name {
			t.Errorf("%s --node-name %q: name the node after its service, for logs and metrics", name, node)
		}
		urls, _ := value(args, "cluster-nats")
		var hosts []string
		for _, u := range strings.Split(urls, ",") {
			pu, err := url.Parse(u)
			if err != nil || pu.Scheme != "nats" {
				t.Errorf("%s --cluster-nats %q: %q is not a nats:// URL", name, urls, u)
				continue
			}
			if port, ok := clientPort[pu.Hostname()]; !ok || pu.Port() != strconv.Itoa(port) {
				t.Errorf("%s --cluster-nats %s is not a NATS node's client port", name, u)
			}
			hosts = append(hosts, pu.Hostname())
		}
		sort.Strings(hosts)
		if !slices.Equal(hosts, clusterNATS) {
			t.Errorf("%s --cluster-nats names %v, want every NATS node %v", name, hosts, clusterNATS)
		}
		for _, n := range clusterNATS {
			if dep, ok := s.DependsOn[n]; !ok || dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s depends_on %s %+v: want it healthy, so that JetStream has its quorum", name, n, dep)
			}
		}
		for _, pc := range s.Ports {
			if other, dup := published[pc.Published]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, pc.Published)
			}
			published[pc.Published] = name
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeVolume {
				continue
			}
			if other, dup := volumes[v.Source]; dup {
				t.Errorf("%s and %s share the volume %s: each node keeps its own sessions", name, other, v.Source)
			}
			volumes[v.Source] = name
		}
	}
	// The ports of imb dev --nodes 3, so that the same clients work with both.
	for i, name := range clusterIMB {
		for _, want := range []string{strconv.Itoa(1883 + i), strconv.Itoa(9100 + i)} {
			if published[want] != name {
				t.Errorf("host port %s is %q's, want %s's (imb dev --nodes numbering)", want, published[want], name)
			}
		}
	}
}

// TestClusterComposeRuns runs the cluster file's own command lines on loopback:
// the NATS nodes as nats-server parses their commands (in this process, on free
// ports), the imb nodes and amdev as localArgs rewrites theirs. Every imb node
// becomes ready, which it is only once joined to the cluster.
func TestClusterComposeRuns(t *testing.T) {
	p := loadComposeFile(t, clusterComposeFile, nil, nil)
	amSvc := p.Services["amdev"]
	var amArgs []string
	for _, a := range localArgs(t, amSvc, nil) {
		if !strings.HasPrefix(a, "--base-url=") {
			amArgs = append(amArgs, a)
		}
	}
	am := imb.start(t, envOf(amSvc), amArgs...)
	amURL := am.waitLine(t, "amdev ready:")
	composeBase, _ := value(mustCommand(t, p, "amdev", "am"), "base-url")

	// Free ports for each NATS node's client and route listeners, then the
	// nodes with their routes rewritten to them.
	rewrite := map[string]string{composeBase: amURL}
	opts := map[string]*natsserver.Options{}
	routeAddr := map[string]string{}
	for _, name := range clusterNATS {
		no := natsOptions(t, p.Services[name])
		client, route := freeport.MustPort(t), freeport.MustPort(t)
		if no.Port == 0 {
			no.Port = natsserver.DEFAULT_PORT
		}
		rewrite[fmt.Sprintf("nats://%s:%d", name, no.Port)] = "nats://127.0.0.1:" + strconv.Itoa(client)
		routeAddr[net.JoinHostPort(name, strconv.Itoa(no.Cluster.Port))] = "127.0.0.1:" + strconv.Itoa(route)
		no.Host, no.Port = "127.0.0.1", client
		no.Cluster.Host, no.Cluster.Port = "127.0.0.1", route
		no.HTTPPort = 0
		no.StoreDir = t.TempDir()
		no.NoSigs = true
		opts[name] = no
	}
	var servers []*natsserver.Server
	for _, name := range clusterNATS {
		no := opts[name]
		for i, r := range no.Routes {
			ru := *r
			ru.Host = routeAddr[r.Host]
			no.Routes[i] = &ru
		}
		ns, err := natsserver.NewServer(no)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		servers = append(servers, ns)
		if !ns.ReadyForConnections(30 * time.Second) {
			t.Fatalf("%s did not start", name)
		}
	}
	for _, name := range clusterIMB {
		s := p.Services[name]
		args := localArgs(t, s, nil)
		for i := range args {
			for from, to := range rewrite {
				args[i] = strings.ReplaceAll(args[i], from, to)
			}
		}
		proc := imb.start(t, envOf(s), args...)
		addrs := proc.waitListening(t, "admin", "mqtt")
		imb.waitHealthy(t, localHealth(t, s, addrs["admin"]))
		// Ready alone would also be a single node that ignored the cluster.
		resp, err := http.Get("http://" + addrs["admin"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`(?m)^imb_cluster_joined\{node="` + name + `"\} 1$`).Match(body) {
			t.Fatalf("%s is ready but not joined to the cluster:\n%s", name, grepLines(string(body), "imb_cluster"))
		}
	}
	var clients int
	for _, ns := range servers {
		clients += ns.NumClients()
	}
	if clients < len(clusterIMB) {
		t.Errorf("the NATS nodes have %d clients, want at least one per imb node (%d)", clients, len(clusterIMB))
	}
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
