package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// es256Floor measures how many ES256 (P-256) signature verifications per second
// this machine does on all its cores for d: the ceiling of fresh-token connects/s
// for any broker that verifies a JWT per CONNECT, before JSON, base64, MQTT and
// TCP are counted.
func es256Floor(d time.Duration) (float64, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, fmt.Errorf("es256 floor: %w", err)
	}
	sum := sha256.Sum256([]byte("header.claims"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return 0, fmt.Errorf("es256 floor: %w", err)
	}
	var n atomic.Int64
	var bad atomic.Bool
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if !ecdsa.VerifyASN1(&key.PublicKey, sum[:], sig) {
					bad.Store(true)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() {
		return 0, fmt.Errorf("es256 floor: a valid signature did not verify")
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}
