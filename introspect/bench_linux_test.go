//go:build linux

package introspect

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// threadCPU is the CPU time the calling OS thread has consumed (CLOCK_THREAD_CPUTIME_ID). Benchmarks that lock
// their goroutine to its thread report it beside ns/op, because on a machine shared with other jobs wall time
// includes the time spent waiting for a core, and CPU time does not.
func threadCPU(b *testing.B) time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		b.Fatal(errno)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkCacheHitCPU is BenchmarkCacheHit with its CPU time per hit reported as cpu-ns/op.
func BenchmarkCacheHitCPU(b *testing.B) {
	c, token := warmCache(b)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ctx := context.Background()
	b.ReportAllocs()
	start := threadCPU(b)
	for b.Loop() {
		if _, err := c.Validate(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(threadCPU(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkFreshVsRawCPU interleaves, per algorithm, a full validation and the bare crypto/* check of the same
// signature (hash included), like BenchmarkES256FreshVsRaw, and measures each in thread CPU time.
func BenchmarkFreshVsRawCPU(b *testing.B) {
	es := newECKey(b, "es", elliptic.P256(), "ES256")
	rs := &testKey{kid: "rs", alg: "RS256", priv: rsaKeyA()}
	ps := &testKey{kid: "ps", alg: "PS256", priv: rsaKeyA()}
	ed := newEdKey(b, "ed")
	benches := []struct {
		key *testKey
		raw func(input string, sig []byte) bool
	}{
		{es, func(input string, sig []byte) bool {
			digest := sha256.Sum256([]byte(input))
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			return ecdsa.Verify(es.priv.Public().(*ecdsa.PublicKey), digest[:], r, s)
		}},
		{rs, func(input string, sig []byte) bool {
			digest := sha256.Sum256([]byte(input))
			return rsa.VerifyPKCS1v15(rs.priv.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sig) == nil
		}},
		{ps, func(input string, sig []byte) bool {
			digest := sha256.Sum256([]byte(input))
			opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}
			return rsa.VerifyPSS(ps.priv.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sig, opts) == nil
		}},
		{ed, func(input string, sig []byte) bool {
			return ed25519.Verify(ed.priv.Public().(ed25519.PublicKey), []byte(input), sig)
		}},
	}
	for _, bb := range benches {
		b.Run(bb.key.alg, func(b *testing.B) {
			v := benchValidator(b, bb.key)
			token := benchToken(b, bb.key)
			input, sig := signedParts(b, token)
			ctx := context.Background()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			var fresh, raw time.Duration
			for b.Loop() {
				t0 := threadCPU(b)
				if _, err := v.Validate(ctx, token); err != nil {
					b.Fatal(err)
				}
				t1 := threadCPU(b)
				if !bb.raw(input, sig) {
					b.Fatal("verify failed")
				}
				t2 := threadCPU(b)
				fresh += t1 - t0
				raw += t2 - t1
			}
			b.ReportMetric(float64(fresh.Nanoseconds())/float64(b.N), "fresh-cpu-ns/op")
			b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "raw-cpu-ns/op")
			b.ReportMetric(float64(fresh)/float64(raw), "fresh/raw")
		})
	}
}
