package prefetch

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// Budget counts bytes held outside the resident set (blocks in flight and
// read-ahead not yet read) against a fixed capacity shared by every open
// file. Read-ahead leaves a reserve, so reads a program is waiting for find
// bytes first; when none are left those reads are served without holding
// blocks rather than waiting.
//
// A release that does not match what was acquired is an accounting bug in
// the caller. Releases happen in background goroutines, where a panic
// would end the daemon and every mount with it, so Release logs it, counts
// it (Mismatches) and clamps the count at zero instead.
//
// INVARIANT: 0 <= used <= capacity (TryAcquire never exceeds capacity;
// Release never goes below zero).
type Budget struct {
	// Dependencies
	log *logrus.Entry // nil: mismatches are only counted

	// Constant data
	capacity int64

	// Mutable state
	mismatches atomic.Int64
	mu         sync.Mutex // protects the following
	used       int64
}

// NewBudget returns a budget of capacity bytes.
func NewBudget(capacity int64) *Budget {
	return &Budget{capacity: capacity}
}

// SetLog makes accounting mismatches log a line to log. REQUIRES: called
// before the budget is shared.
func (b *Budget) SetLog(log *logrus.Entry) { b.log = log }

// Capacity returns the budget's size.
func (b *Budget) Capacity() int64 { return b.capacity }

// Used returns the bytes held now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Mismatches returns how many releases did not match what was held.
func (b *Budget) Mismatches() int64 { return b.mismatches.Load() }

// TryAcquire takes n bytes if that leaves at least reserve bytes free. It
// never waits: a holder may be a reader that is itself waiting.
func (b *Budget) TryAcquire(n, reserve int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n < 0 || b.used+n+reserve > b.capacity {
		return false
	}
	b.used += n
	return true
}

// Release returns n bytes. Releasing more than is held, or a negative
// amount, is counted and logged; the budget then holds zero (or is left
// as it was, for a negative amount).
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	held := b.used
	ok := n >= 0 && n <= held
	switch {
	case ok:
		b.used -= n
	case n > held:
		b.used = 0
	}
	b.mu.Unlock()
	if ok {
		return
	}
	count := b.mismatches.Add(1)
	// The first mismatch and then every power of two: a bug that repeats
	// on every read must not flood the log.
	if b.log != nil && bits.OnesCount64(uint64(count)) == 1 {
		b.log.WithFields(logrus.Fields{"released": n, "held": held, "mismatches": count}).
			Error("read-ahead budget released more than was held (an accounting bug; counted in budget_mismatches and clamped)")
	}
}
