package cache

import "sync"

// Budget counts bytes held outside the resident set (blocks in flight and
// read-ahead not yet read) against a fixed capacity shared by every open
// file. Read-ahead leaves a reserve, so reads a program is waiting for find
// bytes first; when none are left those reads are served without holding
// blocks rather than waiting.
type Budget struct {
	// Constant data
	capacity int64

	// Mutable state
	mu   sync.Mutex // protects the following
	used int64
}

// NewBudget returns a budget of capacity bytes.
func NewBudget(capacity int64) *Budget {
	return &Budget{capacity: capacity}
}

// Capacity returns the budget's size.
func (b *Budget) Capacity() int64 { return b.capacity }

// Used returns the bytes held now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// TryAcquire takes n bytes if that leaves at least reserve bytes free. It
// never waits: a holder may be a reader that is itself waiting.
func (b *Budget) TryAcquire(n, reserve int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n+reserve > b.capacity {
		return false
	}
	b.used += n
	return true
}

// Release returns n bytes.
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.used < 0 {
		panic("cache: budget released more than acquired")
	}
	b.mu.Unlock()
}
