package main

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

// TestFollowMemoryLimit: the Go memory limit is the base plus what the
// listings hold, rounded up to a MiB, and follows them as they change.
func TestFollowMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	const base = 600 << 20
	var listings atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); followMemoryLimit(ctx, base, &listings, time.Millisecond) }()
	waitLimit := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for debug.SetMemoryLimit(-1) != want {
			if time.Now().After(deadline) {
				t.Fatalf("memory limit %d, want %d", debug.SetMemoryLimit(-1), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitLimit(base)
	listings.Store(3<<20 + 1)
	waitLimit(base + 4<<20)
	listings.Store(0)
	waitLimit(base)
	cancel()
	<-done
}
