// Package cache is bucketfs's in-memory block cache.
//
// Objects are cut into fixed-size blocks. A block is keyed by bucket, object
// key, ETag and block index, so a changed object (new ETag) can never be
// served from an older version's blocks.
//
// Three things live here:
//   - resident blocks, in a ristretto cache bounded by a byte cost, with
//     TinyLFU admission so one long stream cannot flush the blocks that are
//     read again and again;
//   - flights: blocks being fetched. Every reader that needs a missing block
//     joins the same flight, so concurrent misses cost one GET. A flight
//     fills progressively, so a reader waiting for the first 128 KiB of a
//     block does not wait for the whole block;
//   - a Budget of bytes for blocks held outside the resident set (in flight,
//     or read ahead and not yet read), shared by every open file.
//
// The package knows nothing of FUSE or S3: callers fetch the bytes.
package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// Key identifies one block of one object version.
type Key struct {
	Bucket string
	Object string
	ETag   string
	Index  int64
	// Offset and Length are the object bytes the block holds. They are
	// part of the key (and of every disk block's header), so a block cut
	// at another block size is never taken for this one.
	Offset, Length int64
}

// String renders k unambiguously: each name carries its length, so no two
// keys (a NUL inside an object name or an ETag included) render the same.
func (k Key) String() string {
	var b strings.Builder
	for _, s := range []string{k.Bucket, k.Object, k.ETag} {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	fmt.Fprintf(&b, "#%d@%d+%d", k.Index, k.Offset, k.Length)
	return b.String()
}

// Stats are the cache's counters. They only grow, except Resident.
type Stats struct {
	Hits      atomic.Int64 // lookups served by a resident block
	Misses    atomic.Int64 // lookups that found nothing resident
	Joins     atomic.Int64 // misses that joined a flight already under way
	Evictions atomic.Int64 // blocks evicted to stay inside the budget
	Rejected  atomic.Int64 // blocks the admission policy did not keep
	Resident  atomic.Int64 // bytes of resident blocks
	Reused    atomic.Int64 // block buffers taken from the pool, not allocated
}

// Cache holds resident blocks and flights.
type Cache struct {
	// Constant data
	rc   *ristretto.Cache[string, *Block]
	pool *bufPool

	// Mutable state
	mu      sync.Mutex // protects the following
	flights map[Key]*Flight

	// closeMu orders Close after writes to rc that are under way:
	// ristretto must not be written to once closed.
	closeMu sync.RWMutex
	closed  bool // GUARDED_BY(closeMu)

	Stats Stats
}

// New returns a cache keeping at most maxBytes of resident blocks of
// blockSize bytes (an object's last block may be shorter).
func New(maxBytes, blockSize int64) (*Cache, error) {
	if maxBytes <= 0 || blockSize <= 0 {
		return nil, errors.New("cache: size and block size must be positive")
	}
	c := &Cache{flights: map[Key]*Flight{}}
	c.pool = newBufPool(int(blockSize), idleBuffers(maxBytes, blockSize), &c.Stats.Reused)
	items := max(maxBytes/blockSize, 1)
	rc, err := ristretto.NewCache(&ristretto.Config[string, *Block]{
		NumCounters:        items * 10,
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict:            func(*ristretto.Item[*Block]) { c.Stats.Evictions.Add(1) },
		OnReject:           func(*ristretto.Item[*Block]) { c.Stats.Rejected.Add(1) },
		// Every way out of the resident set (eviction, rejection, update)
		// drops the set's reference.
		OnExit: func(b *Block) {
			if b != nil {
				c.Stats.Resident.Add(-int64(len(b.data)))
				b.Release()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	c.rc = rc
	return c, nil
}

// idleBuffers is how many free block buffers the pool keeps: enough to
// cover the blocks streams fetch while the resident set turns over, at most
// an eighth of the cache.
func idleBuffers(maxBytes, blockSize int64) int {
	return int(max(min(maxBytes/8/blockSize, 16), 2))
}

// Close releases the cache. Flights that land afterwards are dropped.
func (c *Cache) Close() {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if !c.closed {
		c.closed = true
		c.rc.Close()
	}
}

// Get returns a resident block with a reference the caller must Release.
func (c *Cache) Get(k Key) (*Block, bool) {
	if b, ok := c.rc.Get(k.String()); ok && b.TryRef() {
		c.Stats.Hits.Add(1)
		return b, true
	}
	c.Stats.Misses.Add(1)
	return nil, false
}

// Contains reports whether k is resident, without counting a lookup.
func (c *Cache) Contains(k Key) bool {
	_, ok := c.rc.Get(k.String())
	return ok
}

// Put offers a complete block to the resident set, which takes its own
// reference; the admission policy may decline it. REQUIRES: the caller
// holds a reference to b.
func (c *Cache) Put(k Key, b *Block) {
	b.Ref()
	if c.rc.Set(k.String(), b, int64(len(b.data))) {
		c.Stats.Resident.Add(int64(len(b.data)))
	} else {
		c.Stats.Rejected.Add(1)
		b.Release()
	}
}

// Wait blocks until buffered Puts are applied (for tests).
func (c *Cache) Wait() { c.rc.Wait() }

// Join returns the flight for k and a reference to its block that the
// caller must Release. When no flight is under way it makes one of size
// bytes and returns created=true: the caller must then fill it and call
// Finish. A resident block comes back as a finished flight.
func (c *Cache) Join(k Key, size int) (f *Flight, b *Block, created bool) {
	if b, ok := c.Get(k); ok {
		return finished(k, b), b, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A flight in the map still holds its own reference (Finish drops it
	// only after land removed the flight), so TryRef cannot fail here. A
	// flight that failed and is on its way out is not joined: the caller
	// retrying after its error must get a new one.
	if f, ok := c.flights[k]; ok {
		if done, err := f.Done(); !(done && err != nil) && f.block.TryRef() {
			c.Stats.Joins.Add(1)
			return f, f.block, false
		}
	}
	b = c.pool.get(size)
	b.Ref() // the caller's; the flight keeps the first
	f = newFlight(k, b, c)
	c.flights[k] = f
	return f, b, true
}

// land is called by a flight when it ends. A good block is offered to the
// resident set first and the flight stays joinable until the set has
// applied it (ristretto applies writes asynchronously), so a reader
// arriving just after never finds neither and fetches the block again.
func (c *Cache) land(f *Flight, err error) {
	if err == nil {
		c.closeMu.RLock()
		if !c.closed {
			c.Put(f.key, f.block)
			c.rc.Wait()
		}
		c.closeMu.RUnlock()
	}
	c.mu.Lock()
	if c.flights[f.key] == f {
		delete(c.flights, f.key)
	}
	c.mu.Unlock()
}

// Block is the bytes of one block, counted by references so its buffer can
// go back to a pool for the next block, but only when nobody can read it:
// a flight while it fills, the resident set, a stream holding it, a read
// copying from it and a reply being sent to the kernel each hold one.
type Block struct {
	data []byte
	refs atomic.Int32
	pool *bufPool
}

// Bytes returns the block's bytes. REQUIRES: a reference is held.
func (b *Block) Bytes() []byte { return b.data }

// TryRef takes a reference unless the block was already released for good.
func (b *Block) TryRef() bool {
	for {
		n := b.refs.Load()
		if n <= 0 {
			return false
		}
		if b.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Ref takes another reference. REQUIRES: a reference is held.
func (b *Block) Ref() { b.refs.Add(1) }

// Release drops a reference; the last one returns the buffer to the pool.
func (b *Block) Release() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		if b.pool != nil {
			b.pool.put(b.data)
		}
	case n < 0:
		panic("cache: block released more often than referenced")
	}
}

// bufPool recycles full-size block buffers: a fresh buffer costs a page
// fault per 4 KiB the first time it is written, which at streaming rates
// costs more than the copy itself. It keeps at most a fixed number of idle
// buffers, unlike a sync.Pool, which the garbage collector empties often
// when the heap is kept near its limit.
type bufPool struct {
	size   int
	free   chan []byte
	reused *atomic.Int64
}

func newBufPool(size, keep int, reused *atomic.Int64) *bufPool {
	return &bufPool{size: size, free: make(chan []byte, keep), reused: reused}
}

func (p *bufPool) get(n int) *Block {
	b := &Block{pool: p}
	b.refs.Store(1)
	if n == p.size {
		select {
		case buf := <-p.free:
			p.reused.Add(1)
			b.data = buf
			return b
		default:
		}
	}
	b.data = make([]byte, n)
	if n != p.size {
		b.pool = nil // odd sizes are left to the garbage collector
	}
	return b
}

func (p *bufPool) put(buf []byte) {
	if len(buf) != p.size {
		return
	}
	select {
	case p.free <- buf:
	default: // enough idle buffers: let this one go
	}
}

// Flight is a block being fetched, readable as it fills.
type Flight struct {
	// Constant data
	key   Key
	block *Block
	cache *Cache    // nil for a flight made from a resident block
	born  time.Time // when the flight began; zero for a resident block

	// Mutable state
	mu     sync.Mutex // protects the following
	filled int
	err    error
	done   bool
	wake   chan struct{} // closed and replaced whenever filled or done changes
}

func newFlight(k Key, b *Block, c *Cache) *Flight {
	return &Flight{key: k, block: b, cache: c, born: time.Now(), wake: make(chan struct{})}
}

// finished wraps a resident block; it holds no reference of its own.
func finished(k Key, b *Block) *Flight {
	return &Flight{key: k, block: b, filled: len(b.data), done: true, wake: make(chan struct{})}
}

// Key returns the block's key.
func (f *Flight) Key() Key { return f.key }

// Len is the block's size.
func (f *Flight) Len() int { return len(f.block.data) }

// Block returns the flight's block. The flight's creator may use it until
// it calls Finish; others must hold their own reference.
func (f *Flight) Block() *Block { return f.block }

// Buffer returns the space the filler writes into; the filler reports
// progress with Filled. Only the flight's creator may call it.
func (f *Flight) Buffer() []byte { return f.block.data }

// Filled records that the first n bytes of Buffer hold data.
func (f *Flight) Filled(n int) {
	f.mu.Lock()
	if n > f.filled {
		f.filled = n
		close(f.wake)
		f.wake = make(chan struct{})
	}
	f.mu.Unlock()
}

// Finish ends the flight. With err == nil the whole buffer must be filled;
// the block then becomes resident (if admitted). With an error, waiters get
// it and the next Join starts a new flight. Either way the flight drops its
// own reference: holders keep theirs.
func (f *Flight) Finish(err error) {
	f.mu.Lock()
	if f.done {
		f.mu.Unlock()
		return
	}
	if err == nil && f.filled < len(f.block.data) {
		err = errors.New("cache: flight finished before its block was filled")
	}
	f.done, f.err = true, err
	close(f.wake)
	f.mu.Unlock()
	if f.cache != nil {
		f.cache.land(f, err)
	}
	f.block.Release()
}

// Progress reports how many bytes have landed and how long ago the flight
// began (0 for a block that was resident).
func (f *Flight) Progress() (landed int, age time.Duration) {
	f.mu.Lock()
	landed = f.filled
	f.mu.Unlock()
	if !f.born.IsZero() {
		age = time.Since(f.born)
	}
	return landed, age
}

// Done reports whether the flight ended, and its error.
func (f *Flight) Done() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done, f.err
}

// Wait returns the block's first end bytes once they are there. It
// returns early with the flight's error, or with ctx's if ctx ends first
// (the flight goes on for other readers). REQUIRES: the caller holds a
// reference to the block (from Join).
func (f *Flight) Wait(ctx context.Context, end int) ([]byte, error) {
	end = min(end, len(f.block.data))
	for {
		f.mu.Lock()
		filled, done, err, wake := f.filled, f.done, f.err, f.wake
		f.mu.Unlock()
		if filled >= end {
			return f.block.data[:end], nil
		}
		if done {
			return nil, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
