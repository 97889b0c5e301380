package cache

import (
	"sync"

	"github.com/dgraph-io/ristretto/v2"
)

// memory is the memory tier: resident blocks in a ristretto cache bounded
// by a byte cost, with TinyLFU admission so one long stream cannot flush
// the blocks that are read again and again.
type memory struct {
	// Dependencies
	stats *Stats

	// Constant data
	rc   *ristretto.Cache[string, *Block]
	pool *bufPool

	// closeMu orders close after writes to rc that are under way:
	// ristretto must not be written to once closed.
	closeMu sync.RWMutex
	closed  bool // GUARDED_BY(closeMu)
}

func newMemory(maxBytes, blockSize int64, stats *Stats) (*memory, error) {
	m := &memory{stats: stats}
	m.pool = newBufPool(int(blockSize), idleBuffers(maxBytes, blockSize), &stats.Reused)
	items := max(maxBytes/blockSize, 1)
	rc, err := ristretto.NewCache(&ristretto.Config[string, *Block]{
		NumCounters:        items * 10,
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict:            func(*ristretto.Item[*Block]) { stats.Evictions.Add(1) },
		OnReject:           func(*ristretto.Item[*Block]) { stats.Rejected.Add(1) },
		// Every way out of the resident set (eviction, rejection, update)
		// drops the set's reference.
		OnExit: func(b *Block) {
			if b != nil {
				stats.Resident.Add(-int64(len(b.data)))
				b.Release()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	m.rc = rc
	return m, nil
}

// idleBuffers is how many free block buffers the pool keeps: enough to
// cover the blocks streams fetch while the resident set turns over, at most
// an eighth of the cache.
func idleBuffers(maxBytes, blockSize int64) int {
	return int(max(min(maxBytes/8/blockSize, 16), 2))
}

// get returns a resident block with a reference the caller must Release,
// without counting the lookup.
func (m *memory) get(k Key) (*Block, bool) {
	if b, ok := m.rc.Get(k.String()); ok && b.TryRef() {
		return b, true
	}
	return nil, false
}

func (m *memory) contains(k Key) bool {
	_, ok := m.rc.Get(k.String())
	return ok
}

// put offers a complete block to the resident set, which takes its own
// reference, and waits until the set has applied it (ristretto applies
// writes asynchronously). The admission policy may decline it. Blocks put
// after close are dropped. REQUIRES: the caller holds a reference to b.
func (m *memory) put(k Key, b *Block) {
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	if m.closed {
		return
	}
	b.Ref()
	if m.rc.Set(k.String(), b, int64(len(b.data))) {
		m.stats.Resident.Add(int64(len(b.data)))
	} else {
		m.stats.Rejected.Add(1)
		b.Release()
	}
	m.rc.Wait()
}

func (m *memory) close() {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if !m.closed {
		m.closed = true
		m.rc.Close()
	}
}
