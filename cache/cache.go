// Package cache is bucketfs's block cache: memory over an optional disk
// tier, behind one type.
//
// Objects are cut into fixed-size blocks. A block is keyed by bucket, object
// key, ETag and byte range, so a changed object (new ETag) can never be
// served from an older version's blocks.
//
// A Cache holds:
//   - the memory tier (memory.go): resident blocks in a ristretto cache
//     bounded by a byte cost, with TinyLFU admission so one long stream
//     cannot flush the blocks that are read again and again;
//   - flights (flight.go): blocks being fetched. Every reader that needs a
//     missing block joins the same flight, so concurrent misses cost one
//     GET. A flight fills progressively, so a reader waiting for the first
//     128 KiB of a block does not wait for the whole block;
//   - the disk tier (disk*.go), when configured: block files under a cache
//     directory that survive restarts. Fill reads blocks from it before
//     asking the caller's fetch function, and blocks that fetch brought
//     are queued to be written to it when their flight lands.
//
// The package knows nothing of FUSE or S3: callers fetch the bytes. What
// to fetch, and how much memory may be held outside the resident set, is
// the read path's business (package prefetch).
//
// Lock order: Cache.mu -> Flight.mu; memory.closeMu is taken alone (in
// land, after Flight.mu is released); Disk.sendMu -> Disk.mu.
package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bucketfs/bucketfs/counters"
	"github.com/jonboulle/clockwork"
	"github.com/sirupsen/logrus"
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

// Stats are the memory tier's and the flights' counters. They only grow,
// except Resident.
type Stats struct {
	Hits      atomic.Int64 // lookups served by a resident block
	Misses    atomic.Int64 // lookups that found nothing resident
	Joins     atomic.Int64 // misses that joined a flight already under way
	Evictions atomic.Int64 // blocks evicted to stay inside the budget
	Rejected  atomic.Int64 // blocks the admission policy did not keep
	Resident  atomic.Int64 // bytes of resident blocks
	Reused    atomic.Int64 // block buffers taken from the pool, not allocated
}

// Config configures a Cache.
type Config struct {
	// MemoryBytes bounds the resident blocks.
	MemoryBytes int64
	// BlockSize is the size of every block but an object's last.
	BlockSize int64
	// Disk, if set, opens a disk tier under the memory tier.
	Disk *DiskConfig
	// Clock times flights and disk recency; nil means the wall clock.
	Clock clockwork.Clock
	// Log receives the disk tier's warnings; nil means logrus's standard
	// logger.
	Log *logrus.Entry
}

// Cache is the tiered block cache. It is safe for concurrent use.
type Cache struct {
	// Dependencies
	clock clockwork.Clock

	// Constant data
	mem  *memory
	disk *Disk // nil without a disk tier

	// Mutable state
	mu      sync.Mutex      // protects the following
	flights map[Key]*Flight // GUARDED_BY(mu)

	Stats Stats
}

// FetchFunc fills flights of consecutive blocks (each the block after the
// one before) from the object store, in order: it writes each flight's
// Buffer, reports progress with Filled, and Finishes each flight as it
// completes, or with the error that stopped it.
type FetchFunc func(ctx context.Context, flights []*Flight)

// New returns a cache keeping at most cfg.MemoryBytes of resident blocks
// and, with cfg.Disk, opens its disk tier (see OpenDisk's errors).
func New(cfg Config) (*Cache, error) {
	if cfg.MemoryBytes <= 0 || cfg.BlockSize <= 0 {
		return nil, errors.New("cache: size and block size must be positive")
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	c := &Cache{clock: cfg.Clock, flights: map[Key]*Flight{}}
	mem, err := newMemory(cfg.MemoryBytes, cfg.BlockSize, &c.Stats)
	if err != nil {
		return nil, err
	}
	c.mem = mem
	if cfg.Disk != nil {
		dc := *cfg.Disk
		if dc.Log == nil {
			dc.Log = cfg.Log
		}
		if dc.Clock == nil {
			dc.Clock = cfg.Clock
		}
		// Blocks left out of a full write queue are written later from
		// the memory tier, if they are still there.
		c.disk, err = openDisk(dc, mem.get)
		if err != nil {
			mem.close()
			return nil, err
		}
	}
	return c, nil
}

// Close writes what the disk tier still has queued, closes it (releasing
// its directory) and releases the memory tier. Flights that land
// afterwards are dropped.
func (c *Cache) Close() {
	if c.disk != nil {
		c.disk.Close()
	}
	c.mem.close()
}

// Get returns a resident block with a reference the caller must Release.
func (c *Cache) Get(k Key) (*Block, bool) {
	if b, ok := c.mem.get(k); ok {
		c.Stats.Hits.Add(1)
		return b, true
	}
	c.Stats.Misses.Add(1)
	return nil, false
}

// Contains reports whether k is resident, without counting a lookup.
func (c *Cache) Contains(k Key) bool { return c.mem.contains(k) }

// HasDisk reports whether the cache has a disk tier.
func (c *Cache) HasDisk() bool { return c.disk != nil }

// OnDisk reports whether the disk tier has a file for block k (false
// without a disk tier). A file found damaged when read is a miss then.
func (c *Cache) OnDisk(k Key) bool { return c.disk != nil && c.disk.Has(k) }

// Persist writes block k to the disk tier now, unless it is there already,
// and returns once it is (see Disk.Write). Without a disk tier it does
// nothing.
func (c *Cache) Persist(k Key, data []byte) error {
	if c.disk == nil {
		return nil
	}
	return c.disk.Write(k, data)
}

// DiskStats returns the disk tier's counters; nil without a disk tier.
func (c *Cache) DiskStats() *DiskStats {
	if c.disk == nil {
		return nil
	}
	return &c.disk.Stats
}

// WaitScan blocks until the disk tier's index has been rebuilt (for tests
// and tools); at once without a disk tier.
func (c *Cache) WaitScan() {
	if c.disk != nil {
		c.disk.WaitScan()
	}
}

// Join returns the flight for k and a reference to its block that the
// caller must Release. When no flight is under way it makes one of size
// bytes and returns created=true: the caller must then give it to Fill.
// A resident block comes back as a finished flight.
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
	b = c.mem.pool.get(size)
	b.Ref() // the caller's; the flight keeps the first
	f = newFlight(k, b, c)
	c.flights[k] = f
	return f, b, true
}

// Fill fills flights that Join created for the caller: from the disk tier
// where it has them (read in parallel: a disk serves several requests at
// once faster than one after another), the rest by fetch, one call per run
// of consecutive blocks. Every flight has ended when it returns.
func (c *Cache) Fill(ctx context.Context, fetch FetchFunc, flights ...*Flight) {
	defer finishAll(flights, errors.New("cache: fetch left a flight unfinished"))
	if d := c.disk; d != nil {
		hit := make([]bool, len(flights))
		var wg sync.WaitGroup
		for i, f := range flights {
			if d.Has(f.key) {
				wg.Go(func() { hit[i] = ctx.Err() == nil && d.Read(f.key, f.Buffer()) })
			}
		}
		wg.Wait()
		rest := flights[:0:0]
		for i, f := range flights {
			if !hit[i] {
				rest = append(rest, f)
				continue
			}
			f.mu.Lock()
			f.fromDisk = true
			f.mu.Unlock()
			f.summing = false // not written back to the disk
			f.Filled(f.Len())
			f.Finish(nil)
		}
		flights = rest
	}
	for len(flights) > 0 {
		n := 1
		for n < len(flights) && flights[n].key.Index == flights[n-1].key.Index+1 {
			n++
		}
		fetch(ctx, flights[:n])
		flights = flights[n:]
	}
}

// land is called by a flight when it ends. A good block is offered to the
// memory tier first and the flight stays joinable until the tier has
// applied it, so a reader arriving just after never finds neither and
// fetches the block again. A block fetched from the store is queued for
// the disk tier.
func (c *Cache) land(f *Flight, err error, fromDisk bool) {
	if err == nil {
		c.mem.put(f.key, f.block)
		if c.disk != nil && !fromDisk {
			c.disk.Enqueue(f.key, f.block)
		}
	}
	c.mu.Lock()
	if c.flights[f.key] == f {
		delete(c.flights, f.key)
	}
	c.mu.Unlock()
}

// Counters lists the cache's counters, the disk tier's with them.
func (c *Cache) Counters() []counters.Counter {
	s := &c.Stats
	cs := []counters.Counter{
		counters.New("cache_hits", "Block lookups served by the memory cache.", s.Hits.Load),
		counters.New("cache_misses", "Block lookups the memory cache could not serve.", s.Misses.Load),
		counters.New("cache_joins", "Misses that joined a fetch of the same block already under way.", s.Joins.Load),
		counters.New("cache_evictions", "Blocks evicted to stay inside the memory cache's size.", s.Evictions.Load),
		counters.New("cache_rejected", "Blocks the memory cache's admission policy did not keep.", s.Rejected.Load),
		counters.Gauge("cache_resident_bytes", "Bytes of blocks in the memory cache.", s.Resident.Load),
		counters.New("cache_buffers_reused", "Block buffers taken from the pool rather than allocated.", s.Reused.Load),
	}
	if c.disk == nil {
		return append(cs, counters.Gauge("disk_cache", "1 when the mount has a disk cache.", func() int64 { return 0 }))
	}
	return append(append(cs, counters.Gauge("disk_cache", "1 when the mount has a disk cache.", func() int64 { return 1 })),
		c.disk.counters()...)
}
