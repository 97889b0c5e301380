// Package prefetch is bucketfs's read path: the block cache (package
// cache), the read-ahead budget and, per open file, a Reader that detects
// the access pattern and reads ahead of sequential readers. New builds all
// of it from Options; the FUSE tree sees only Readers, and the disk tier
// through Warm and CachedBytes.
//
// One read flows: fs handle.Read -> Reader.ReadRef -> classify (pattern.go)
// -> a stream read (stream.go: held blocks, Cache.Join, Cache.Fill) or a
// random read (random.go: resident or disk blocks, else an exact GET) ->
// Manager.fetch -> body (resume.go) -> store.Get.
//
// A Reader serves one open file (one pinned object version). Its reads fall
// in two classes:
//
//   - Stream reads continue a sequential stream: they are served from whole
//     blocks that the stream holds (fetched, or in flight and filling), and
//     the stream keeps a window of blocks ahead of the reader, fetched as
//     parallel ranged GETs. The window starts at one block and doubles each
//     time the reader enters a new block, up to MaxReadahead.
//   - Other reads (random records, a tag read at the end of a file, a short
//     jump back) are served from resident blocks when they are cached and
//     otherwise by a GET of exactly the bytes asked for: no read
//     amplification. They do not disturb the stream, so a media player that
//     reads its tags or jumps back a little keeps its read-ahead.
//
// A new stream starts at offset 0 or where a read continues the previous
// non-stream read; it replaces the old stream and releases its blocks. The
// first block of a new stream is filled progressively, so the first bytes
// come after one round trip whatever the block size.
//
// Memory: --cache-memory is split in two halves, resident blocks (the
// cache's memory tier) and the Budget: every block a stream holds, and
// every block in flight, is counted in it. Read-ahead takes bytes only
// while a reserve stays free, which blocks that readers wait for may use;
// so with many readers windows shrink instead of memory growing. A hold on
// a block in flight is given back by the flight itself when it lands
// (cache.Flight.AfterLanding). Closing a Reader cancels its GETs and waits
// for the goroutines it started.
//
// INVARIANT: the budget's use is the sum of the holds: one per block a
// stream holds, one per block a read waits for outside a stream (given
// back when it lands), and Warm's while it runs. A block that several
// files hold is counted once per hold. checkInvariants, in tests, checks
// it once the readers are quiet and no warm runs: then the use is what
// the streams hold.
//
// Lock order: Manager.readersMu -> Reader.mu -> (cache.Cache.mu ->
// cache.Flight.mu); Budget.mu and missSet.mu are leaves, taken with
// nothing else or under Reader.mu. aheadSet.mu (files.go) is taken alone,
// after readersMu, or before Budget.mu and cache.Cache.mu.
package prefetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/counters"
	"github.com/bucketfs/bucketfs/store"
	"github.com/jonboulle/clockwork"
	"github.com/sirupsen/logrus"
)

// Options configure the read path of one mount.
type Options struct {
	// CacheMemory is the memory for blocks: half holds resident blocks,
	// half is the budget for blocks held by open files (in flight or read
	// ahead).
	CacheMemory int64
	// BlockSize is the unit of caching and of read-ahead GETs.
	BlockSize int64
	// MaxReadahead caps one stream's window.
	MaxReadahead int64
	// MaxGets bounds read-ahead GETs in flight for the whole mount; 0
	// means 16.
	MaxGets int
	// SplitBytes is the largest read the kernel may deliver as several
	// contiguous requests: contiguous reads covering no more than this
	// (nor than 256 KiB) are not taken for a sequential reader. Twice the
	// kernel's request size when it is small (128 KiB read-ahead). With
	// the kernel's read-ahead raised to R, twice R: one random read of a
	// file other handles read too can arrive as the kernel's read-ahead
	// around it (up to R, longer when pages before it are cached) and an
	// asynchronous read-ahead (up to R) started at a page another read
	// marked. 0 when the kernel sends whole reads.
	SplitBytes int64
	// MaxRetries is how many times in a row a GET body that stalls or
	// breaks off is resumed without receiving a byte before the read
	// fails.
	MaxRetries int
	// StallTimeout is how long a GET's body may go without a byte before
	// it is cancelled and resumed; 0 means 30s. (The store bounds the wait
	// for the answer itself.)
	StallTimeout time.Duration
	// SlowRead, if set, is how long a read may take before it is logged
	// (at info, to Log) with what it waited for, and counted in
	// Stats.SlowReads.
	SlowRead time.Duration
	// Log receives slow reads, budget accounting errors and the disk
	// tier's warnings; nil logs nothing of the read path's own.
	Log *logrus.Entry
	// Disk, if set, opens a disk tier under the memory tier: blocks are
	// looked for there before a GET, and blocks fetched from the object
	// store are queued to be written there.
	Disk *cache.DiskConfig
	// IdleStream is how recently a stream must have been read to be safe
	// from reclaim: a reader streaming at speed reads every few
	// milliseconds. 0 means 50ms.
	IdleStream time.Duration
	// PausedStream is how long a stream whose reader has not read
	// elsewhere in the file since must go unread to be reclaimed: a slow
	// consumer (a training step between reads, a player at its bitrate)
	// keeps its read-ahead; a paused one gives it up. 0 means 2s.
	PausedStream time.Duration
	// Clock is the read path's time; nil means the wall clock.
	Clock clockwork.Clock
}

// Stats are the read path's counters, for benchmarks and metrics.
type Stats struct {
	Gets             atomic.Int64 // GET requests sent
	BytesFetched     atomic.Int64 // body bytes received
	BytesRead        atomic.Int64 // bytes returned to readers
	ReadaheadBlocks  atomic.Int64 // blocks fetched ahead of a reader
	ReadaheadUsed    atomic.Int64 // of those, blocks a reader then read
	ReadaheadWasted  atomic.Int64 // bytes fetched ahead and never read
	StreamsStarted   atomic.Int64
	RandomReads      atomic.Int64 // reads served outside a stream
	OpenReaders      atomic.Int64
	InflightGets     atomic.Int64
	BlockCacheServed atomic.Int64 // reads (or parts) served by resident blocks outside streams
	BudgetFallbacks  atomic.Int64 // stream reads served by an exact GET for want of budget
	WarmedBytes      atomic.Int64 // bytes written to the disk tier by Warm
	Resumes          atomic.Int64 // GET bodies resumed after a stall or a cut
	SlowReads        atomic.Int64 // reads that took Options.SlowRead or longer
	Promoted         atomic.Int64 // blocks random reads fetched whole for the disk tier
	StreamsReclaimed atomic.Int64 // idle streams dropped to free budget for other reads
	InlineBlocks     atomic.Int64 // small files cached from the content a listing carried (files.go)
}

// Manager is the read path of one mount: what all its Readers share.
type Manager struct {
	// Dependencies
	st    store.Store
	cache *cache.Cache
	clock clockwork.Clock

	// Constant data
	cfg     Options
	budget  *Budget
	reserve int64         // budget bytes read-ahead leaves to waiting readers
	slots   chan struct{} // read-ahead GET slots
	misses  *missSet      // blocks random reads missed; nil without a disk tier
	randoms *randomFiles  // files whose last Reader read them randomly

	// Mutable state
	splitBytes atomic.Int64         // Options.SplitBytes, as set now
	readersMu  sync.Mutex           // protects readers
	readers    map[*Reader]struct{} // GUARDED_BY(readersMu); open readers, for reclaim
	ahead      aheadSet             // small files fetched before their open (files.go)

	Stats Stats
}

// New returns the read path over st: the block cache (opening the disk
// tier when o.Disk is set; its errors are the disk tier's) and the
// read-ahead budget.
func New(st store.Store, o Options) (*Manager, error) {
	if o.BlockSize <= 0 || o.CacheMemory < 2*o.BlockSize {
		return nil, fmt.Errorf("prefetch: cache memory %d must hold two blocks of %d bytes", o.CacheMemory, o.BlockSize)
	}
	o = o.withDefaults()
	held := o.CacheMemory / 2
	c, err := cache.New(cache.Config{MemoryBytes: o.CacheMemory - held, BlockSize: o.BlockSize, Disk: o.Disk, Clock: o.Clock, Log: o.Log})
	if err != nil {
		return nil, err
	}
	return newManager(st, c, held, o), nil
}

func (o Options) withDefaults() Options {
	if o.MaxGets <= 0 {
		o.MaxGets = 16
	}
	if o.MaxReadahead < o.BlockSize {
		o.MaxReadahead = o.BlockSize
	}
	if o.IdleStream <= 0 {
		o.IdleStream = 50 * time.Millisecond
	}
	if o.PausedStream <= 0 {
		o.PausedStream = 2 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	return o
}

// newManager returns a read path over cache c with a budget of held
// bytes. New splits the memory; tests size the two on their own.
func newManager(st store.Store, c *cache.Cache, held int64, o Options) *Manager {
	o = o.withDefaults()
	m := &Manager{
		st: st, cache: c, clock: o.Clock, cfg: o,
		budget:  NewBudget(held),
		reserve: max(held/4, 2*o.BlockSize),
		slots:   make(chan struct{}, o.MaxGets),
		readers: map[*Reader]struct{}{},
	}
	if o.Log != nil {
		m.budget.SetLog(o.Log)
	}
	m.splitBytes.Store(o.SplitBytes)
	m.randoms = newRandomFiles(randomFilesKept)
	if c.HasDisk() {
		m.misses = newMissSet(missedBlocks)
	}
	return m
}

// Close closes the cache: the disk tier writes what it has queued and
// lets go of its directory. REQUIRES: every Reader is closed.
func (m *Manager) Close() {
	m.closeAhead()
	m.cache.Close()
}

// MemoryLimit is the memory the read path may hold at most, with room for
// the rest of the daemon's heap: blocks (resident and held), blocks queued
// for the disk tier, and 32 MiB. The daemon gives it (plus what else it
// keeps) to the garbage collector as its memory limit, so the heap stays
// near the budget rather than at twice the live size. The process's RSS
// runs some 20 MiB above the limit (the runtime's own memory, pages not
// yet returned): 32 MiB keep 32 readers within --cache-memory plus 64 MiB
// (make bench, workload 7), where their live heap peaks some 60 MiB
// below --cache-memory.
func (m *Manager) MemoryLimit() int64 {
	limit := m.cfg.CacheMemory + 32<<20
	if m.cfg.Disk != nil {
		limit += int64(m.cfg.Disk.QueueLen()) * m.cfg.BlockSize
	}
	return limit
}

// HasDisk reports whether the read path has a disk tier (then Warm and
// CachedBytes serve the tree's disk cache attributes).
func (m *Manager) HasDisk() bool { return m.cache.HasDisk() }

func (m *Manager) stallTimeout() time.Duration {
	if m.cfg.StallTimeout <= 0 {
		return 30 * time.Second
	}
	return m.cfg.StallTimeout
}

// SetSplitBytes changes Options.SplitBytes, for when the kernel's request
// size is known only after mounting.
func (m *Manager) SetSplitBytes(n int64) { m.splitBytes.Store(n) }

// Options returns the manager's settings.
func (m *Manager) Options() Options { return m.cfg }

// Budget returns the shared budget.
func (m *Manager) Budget() *Budget { return m.budget }

// NewReader returns a Reader of version v.
func (m *Manager) NewReader(v store.Version) *Reader {
	ctx, cancel := context.WithCancel(context.Background())
	m.Stats.OpenReaders.Add(1)
	r := &Reader{
		m: m, v: v, bs: m.cfg.BlockSize,
		ctx: ctx, cancel: cancel,
		startRandom: m.randoms.has(v),
	}
	m.adoptAhead(r)
	m.readersMu.Lock()
	m.readers[r] = struct{}{}
	m.readersMu.Unlock()
	return r
}

// Counters lists the read path's counters, the cache's with them.
func (m *Manager) Counters() []counters.Counter {
	p := &m.Stats
	cs := []counters.Counter{
		counters.New("gets", "GET requests sent to the object store.", p.Gets.Load),
		counters.Gauge("gets_inflight", "GET requests under way.", p.InflightGets.Load),
		counters.New("bytes_fetched", "Object bytes received from the object store.", p.BytesFetched.Load),
		counters.New("bytes_read", "Bytes returned to readers.", p.BytesRead.Load),
		counters.New("readahead_blocks", "Blocks fetched ahead of a reader.", p.ReadaheadBlocks.Load),
		counters.New("readahead_used_blocks", "Blocks fetched ahead that a reader then read.", p.ReadaheadUsed.Load),
		counters.New("readahead_wasted_bytes", "Bytes fetched ahead that no reader read.", p.ReadaheadWasted.Load),
		counters.New("streams_started", "Sequential streams detected.", p.StreamsStarted.Load),
		counters.New("streams_reclaimed", "Idle streams dropped to free read-ahead budget for other reads.", p.StreamsReclaimed.Load),
		counters.New("random_reads", "Reads served outside a sequential stream.", p.RandomReads.Load),
		counters.New("random_block_hits", "Reads (or parts of reads) outside a stream served by cached blocks.", p.BlockCacheServed.Load),
		counters.New("random_promoted", "Blocks fetched whole for the disk cache after random reads missed them twice.", p.Promoted.Load),
		counters.New("listing_content_files", "Small files cached from the content a Tigris listing carried (--tigris-list-content).", p.InlineBlocks.Load),
		counters.New("budget_fallbacks", "Stream reads served by an exact GET because the read-ahead budget was full.", p.BudgetFallbacks.Load),
		counters.Gauge("open_readers", "Files open for reading.", p.OpenReaders.Load),
		counters.New("get_resumes", "GET bodies resumed from where they stopped after a stall or a cut.", p.Resumes.Load),
		counters.New("slow_reads", "Reads that took --log-slow-reads or longer.", p.SlowReads.Load),
		counters.Gauge("budget_used_bytes", "Read-ahead budget bytes held now (blocks in flight or read ahead).", m.budget.Used),
		counters.New("budget_mismatches", "Read-ahead budget releases that did not match what was held (an accounting bug; logged and clamped).", m.budget.Mismatches),
	}
	if m.cache.HasDisk() {
		cs = append(cs, counters.New("warmed_bytes", "Bytes written to the disk cache by warm requests.", p.WarmedBytes.Load))
	}
	return append(cs, m.cache.Counters()...)
}

// reclaim makes room in the budget for a read of need bytes that found it
// full, by dropping other readers' streams, the least recently read first,
// among those with no read under way (a reader waiting for a slow store is
// not idle) that were left for reads elsewhere in their file more than
// Options.IdleStream ago, or not read at all for Options.PausedStream.
// Their landed blocks go back to the budget at once (and stay in the
// cache); blocks in flight once they land. Streams that stopped would
// otherwise keep the budget from readers that need it: a record loader
// with many files open, where a few records that happened to be adjacent
// looked like a stream, or a paused player. It reports whether it dropped
// any stream.
func (m *Manager) reclaim(except *Reader, need int64) bool {
	type cand struct {
		r    *Reader
		last time.Time
	}
	var cs []cand
	m.readersMu.Lock()
	for r := range m.readers {
		if r == except {
			continue
		}
		r.mu.Lock()
		if r.reclaimableLocked() {
			cs = append(cs, cand{r, r.s.last})
		}
		r.mu.Unlock()
	}
	m.readersMu.Unlock()
	slices.SortFunc(cs, func(a, b cand) int { return a.last.Compare(b.last) })
	dropped := 0
	for _, c := range cs {
		if m.budget.Capacity()-m.budget.Used() >= need {
			break
		}
		c.r.mu.Lock()
		if c.r.reclaimableLocked() && c.r.s.last.Equal(c.last) {
			c.r.dropStreamLocked()
			dropped++
		}
		c.r.mu.Unlock()
	}
	m.Stats.StreamsReclaimed.Add(int64(dropped))
	return dropped > 0
}

// fill fills flights of consecutive blocks that Join created, through
// the cache (which reads the disk tier first) and otherwise with one GET
// per run of consecutive blocks. With slot set a GET first takes one of
// the mount's read-ahead GET slots.
func (m *Manager) fill(ctx context.Context, v store.Version, slot bool, flights ...*cache.Flight) {
	m.cache.Fill(ctx, func(ctx context.Context, run []*cache.Flight) { m.fetch(ctx, v, slot, run) }, flights...)
}

// fetch fills flights of consecutive blocks with one GET, finishing each
// as it fills. It is the cache's FetchFunc.
func (m *Manager) fetch(ctx context.Context, v store.Version, slot bool, flights []*cache.Flight) {
	if slot {
		select {
		case m.slots <- struct{}{}:
			defer func() { <-m.slots }()
		case <-ctx.Done():
			finishAll(flights, ctx.Err())
			return
		}
	}
	first, last := flights[0], flights[len(flights)-1]
	off := first.Key().Offset
	end := last.Key().Offset + int64(last.Len())
	body, err := m.open(ctx, v, off, end-off)
	if err != nil {
		finishAll(flights, err)
		return
	}
	defer body.Close()
	for i, f := range flights {
		n, err := m.readInto(ctx, body, f.Buffer(), f.Filled)
		if err == nil && n < f.Len() {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			finishAll(flights[i:], err)
			return
		}
		f.Finish(nil)
	}
}

func finishAll(flights []*cache.Flight, err error) {
	for _, f := range flights {
		f.Finish(err)
	}
}

// get reads len(buf) bytes at off of v into buf with one GET. It returns
// how many bytes arrived.
func (m *Manager) get(ctx context.Context, v store.Version, off int64, buf []byte) (int, error) {
	body, err := m.open(ctx, v, off, int64(len(buf)))
	if err != nil {
		return 0, err
	}
	defer body.Close()
	return m.readInto(ctx, body, buf, nil)
}

// readInto fills buf from body, reporting progress (if not nil) as bytes
// arrive, and returns how many bytes it read.
func (m *Manager) readInto(ctx context.Context, body io.Reader, buf []byte, progress func(int)) (int, error) {
	const chunk = 256 << 10
	n := 0
	for n < len(buf) {
		k, rerr := body.Read(buf[n:min(n+chunk, len(buf))])
		n += k
		m.Stats.BytesFetched.Add(int64(k))
		if progress != nil && k > 0 {
			progress(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return n, errors.Join(ctx.Err(), rerr)
			}
			return n, rerr
		}
	}
	return n, nil
}
