package main

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// followMemoryLimit sets the Go memory limit to base plus what the cached
// directory listings hold (listings), at once and then every interval
// until ctx ends. Counting what the listings hold rather than their
// budget keeps a mount that lists little within the read path's bound
// (--cache-memory plus a little, as make bench's workload 7 checks),
// while one holding large listings does not collect garbage without end.
func followMemoryLimit(ctx context.Context, base int64, listings *atomic.Int64, interval time.Duration) {
	set := int64(-1)
	update := func() {
		// Steps of 1 MiB: listings change by a few bytes at a time.
		want := base + (listings.Load()+(1<<20)-1)&^(1<<20-1)
		if want != set {
			debug.SetMemoryLimit(want)
			set = want
		}
	}
	update()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			update()
		}
	}
}
