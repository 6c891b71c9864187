package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"imb/internal/issuer"
	"imb/loadtest/wire"
)

// needRabbitMQ skips a test where Debian's RabbitMQ is not installed: CI does
// not install it, and the other targets are tested without it.
func needRabbitMQ(t *testing.T) {
	t.Helper()
	if rabbitmqVersion() == "" {
		t.Skip("rabbitmq-server is not installed (" + rabbitmqServer + " absent; apt-get install -y rabbitmq-server): rabbitmq-oauth2 target not tested")
	}
}

// TestCompareWithoutRabbitMQ: where rabbitmq-server is not installed, compare
// leaves the target out and says why, and the other targets run.
func TestCompareWithoutRabbitMQ(t *testing.T) {
	saved := rabbitmqServer
	rabbitmqServer = filepath.Join(t.TempDir(), "no-rabbitmq-server")
	defer func() { rabbitmqServer = saved }()
	rep, _ := tinyCompare(t, "--scenario", "p2p", "--clients", "1", "--messages", "20", "--targets", "baseline,rabbitmq-oauth2")
	if len(rep.Summaries) != 1 || rep.Summaries[0].Target != targetBaseline || rep.Host.RabbitMQ != "" {
		t.Fatalf("summaries %+v, host %+v", rep.Summaries, rep.Host)
	}
	want := "rabbitmq-oauth2 skipped: " + rabbitmqServer + " is not installed (apt-get install -y rabbitmq-server)"
	if !slices.Contains(rep.Notes, want) {
		t.Errorf("notes %q, want %q", rep.Notes, want)
	}
}

// TestCompareRabbitMQ is the smallest compare with RabbitMQ: its node boots with
// the harness's key, its clients speak 3.1.1 with the same tokens, every message
// arrives, and its CPU and memory are read from the Erlang VM.
func TestCompareRabbitMQ(t *testing.T) {
	needRabbitMQ(t)
	rep, _ := tinyCompare(t, "--scenario", "p2p", "--clients", "2", "--qos", "1", "--messages", "50",
		"--targets", "baseline,rabbitmq-oauth2")
	if len(rep.Runs) != 2 || rep.Runs[1].Target != targetRabbitMQ {
		t.Fatalf("runs %+v", rep.Runs)
	}
	v := rep.Runs[1].Values
	if v["publishes"] != 100 || v["deliveries"] != 100 || v["drops"] != 0 {
		t.Errorf("rabbitmq: %g publishes, %g deliveries, %g drops; want 100, 100, 0", v["publishes"], v["deliveries"], v["drops"])
	}
	// The Erlang VM alone holds tens of MB; the start script a few hundred KB.
	if v["broker_rss_peak_mb"] < 20 || v["broker_cpu_us_per_delivery"] <= 0 {
		t.Errorf("rabbitmq: RSS peak %g MB, CPU/delivery %g µs: not the VM's figures", v["broker_rss_peak_mb"], v["broker_cpu_us_per_delivery"])
	}
	found := false
	for _, n := range rep.Notes {
		found = found || n == targetRabbitMQ+" speaks MQTT 3.1.1 only: its clients used 3.1.1, the others 5 (--mqtt 3.1.1 for the same protocol everywhere)"
	}
	if !found {
		t.Errorf("no note that rabbitmq ran under 3.1.1: %q", rep.Notes)
	}
}

// TestCompareRabbitMQMemory: every thing connects, subscribes to its own commands
// (the right its token carries for RabbitMQ) and is still connected when the
// memory is read; the figures are the Erlang VM's.
func TestCompareRabbitMQMemory(t *testing.T) {
	needRabbitMQ(t)
	rep, _ := tinyCompare(t, "--scenario", "memory", "--things", "20", "--targets", "baseline,rabbitmq-oauth2", "--settle", "300ms")
	v := rep.Runs[1].Values
	if v["connected"] != 20 || v["subscribed"] != 20 || v["alive_after"] != 20 {
		t.Errorf("%g connected, %g subscribed, %g alive at the end, want 20", v["connected"], v["subscribed"], v["alive_after"])
	}
	if v["rss_before_mb"] < 20 {
		t.Errorf("RSS before %g MB: not the Erlang VM's", v["rss_before_mb"])
	}
}

// TestRabbitMQChecksTokens runs the node the harness configures and shows that it
// does the job imb does: it takes the run's tokens, refuses tokens it cannot
// trust, and holds each thing to its own telemetry topic; stopped, it leaves no
// process or file behind.
func TestRabbitMQChecksTokens(t *testing.T) {
	needRabbitMQ(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	other, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	key, err := fetchSigningKey(ctx, iss.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	toks := mintTokens(iss, 2, 1).jwt
	proc, err := startBroker(ctx, targetRabbitMQ, issuerRef{Key: key}, Options{}, filepath.Join(t.TempDir(), "rabbitmq.log"), "")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			proc.stop()
		}
	}()
	thing := issuer.Claims{"sub": "lt-d0", "scope": append([]string{"publish"}, append(rabbitmqScopes, rabbitmqTopicScopes("lt-d0", false)...)...)}

	connect := func(t *testing.T, sub, token string) (*wire.Conn, byte, error) {
		t.Helper()
		c, err := wire.Dial(ctx, proc.addr, wire.Options{Version: wire.V311})
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		code, err := c.Connect(cctx, wire.ConnectOptions{ClientID: sub, Username: sub, Password: token})
		return c, code, err
	}
	refused := func(code byte, err error) bool { return err != nil || code != 0 }

	t.Run("tokens refused", func(t *testing.T) {
		for _, tt := range []struct{ name, token string }{
			{"signed by another key", other.Mint(thing, time.Hour)},
			{"expired", iss.Mint(thing, -time.Minute)},
			{"other audience", iss.Mint(issuer.Claims{"sub": "lt-d0", "aud": "someone-else", "scope": thing["scope"]}, time.Hour)},
			{"not a token", "password"},
		} {
			c, code, err := connect(t, "lt-d0", tt.token)
			_ = c.Close()
			if !refused(code, err) {
				t.Errorf("%s: accepted", tt.name)
			}
		}
	})

	// publishAcked publishes at QoS 1 and reports whether the PUBACK came: RabbitMQ
	// closes the connection on a publish it refuses.
	publishAcked := func(t *testing.T, c *wire.Conn, topic string) bool {
		t.Helper()
		if err := c.WritePublish(topic, 1, 1, []byte("12345678")); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			return false
		}
		_ = c.NetConn().SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			f, err := c.ReadFrame()
			if err != nil {
				return false
			}
			if f.Type == wire.TypePuback {
				return true
			}
		}
	}
	t.Run("own topic only", func(t *testing.T) {
		c, code, err := connect(t, "lt-d0", toks["lt-d0"])
		if refused(code, err) {
			t.Fatalf("the run's token refused: code %d, %v", code, err)
		}
		if !publishAcked(t, c, telemetryTopic("lt-d0")) {
			t.Fatal("publish to its own telemetry not acknowledged")
		}
		_ = c.Close()
		c, code, err = connect(t, "lt-d0", toks["lt-d0"])
		if refused(code, err) {
			t.Fatalf("reconnect refused: code %d, %v", code, err)
		}
		if publishAcked(t, c, telemetryTopic("lt-d1")) {
			t.Error("lt-d0 published to lt-d1's telemetry")
		}
		_ = c.Close()
		c, code, err = connect(t, "lt-d0", toks["lt-d0"])
		if refused(code, err) {
			t.Fatalf("reconnect refused: code %d, %v", code, err)
		}
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		if granted, err := c.Subscribe(sctx, "things/lt-d0/commands/#", 1); err != nil || granted >= 0x80 {
			t.Errorf("lt-d0's subscription to its own commands refused: %d, %v", granted, err)
		}
		if granted, err := c.Subscribe(sctx, "things/lt-d1/telemetry/#", 1); err == nil && granted < 0x80 {
			t.Error("lt-d0 subscribed to lt-d1's telemetry")
		}
		_ = c.Close()
		c, code, err = connect(t, appID(0), toks[appID(0)])
		if refused(code, err) {
			t.Fatalf("fleet reader refused: code %d, %v", code, err)
		}
		if granted, err := c.Subscribe(sctx, "things/+/telemetry/#", 1); err != nil || granted >= 0x80 {
			t.Errorf("fleet reader's subscription refused: %d, %v", granted, err)
		}
		_ = c.Close()
	})

	beam, epmd, scratch := proc.rabbit.beam, proc.rabbit.epmd.Process.Pid, proc.rabbit.scratch
	proc.stop()
	stopped = true
	for _, pid := range []int{beam, epmd} {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("process %d still there after stop (%v)", pid, err)
		}
	}
	if _, err := os.Stat(scratch); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("scratch directory %s left behind", scratch)
	}
}
