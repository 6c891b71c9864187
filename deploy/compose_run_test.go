package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"imb/amdev"
)

// command is the imb binary with args, ended by ctx.
func (c *imbCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, c.bin, args...)
}

// localArgs turns a service's command into one that runs on this machine: every
// listener on 127.0.0.1:0, --data in a fresh directory, bind-mount targets
// replaced by their sources, and URL prefixes rewritten by urls (service name to
// the address where that service actually runs). Nothing else changes.
func localArgs(t *testing.T, s types.ServiceConfig, urls map[string]string) []string {
	t.Helper()
	sub := s.Command[0]
	fs := imb.flags[sub]
	args, err := parseArgs(fs, s.Command[1:])
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	mounts := map[string]string{}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			mounts[v.Target] = v.Source
		}
	}
	listeners := listenAddrs(fs, sub, args)
	for i, a := range args {
		switch {
		case listeners[a.name] != "":
			args[i].value = "127.0.0.1:0"
		case a.name == "data":
			args[i].value = t.TempDir()
		case mounts[a.value] != "":
			args[i].value = mounts[a.value]
		default:
			for from, to := range urls {
				if rest, ok := strings.CutPrefix(a.value, from); ok {
					args[i].value = to + rest
				}
			}
		}
	}
	// Listeners left at their defaults are moved too, so that nothing binds a
	// fixed port of this machine.
	for flag := range listeners {
		if _, given := value(args, flag); !given {
			args = append(args, arg{name: flag, value: "127.0.0.1:0", hasValue: true})
		}
	}
	return append([]string{sub}, joinArgs(args)...)
}

// localHealth is a service's health check command aimed at addr.
func localHealth(t *testing.T, s types.ServiceConfig, addr string) []string {
	t.Helper()
	hargs, err := parseArgs(imb.flags["health"], s.HealthCheck.Test[3:])
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range hargs {
		if a.name == "url" {
			_, rest, _ := strings.Cut(strings.TrimPrefix(a.value, "http://"), "/")
			hargs[i].value = "http://" + addr + "/" + rest
		}
	}
	return append([]string{"health"}, joinArgs(hargs)...)
}

// envOf is a service's environment as compose passes it to the container.
func envOf(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// TestComposeStackRuns runs the services' own command lines on loopback (addresses,
// data directories and mounted files swapped for local ones) and their health
// checks against them: amdev comes up, imb serve trusts it and becomes ready, and
// the external-am service becomes ready against an AM at the root realm and at a
// realm given by path.
func TestComposeStackRuns(t *testing.T) {
	dev := loadCompose(t, nil, nil)
	amSvc, brokerSvc := dev.Services["amdev"], dev.Services["imb"]

	// amdev's own base URL names the compose network; here it is the loopback
	// address it gets, so --base-url is left to its default. It also gets realm
	// /iot, for the realm form of the external-am profile.
	realms := filepath.Join(t.TempDir(), "amdev.yaml")
	if err := os.WriteFile(realms, []byte("realms: [/iot]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var amArgs []string
	for _, a := range localArgs(t, amSvc, nil) {
		if !strings.HasPrefix(a, "--base-url=") {
			amArgs = append(amArgs, a)
		}
	}
	am := imb.start(t, envOf(amSvc), append(amArgs, "--config="+realms)...)
	amURL := am.waitLine(t, "amdev ready:")
	amAddr := strings.TrimSuffix(strings.TrimPrefix(amURL, "http://"), "/am")
	imb.waitHealthy(t, localHealth(t, amSvc, amAddr))

	composeBase, _ := value(mustCommand(t, dev, "amdev", "am"), "base-url")
	run := func(t *testing.T, s types.ServiceConfig, urls map[string]string) {
		p := imb.start(t, envOf(s), localArgs(t, s, urls)...)
		addrs := p.waitListening(t, "admin", "mqtt")
		imb.waitHealthy(t, localHealth(t, s, addrs["admin"]))
	}
	t.Run("imb with amdev", func(t *testing.T) {
		run(t, brokerSvc, map[string]string{composeBase: amURL})
	})
	for _, tc := range []struct{ name, segment string }{
		{"external-am root realm", ""},
		{"external-am realm /iot", "/realms/root/realms/iot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext := loadCompose(t, map[string]string{
				"AM_URL":           amURL,
				"AM_REALM_SEGMENT": tc.segment,
				"AM_CLIENT_ID":     amdev.BrokerClientID,
				"AM_CLIENT_SECRET": amdev.BrokerClientSecret,
			}, []string{"external-am"}, "imb-external")
			run(t, ext.Services["imb-external"], nil)
		})
	}
}
