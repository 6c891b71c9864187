package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imb/broker"
)

// TestRunAgainstURL loads a broker the harness did not start, through the CLI.
func TestRunAgainstURL(t *testing.T) {
	cfg := broker.Defaults()
	cfg.MQTTAddr, cfg.AdminAddr, cfg.AllowAll = "127.0.0.1:0", "", true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := dispatch([]string{"run", "--url", "mqtt://" + b.Addr("tcp"), "--scenario", "p2p", "--clients", "2",
		"--messages", "50", "--duration", "10s", "--out", out, "--quiet"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "| url | 1 | ") {
		t.Fatalf("no summary row:\n%s", stdout.String())
	}
	files, _ := filepath.Glob(filepath.Join(out, "p2p-*.json"))
	if len(files) != 1 {
		t.Fatalf("JSON reports: %v", files)
	}
	data, _ := os.ReadFile(files[0])
	if !strings.Contains(string(data), `"deliveries": 100`) {
		t.Fatalf("report does not hold 100 deliveries:\n%.2000s", data)
	}
}

func TestDispatchErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage"},
		{[]string{"bench"}, 2, `unknown command "bench"`},
		{[]string{"compare", "--scenario", "x"}, 2, `--scenario "x"`},
		{[]string{"run", "--url", "mqtt://192.0.2.1:1883"}, 2, "--allow-remote"},
		{[]string{"broker", "--mode", "open"}, 2, `--mode "open"`},
		{[]string{"compare", "--mqtt", "3"}, 2, `--mqtt "3": want 5 or 3.1.1`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		done := make(chan int, 1)
		go func() { done <- dispatch(tt.args, &stdout, &stderr) }()
		select {
		case code := <-done:
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: no answer", tt.args)
		}
	}
}
