package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
