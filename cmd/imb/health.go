package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealth probes an admin endpoint and exits 0 when it answers 200. Container
// images without a shell use it as their health check.
func runHealth(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("imb health", "imb health [--url URL] [--timeout D]",
		"Probes an admin endpoint: exit 0 when it answers 200 OK, 1 otherwise.")
	url := fs.String("url", "http://127.0.0.1:9100/readyz", "URL to probe: the broker's /readyz or /healthz, or amdev's /am/json/serverinfo/*")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if code := fs.parse(args, 0, stdout, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "imb health:", err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "imb health:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "imb health: %s: %s %s\n", *url, resp.Status, body)
		return 1
	}
	fmt.Fprintf(stdout, "imb health: %s: %s\n", *url, resp.Status)
	return 0
}
