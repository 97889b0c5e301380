package prefetch

// Stream reads: blocks held by a stream, the read-ahead window ahead of
// its reader, and giving blocks back.

import (
	"context"
	"errors"
	"time"

	"github.com/bucketfs/bucketfs/cache"
)

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
		t0 := r.m.clock.Now()
		r.readAhead()
		tr.ahead += r.m.clock.Since(t0)
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
		t0 := r.m.clock.Now()
		r.readAhead()
		r.releaseBehind()
		tr.ahead += r.m.clock.Since(t0)
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
		t0 := r.m.clock.Now()
		data, err := f.Wait(ctx, end)
		if landed < end {
			tr.note(wait{what: how, idx: idx, age: age, landed: landed, size: f.Len(), took: r.m.clock.Since(t0)})
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
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.m.budget.Release(n)
		if created {
			// As if its fill had been cancelled: another file that
			// joined the flight meanwhile fetches the block again.
			f.Finish(context.Canceled)
		}
		blk.Release()
		return nil, nil, "", errClosed
	}
	var cancel context.CancelFunc
	if created {
		// Held blocks outlive this read: tie their GET to the file. A
		// block read once is tied to the read too, so interrupting the
		// read cancels its GET.
		fctx, cancelFill := context.WithCancel(r.ctx)
		cancel = cancelFill
		if !seq {
			stop := context.AfterFunc(ctx, cancelFill)
			cancel = func() { stop(); cancelFill() }
		}
		r.goFill(fctx, false, f)
	}
	switch {
	case !seq || r.s == nil:
		// Not held: the budget goes back once the block has landed.
		r.releaseAfterLanding(f, cancel, n)
		return f, blk, how, nil
	case r.s.held[idx] != nil:
		// Another read of this file got there first; let ours land.
		hb := r.s.held[idx]
		r.releaseAfterLanding(f, cancel, n)
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
			r.goFill(ctx, true, run[0])
		default:
			// Blocks sharing a GET end with it; Close cancels it.
			r.goFill(r.ctx, true, run...)
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
	r.releaseAfterLanding(hb.f, hb.cancel, hb.bytes)
}

// releaseAfterLanding gives n budget bytes back, and frees cancel (if not
// nil), once f has ended: bytes still arriving in the buffer stay counted
// until then.
func (r *Reader) releaseAfterLanding(f *cache.Flight, cancel context.CancelFunc, n int64) {
	f.AfterLanding(func() {
		if cancel != nil {
			cancel()
		}
		r.m.budget.Release(n)
	})
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
