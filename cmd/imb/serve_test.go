package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"imb/broker"
	"imb/internal/issuer"
)

// TestSIGHUPReloadsKeys sends the process SIGHUP while serveUntilSignal runs and checks that the issuer's key set
// was fetched again: a rotation (or a removed key) is taken in without waiting for the periodic refresh.
func TestSIGHUPReloadsKeys(t *testing.T) {
	// Keep SIGHUP from ever reaching its default action (ending the test binary), whatever the timing.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	iss, err := issuer.Start(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	policy := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nrules:\n  - {effect: allow, actions: [publish], topics: [\"things/{sub}/x\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.Start(ctx, broker.Config{
		MQTTAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", PolicyFile: policy, Issuer: iss.URL(),
		JWKSRefreshInterval: time.Hour, Logger: log,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serveUntilSignal(ctx, log, b); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	before := iss.JWKSCalls()
	deadline := time.Now().Add(10 * time.Second)
	for iss.JWKSCalls() == before {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not fetch the key set again")
		}
		// Repeat: the first signal may arrive before serveUntilSignal listens.
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
