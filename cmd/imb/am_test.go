package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunAMServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := runAMContext(ctx, []string{"--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "am")}, pw, io.Discard)
		pw.Close()
		done <- code
	}()
	lines := bufio.NewScanner(pr)
	var base string
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "amdev ready: "); ok {
			base = u
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if base == "" {
		t.Fatal("no ready line")
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/json/serverinfo/*", nil)
	req.Header.Set("Accept-API-Version", "resource=1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if err != nil || info["cookieName"] != "iPlanetDirectoryPro" {
		t.Fatalf("serverinfo: %v %v", err, info)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("imb am did not stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "am", "amdev.db")); err != nil {
		t.Fatalf("store not created: %v", err)
	}
}

func TestRunAMFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"--nope"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"--help"}, 0},
		{[]string{"--in-memory", "--listen", "127.0.0.1:0", "--config", "/nonexistent/amdev.yaml"}, 1},
		{[]string{"--in-memory", "--listen", "127.0.0.1:0", "--base-url", "ftp://x"}, 1},
	}
	for _, c := range cases {
		var stderr strings.Builder
		if code := runAMContext(context.Background(), c.args, io.Discard, &stderr); code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, stderr.String())
		}
	}
}

// startsAndStops runs imb am with args until it prints its ready line, then
// stops it; it returns the exit code, stderr and what it printed.
func startsAndStops(t *testing.T, args []string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		code := runAMContext(ctx, args, pw, &stderr)
		pw.Close()
		done <- code
	}()
	var stdout strings.Builder
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		stdout.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "amdev ready: ") {
			cancel()
		}
	}
	select {
	case code := <-done:
		return code, stderr.String(), stdout.String()
	case <-time.After(15 * time.Second):
		t.Fatal("imb am did not stop")
		return 0, "", ""
	}
}

// TestRunAMRefusesDocumentedSecretsOffLoopback: on a non-loopback address
// imb am refuses to start (exit 2, naming the accounts and the way out) while
// accounts keep their documented passwords, unless --insecure-defaults; with
// its own secrets, or on loopback, it starts.
func TestRunAMRefusesDocumentedSecretsOffLoopback(t *testing.T) {
	own := filepath.Join(t.TempDir(), "amdev.yaml")
	if err := os.WriteFile(own, []byte(`admin: {password: "own-admin-secret"}
users: {bjensen: {password: "own-user-secret"}}
clients:
  forgerock-iot-oauth2-client: {secret: "own-1"}
  thing-oauth2-client: {secret: "own-2"}
  cloud-app: {secret: "own-3"}
  imb-broker: {secret: "own-4"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // ends it should it start
	defer cancel()
	code := runAMContext(ctx, []string{"--in-memory", "--listen", "0.0.0.0:0"}, io.Discard, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "not a loopback address") || !strings.Contains(stderr.String(), "admin amAdmin") ||
		!strings.Contains(stderr.String(), "client cloud-app") || !strings.Contains(stderr.String(), "--insecure-defaults") {
		t.Fatalf("documented secrets on 0.0.0.0: exit %d\n%s", code, stderr.String())
	}
	for _, args := range [][]string{
		{"--in-memory", "--listen", "0.0.0.0:0", "--insecure-defaults"},
		{"--in-memory", "--listen", "0.0.0.0:0", "--config", own},
		{"--in-memory", "--listen", "127.0.0.1:0"},
	} {
		code, errs, out := startsAndStops(t, args)
		if code != 0 {
			t.Errorf("%v: exit %d\n%s", args, code, errs)
		}
		// The guide shows documented defaults, never a secret of the config file.
		if strings.Contains(out, "own-") || (!slices.Contains(args, own) && !strings.Contains(out, "cloud-app-dev-secret")) {
			t.Errorf("%v: guide\n%s", args, out)
		}
	}
}
