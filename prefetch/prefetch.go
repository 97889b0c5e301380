// Package prefetch is bucketfs's read path: per open file it detects the
// access pattern and reads ahead of sequential readers.
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
// Memory: every block a stream holds is counted in a cache.Budget shared by
// all files. Read-ahead takes bytes only while a reserve stays free, which
// blocks that readers wait for may use; so with many readers windows
// shrink instead of memory growing. Closing a Reader cancels its GETs.
package prefetch

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// Config tunes the read path of one mount.
type Config struct {
	// BlockSize is the unit of caching and of read-ahead GETs.
	BlockSize int64
	// MaxReadahead caps one stream's window.
	MaxReadahead int64
	// MaxGets bounds read-ahead GETs in flight for the whole mount.
	MaxGets int
	// SplitBytes is the largest read the kernel may deliver as several
	// contiguous requests: contiguous reads covering no more than this
	// (nor than 256 KiB) are not taken for a sequential reader. Twice the
	// kernel's request size when it is small (128 KiB read-ahead); 0 when
	// the kernel sends whole reads.
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
	// Log receives slow reads; nil logs nothing.
	Log *logrus.Entry
	// Disk, if set, is the disk tier under the block cache: blocks are
	// looked for there before a GET, and blocks fetched from the object
	// store are queued to be written there.
	Disk *cache.Disk
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
	SlowReads        atomic.Int64 // reads that took Config.SlowRead or longer
	Promoted         atomic.Int64 // blocks random reads fetched whole for the disk tier
	StreamsReclaimed atomic.Int64 // idle streams dropped to free budget for other reads
}

// Manager owns what all Readers of a mount share.
type Manager struct {
	// Dependencies
	st     store.Store
	cache  *cache.Cache
	budget *cache.Budget

	// Constant data
	cfg     Config
	reserve int64         // budget bytes read-ahead leaves to waiting readers
	slots   chan struct{} // read-ahead GET slots
	misses  *missSet      // blocks random reads missed; nil without a disk tier

	// Mutable state
	splitBytes atomic.Int64         // Config.SplitBytes, as set now
	readersMu  sync.Mutex           // protects readers
	readers    map[*Reader]struct{} // open readers, for reclaim

	Stats Stats
}

// NewManager returns a Manager. REQUIRES: cfg.BlockSize > 0.
func NewManager(st store.Store, c *cache.Cache, b *cache.Budget, cfg Config) *Manager {
	if cfg.MaxGets <= 0 {
		cfg.MaxGets = 16
	}
	if cfg.MaxReadahead < cfg.BlockSize {
		cfg.MaxReadahead = cfg.BlockSize
	}
	m := &Manager{
		st: st, cache: c, budget: b, cfg: cfg,
		reserve: max(b.Capacity()/4, 2*cfg.BlockSize),
		slots:   make(chan struct{}, cfg.MaxGets),
		readers: map[*Reader]struct{}{},
	}
	m.splitBytes.Store(cfg.SplitBytes)
	if cfg.Disk != nil {
		m.misses = newMissSet(missedBlocks)
	}
	return m
}

func (m *Manager) stallTimeout() time.Duration {
	if m.cfg.StallTimeout <= 0 {
		return 30 * time.Second
	}
	return m.cfg.StallTimeout
}

// SetSplitBytes changes Config.SplitBytes, for when the kernel's request
// size is known only after mounting.
func (m *Manager) SetSplitBytes(n int64) { m.splitBytes.Store(n) }

// Config returns the manager's settings.
func (m *Manager) Config() Config { return m.cfg }

// Budget returns the shared budget.
func (m *Manager) Budget() *cache.Budget { return m.budget }

// NewReader returns a Reader of version v.
func (m *Manager) NewReader(v store.Version) *Reader {
	ctx, cancel := context.WithCancel(context.Background())
	m.Stats.OpenReaders.Add(1)
	r := &Reader{
		m: m, v: v, bs: m.cfg.BlockSize,
		ctx: ctx, cancel: cancel,
	}
	m.readersMu.Lock()
	m.readers[r] = struct{}{}
	m.readersMu.Unlock()
	return r
}

// idleStream is how recently a stream must have been read to be safe from
// reclaim: a reader streaming at speed reads every few milliseconds.
var idleStream = 50 * time.Millisecond // a variable for tests

// pausedStream is how long a stream whose reader has not read elsewhere in
// the file since must go unread to be reclaimed: a slow consumer (a
// training step between reads, a player at its bitrate) keeps its
// read-ahead; a paused one gives it up.
var pausedStream = 2 * time.Second // a variable for tests

// reclaimableLocked reports whether r's stream may give its blocks to
// other readers: r has no read under way and the stream has stopped.
// REQUIRES: r.mu held.
func (r *Reader) reclaimableLocked() bool {
	s := r.s
	if r.active.Load() > 0 || s == nil || len(s.held) == 0 {
		return false
	}
	idle := time.Since(s.last)
	return (s.strays > 0 && idle >= idleStream) || idle >= pausedStream
}

// reclaim makes room in the budget for a read of need bytes that found it
// full, by dropping other readers' streams, the least recently read first,
// among those with no read under way (a reader waiting for a slow store is
// not idle) that were left for reads elsewhere in their file more than
// idleStream ago, or not read at all for pausedStream. Their landed blocks
// go back to the budget at once (and stay in the cache); blocks in flight
// once they land. Streams that stopped would otherwise keep the budget from
// readers that need it: a record loader with many files open, where a few
// records that happened to be adjacent looked like a stream, or a paused
// player. It reports whether it dropped any stream.
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

// fill fills flights of consecutive blocks and finishes them: from the
// disk tier where it has them, the rest with one GET per run of
// consecutive blocks. With slot set a GET first takes one of the mount's
// read-ahead GET slots.
func (m *Manager) fill(ctx context.Context, v store.Version, slot bool, flights ...*cache.Flight) {
	if d := m.cfg.Disk; d != nil {
		// Blocks on disk are read in parallel: the disk serves several
		// requests at once faster than one after another.
		hit := make([]bool, len(flights))
		var wg sync.WaitGroup
		for i, f := range flights {
			if d.Has(f.Key()) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hit[i] = ctx.Err() == nil && d.Read(f.Key(), f.Buffer())
				}()
			}
		}
		wg.Wait()
		rest := flights[:0:0]
		for i, f := range flights {
			if hit[i] {
				f.Filled(f.Len())
				f.Finish(nil)
				continue
			}
			rest = append(rest, f)
		}
		flights = rest
	}
	for len(flights) > 0 {
		n := 1
		for n < len(flights) && flights[n].Key().Index == flights[n-1].Key().Index+1 {
			n++
		}
		m.fetch(ctx, v, slot, flights[:n])
		flights = flights[n:]
	}
}

// fetch fills flights of consecutive blocks with one GET.
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
	off := first.Key().Index * m.cfg.BlockSize
	end := last.Key().Index*m.cfg.BlockSize + int64(last.Len())
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
		if m.cfg.Disk != nil {
			m.cfg.Disk.Store(f.Key(), f.Block())
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
