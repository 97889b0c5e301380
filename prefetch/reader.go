package prefetch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
)

// backSlack is how far behind a stream's position a read may land and
// still count as part of the stream: the kernel sends parallel reads that
// can arrive out of order, and players step back a little.
const backSlack = 2 << 20

// A run of contiguous reads outside the stream becomes the stream once it
// has at least two reads and more than runStart bytes. Without the byte
// floor, one 256 KiB record read that the kernel cut into two 128 KiB
// requests would look sequential; with it, a player resuming after a seek
// (the kernel's read-ahead grows its requests) is a stream by its second
// read.
const runStart = 256 << 10

// leadTime is how far ahead of a stream's reader, in time at its measured
// rate, the window reaches: enough to hide several round trips, not so much
// that a slow reader (audio at 320 kbit/s) holds minutes of data it may
// skip.
const leadTime = 2 * time.Second

// Reader reads one object version for one open file. It is safe for
// concurrent use.
type Reader struct {
	// Dependencies
	m *Manager

	// Constant data
	v  store.Version
	bs int64
	// ctx lives as long as the Reader; Close cancels it and with it every
	// read-ahead GET.
	ctx    context.Context
	cancel context.CancelFunc

	// Mutable state
	active atomic.Int32 // reads under way; a file being read is not idle
	mu     sync.Mutex   // protects the following
	s      *stream
	// run is the contiguous run of reads outside the stream: [runStart,
	// runEnd). When it reaches streamStart bytes it becomes the stream.
	runStart, runEnd int64
	runReads         int
	reads            int64 // reads served so far
	closed           bool
}

// stream is a sequential reader's state.
// INVARIANT: every held block holds a block reference and its bytes in the
// budget.
type stream struct {
	start   int64     // where the stream began
	began   time.Time // when
	last    time.Time // when it was last read
	next    int64     // offset just past the furthest byte read
	window  int64     // bytes to keep fetched ahead of next
	grownAt int64     // block index where the window last grew
	strays  int       // reads of the file elsewhere since the stream's last
	held    map[int64]*heldBlock
}

type heldBlock struct {
	f      *cache.Flight
	blk    *cache.Block
	bytes  int64              // budget held for it
	cancel context.CancelFunc // cancels its GET; nil if another reader fetches it
	ahead  bool               // fetched ahead of the reader
	used   bool               // a read was served from it
}

var (
	errClosed   = errors.New("prefetch: reader closed")
	errNoBudget = errors.New("prefetch: block budget exhausted")
	errShort    = errors.New("prefetch: short read from the object store")
)

func (r *Reader) blockLen(idx int64) int64 { return r.m.blockLen(r.v, idx) }

func (r *Reader) key(idx int64) cache.Key { return r.m.blockKey(r.v, idx) }

// ReadAt fills p from off. It implements fs.ObjectReader.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	data, release, err := r.ReadRef(ctx, p, off)
	if err != nil {
		return 0, err
	}
	n := copy(p, data)
	if release != nil {
		release()
	}
	return n, nil
}

// ReadRef returns the bytes at [off, off+len(dest)), clamped to the object.
// They are either in dest or, when one cached block holds them all, in that
// block: then release is not nil and must be called once they were sent.
// This spares a copy on the hot path.
func (r *Reader) ReadRef(ctx context.Context, dest []byte, off int64) ([]byte, func(), error) {
	if off >= r.v.Size || len(dest) == 0 {
		return nil, nil, nil
	}
	start := time.Now()
	r.active.Add(1)
	defer r.active.Add(-1)
	end := min(off+int64(len(dest)), r.v.Size)
	dest = dest[:end-off]
	var tr readTrace

	r.mu.Lock()
	tr.locked = time.Since(start)
	if r.closed {
		r.mu.Unlock()
		return nil, nil, errClosed
	}
	seq := r.classifyLocked(off, end)
	tailFirst := r.reads == 0 && !seq && off >= r.v.Size-r.bs
	if tailFirst {
		// Media players and zip readers look at the end of a file first
		// (ID3v1 tags, a central directory), then read from the start:
		// fetch the first block while the tail is read.
		r.s = r.newStream(0, 0)
	}
	r.reads++
	r.mu.Unlock()
	if tailFirst {
		r.readAhead()
	}

	var (
		data    []byte
		release func()
		err     error
	)
	switch {
	case seq:
		tr.class = "stream"
	case tailFirst:
		tr.class = "tail"
	default:
		tr.class = "random"
	}
	if seq || r.v.Size <= r.bs {
		// Objects no larger than a block are always fetched whole.
		data, release, err = r.blockRead(ctx, &tr, dest, off, seq)
	} else {
		r.m.Stats.RandomReads.Add(1)
		data, release, err = r.randomRead(ctx, &tr, dest, off)
	}
	r.slow(&tr, off, len(dest), time.Since(start))
	if err != nil {
		return nil, nil, err
	}
	r.m.Stats.BytesRead.Add(int64(len(data)))
	return data, release, nil
}

// classifyLocked decides whether [off, end) belongs to the stream, starting
// or replacing the stream when a sequential pattern appears.
// REQUIRES: r.mu held.
func (r *Reader) classifyLocked(off, end int64) bool {
	if s := r.s; s != nil && off >= s.next-backSlack && off <= s.next+max(s.window, r.bs) {
		s.next = max(s.next, end)
		s.last = time.Now()
		s.strays = 0
		if idx := (s.next - 1) / r.bs; idx > s.grownAt {
			s.grownAt = idx
			s.window = min(s.window*2, r.windowCap(s))
		}
		return true
	}
	// A read continuing the run (or overlapping its end, as out-of-order
	// kernel requests do) extends it; anything else starts a new run.
	if off >= r.runStart && off <= r.runEnd && r.runEnd > r.runStart {
		r.runEnd = max(r.runEnd, end)
		r.runReads++
	} else {
		r.runStart, r.runEnd, r.runReads = off, end, 1
	}
	if (off == 0 && r.s == nil) || (r.runReads >= 2 && r.runEnd-r.runStart > max(r.m.splitBytes.Load(), runStart)) {
		r.dropStreamLocked()
		r.s = r.newStream(r.runStart, end)
		r.runStart, r.runEnd, r.runReads = 0, 0, 0
		return true
	}
	if r.s != nil {
		r.s.strays++
	}
	return false
}

// newStream returns a stream that began at start and has been read up to
// next, with a window of one block.
func (r *Reader) newStream(start, next int64) *stream {
	r.m.Stats.StreamsStarted.Add(1)
	now := time.Now()
	return &stream{start: start, began: now, last: now, next: next, window: r.bs, grownAt: max(next-1, 0) / r.bs, held: map[int64]*heldBlock{}}
}

// windowCap bounds a stream's window by its reader's rate: leadTime of
// reading at the rate seen so far, at least two blocks, at most
// MaxReadahead.
func (r *Reader) windowCap(s *stream) int64 {
	elapsed := time.Since(s.began)
	if elapsed < 100*time.Millisecond {
		return r.m.cfg.MaxReadahead // too early to tell: assume a fast reader
	}
	rate := float64(s.next-s.start) / elapsed.Seconds()
	return min(max(int64(rate*leadTime.Seconds()), 2*r.bs), r.m.cfg.MaxReadahead)
}

// blockRead serves [off, off+len(dest)) from whole blocks, held by the
// stream when seq is set, then tops up the read-ahead window.
func (r *Reader) blockRead(ctx context.Context, tr *readTrace, dest []byte, off int64, seq bool) ([]byte, func(), error) {
	end := off + int64(len(dest))
	first, last := off/r.bs, (end-1)/r.bs
	var (
		out     []byte
		release func()
	)
	if seq && last > first {
		// Start the window's GETs before waiting: a read that crosses into
		// the next block (a kernel read-ahead request just after a stream
		// began) then waits one round trip, not one per block.
		t0 := time.Now()
		r.readAhead()
		tr.ahead += time.Since(t0)
	}
	for idx := first; idx <= last; idx++ {
		bstart := idx * r.bs
		from, to := max(off, bstart)-bstart, min(end, bstart+r.blockLen(idx))-bstart
		data, blk, err := r.blockData(ctx, tr, idx, int(to), seq)
		if errors.Is(err, errNoBudget) {
			// Every byte of the budget is held by other files: serve the
			// bytes asked for from the cache or by an exact GET, holding
			// nothing.
			r.m.Stats.BudgetFallbacks.Add(1)
			seg := dest[bstart+from-off : bstart+to-off]
			data, rel, err := r.randomRead(ctx, tr, seg, bstart+from)
			if err != nil {
				return nil, nil, err
			}
			copy(seg, data)
			if rel != nil {
				rel()
			}
			out = dest
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if first == last {
			out, release = data[from:to], blk.Release
		} else {
			copy(dest[bstart+from-off:], data[from:to])
			blk.Release()
			out = dest
		}
	}
	if seq {
		t0 := time.Now()
		r.readAhead()
		r.releaseBehind()
		tr.ahead += time.Since(t0)
	}
	return out, release, nil
}

// blockData returns the first end bytes of block idx and a reference to
// the block. A flight cancelled by its owner (another file closed, or its
// stream moved on) is joined again.
func (r *Reader) blockData(ctx context.Context, tr *readTrace, idx int64, end int, seq bool) ([]byte, *cache.Block, error) {
	for attempt := 0; ; attempt++ {
		f, blk, how, err := r.demand(ctx, idx, seq)
		if err != nil {
			return nil, nil, err
		}
		landed, age := f.Progress()
		t0 := time.Now()
		data, err := f.Wait(ctx, end)
		if landed < end {
			tr.note(wait{what: how, idx: idx, age: age, landed: landed, size: f.Len(), took: time.Since(t0)})
		}
		if err == nil {
			return data, blk, nil
		}
		blk.Release()
		if ctx.Err() != nil {
			return nil, nil, err
		}
		// A failed flight must not answer later reads: drop it so the next
		// read fetches again.
		r.forget(idx, f)
		if !errors.Is(err, context.Canceled) || attempt == 2 {
			return nil, nil, err
		}
	}
}

// forget drops a held block whose flight failed.
func (r *Reader) forget(idx int64, f *cache.Flight) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s != nil {
		if hb := r.s.held[idx]; hb != nil && hb.f == f {
			r.unholdLocked(idx, hb)
		}
	}
}

// demand returns the flight of block idx and a reference to its block,
// holding the block in the stream when seq is set, and how says where the
// flight came from (for the slow-read log). When the budget is full it
// takes back idle streams' blocks (Manager.reclaim), and failing that
// fails with errNoBudget rather than wait: the budget is held by streams
// whose readers may themselves be waiting.
func (r *Reader) demand(ctx context.Context, idx int64, seq bool) (f *cache.Flight, blk *cache.Block, how string, err error) {
	r.mu.Lock()
	if seq && r.s != nil {
		if hb := r.s.held[idx]; hb != nil {
			hb.used = true
			hb.blk.Ref()
			r.mu.Unlock()
			return hb.f, hb.blk, heldHow(hb), nil
		}
	}
	r.mu.Unlock()

	n := r.blockLen(idx)
	if !r.m.budget.TryAcquire(n, 0) && (!r.m.reclaim(r, n) || !r.m.budget.TryAcquire(n, 0)) {
		return nil, nil, "", errNoBudget
	}
	f, blk, created := r.m.cache.Join(r.key(idx), int(n))
	how = "fetched for this read"
	if !created {
		how = "in flight for another read"
	}
	var cancel context.CancelFunc
	if created {
		// Held blocks outlive this read: tie their GET to the file. A
		// block read once is tied to the read, so interrupting the read
		// cancels its GET.
		parent := ctx
		if seq {
			parent = r.ctx
		}
		var fctx context.Context
		fctx, cancel = context.WithCancel(parent)
		go r.m.fill(fctx, r.v, false, f)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		r.m.budget.Release(n)
		blk.Release()
		if cancel != nil {
			cancel()
		}
		return nil, nil, "", errClosed
	case !seq || r.s == nil:
		// Not held: the budget goes back once the block has landed.
		r.releaseAfterLanding(f, cancel, n)
		return f, blk, how, nil
	case r.s.held[idx] != nil:
		// Another read of this file got there first; let ours land.
		hb := r.s.held[idx]
		r.m.budget.Release(n)
		afterLanding(f, cancel)
		blk.Release()
		hb.used = true
		hb.blk.Ref()
		return hb.f, hb.blk, heldHow(hb), nil
	}
	blk.Ref() // one for the stream, one for the caller
	r.s.held[idx] = &heldBlock{f: f, blk: blk, bytes: n, cancel: cancel, used: true}
	return f, blk, how, nil
}

func heldHow(hb *heldBlock) string {
	if hb.ahead {
		return "read ahead"
	}
	return "held by the stream"
}

// readAhead fetches the blocks of the window that are not held yet, as far
// as the budget allows.
func (r *Reader) readAhead() {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	if s == nil || r.closed {
		return
	}
	first := s.next / r.bs
	last := min((s.next+s.window-1)/r.bs, (r.v.Size-1)/r.bs)
	// A wide window is fetched in GETs of several blocks: each request
	// costs the server (and the round trip) the same whatever its size.
	perGet := int(min(max(s.window/(4*r.bs), 1), maxBlocksPerGet))
	var run []*cache.Flight
	flush := func() {
		switch len(run) {
		case 0:
			return
		case 1:
			// A single block can be cancelled on its own when the
			// stream moves on.
			ctx, cancel := context.WithCancel(r.ctx)
			s.held[run[0].Key().Index].cancel = cancel
			go r.m.fill(ctx, r.v, true, run[0])
		default:
			// Blocks sharing a GET end with it; Close cancels it.
			go r.m.fill(r.ctx, r.v, true, run...)
		}
		run = nil
	}
	defer flush()
	// In steady state the window slides one block per block read; wait
	// until a whole GET's worth is missing at its far end, unless that end
	// is near (a narrow window) or is the end of the object.
	missing, firstMissing := 0, int64(-1)
	for idx := first; idx <= last; idx++ {
		if s.held[idx] == nil {
			missing++
			if firstMissing < 0 {
				firstMissing = idx
			}
		}
	}
	if perGet > 1 && missing < perGet && last < (r.v.Size-1)/r.bs && (firstMissing < 0 || (firstMissing-first)*r.bs >= s.window/2) {
		return
	}
	for idx := first; idx <= last; idx++ {
		if s.held[idx] != nil {
			flush()
			continue
		}
		n := r.blockLen(idx)
		if !r.m.budget.TryAcquire(n, r.m.reserve) {
			return
		}
		f, blk, created := r.m.cache.Join(r.key(idx), int(n))
		s.held[idx] = &heldBlock{f: f, blk: blk, bytes: n, ahead: true}
		if !created {
			flush()
			continue
		}
		r.m.Stats.ReadaheadBlocks.Add(1)
		run = append(run, f)
		if len(run) == perGet {
			flush()
		}
	}
}

// maxBlocksPerGet caps how many blocks one read-ahead GET fetches.
const maxBlocksPerGet = 4

// releaseBehind lets go of blocks the stream has passed.
func (r *Reader) releaseBehind() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s == nil {
		return
	}
	limit := r.s.next - backSlack
	for idx, hb := range r.s.held {
		if (idx+1)*r.bs <= limit {
			r.unholdLocked(idx, hb)
		}
	}
}

// unholdLocked releases one held block. REQUIRES: r.mu held.
func (r *Reader) unholdLocked(idx int64, hb *heldBlock) {
	delete(r.s.held, idx)
	if hb.ahead {
		if hb.used {
			r.m.Stats.ReadaheadUsed.Add(1)
		} else {
			r.m.Stats.ReadaheadWasted.Add(hb.bytes)
		}
	}
	done, _ := hb.f.Done()
	if !done && hb.cancel != nil && !hb.used {
		hb.cancel() // nobody here needs it any more
	}
	hb.blk.Release()
	if done {
		r.m.budget.Release(hb.bytes)
		if hb.cancel != nil {
			hb.cancel()
		}
		return
	}
	// Bytes are still arriving in the buffer: they stay counted until the
	// flight ends.
	r.releaseAfterLanding(hb.f, hb.cancel, hb.bytes)
}

// releaseAfterLanding gives n budget bytes back, and frees cancel, once f
// has ended.
func (r *Reader) releaseAfterLanding(f *cache.Flight, cancel context.CancelFunc, n int64) {
	go func() {
		f.Wait(context.Background(), f.Len())
		if cancel != nil {
			cancel()
		}
		r.m.budget.Release(n)
	}()
}

// afterLanding lets f finish landing in the cache, then frees its context.
func afterLanding(f *cache.Flight, cancel context.CancelFunc) {
	if cancel == nil {
		return
	}
	go func() {
		f.Wait(context.Background(), f.Len())
		cancel()
	}()
}

// dropStreamLocked releases every block of the stream. REQUIRES: r.mu held.
func (r *Reader) dropStreamLocked() {
	if r.s == nil {
		return
	}
	for idx, hb := range r.s.held {
		r.unholdLocked(idx, hb)
	}
	r.s = nil
}

// randomRead serves a read outside the stream: from cached blocks where
// there are some (in memory or on disk), from whole blocks fetched for the
// disk tier (see promote), otherwise by a GET of exactly the missing bytes,
// straight into dest.
func (r *Reader) randomRead(ctx context.Context, tr *readTrace, dest []byte, off int64) ([]byte, func(), error) {
	end := off + int64(len(dest))
	for pos := off; pos < end; {
		idx := pos / r.bs
		bstart := idx * r.bs
		segEnd := min(end, bstart+r.bs)
		blk, ok, err := r.local(ctx, tr, idx)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			if pos == off && segEnd == end {
				// The whole read lies in this block: no copy.
				return blk.Bytes()[off-bstart : end-bstart], blk.Release, nil
			}
			copy(dest[pos-off:segEnd-off], blk.Bytes()[pos-bstart:segEnd-bstart])
			blk.Release()
			pos = segEnd
			continue
		}
		// Extend the GET over following blocks that are not cached either.
		for segEnd < end && !r.m.cache.Contains(r.key(segEnd/r.bs)) && !r.onDisk(segEnd/r.bs) && !r.promote(segEnd/r.bs) {
			segEnd = min(end, segEnd+r.bs)
		}
		t0 := time.Now()
		n, err := r.m.get(ctx, r.v, pos, dest[pos-off:segEnd-off])
		tr.note(wait{what: "exact GET", idx: idx, size: int(segEnd - pos), took: time.Since(t0)})
		if err != nil {
			return nil, nil, err
		}
		if int64(n) < segEnd-pos {
			return nil, nil, errShort
		}
		pos = segEnd
	}
	return dest, nil, nil
}

// onDisk reports whether the disk tier has block idx.
func (r *Reader) onDisk(idx int64) bool {
	return r.m.cfg.Disk != nil && r.m.cfg.Disk.Has(r.key(idx))
}

// fromDisk loads block idx from the disk tier into the block cache and
// returns a reference to it; false when the disk tier does not have it or
// it could not be loaded now.
func (r *Reader) fromDisk(ctx context.Context, tr *readTrace, idx int64) (*cache.Block, bool) {
	if !r.onDisk(idx) {
		return nil, false
	}
	_, blk, err := r.blockData(ctx, tr, idx, int(r.blockLen(idx)), false)
	if err != nil {
		return nil, false
	}
	return blk, true
}

// cached returns a reference to block idx if the stream holds it complete
// or it is resident.
func (r *Reader) cached(idx int64) (*cache.Block, bool) {
	r.mu.Lock()
	if r.s != nil {
		if hb := r.s.held[idx]; hb != nil {
			if done, err := hb.f.Done(); done && err == nil {
				hb.blk.Ref()
				r.mu.Unlock()
				return hb.blk, true
			}
		}
	}
	r.mu.Unlock()
	return r.m.cache.Get(r.key(idx))
}

// Close cancels the Reader's GETs and releases its blocks.
func (r *Reader) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.dropStreamLocked()
	r.mu.Unlock()
	r.cancel()
	r.m.readersMu.Lock()
	delete(r.m.readers, r)
	r.m.readersMu.Unlock()
	r.m.Stats.OpenReaders.Add(-1)
}
