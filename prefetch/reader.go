package prefetch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
)

// Reader reads one object version for one open file. It is safe for
// concurrent use.
type Reader struct {
	// Dependencies
	m *Manager

	// Constant data
	v  store.Version
	bs int64
	// startRandom is set when the file's last Reader read it randomly:
	// no first read starts a stream by where it lands (see random.go).
	startRandom bool
	// ctx lives as long as the Reader; Close cancels it and with it every
	// read-ahead GET.
	ctx    context.Context
	cancel context.CancelFunc

	// Mutable state
	active atomic.Int32 // reads under way; a file being read is not idle
	mu     sync.Mutex   // protects the following
	s      *stream      // GUARDED_BY(mu)
	// runs are the recent contiguous runs of reads outside the stream,
	// most recent first. One becomes the stream as classifyLocked says
	// (at least two reads, more than runFloor bytes).
	runs [maxRuns]run // GUARDED_BY(mu)
	// pending are the reads outside a stream being served now.
	pending []run // GUARDED_BY(mu)
	reads   int64 // GUARDED_BY(mu); reads served so far
	// streamReads and randomReads count the reads classified each way;
	// streams counts the streams started. Close passes them on to the
	// next Reader of the file (rememberPattern).
	streamReads, randomReads, streams int64 // GUARDED_BY(mu)
	closed                            bool  // GUARDED_BY(mu)
	// wg counts the goroutines the Reader started (fills); Close waits
	// for them.
	wg sync.WaitGroup
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
	start := r.m.clock.Now()
	r.active.Add(1)
	defer r.active.Add(-1)
	end := min(off+int64(len(dest)), r.v.Size)
	dest = dest[:end-off]
	var tr readTrace

	r.mu.Lock()
	tr.locked = r.m.clock.Since(start)
	if r.closed {
		r.mu.Unlock()
		return nil, nil, errClosed
	}
	seq := r.classifyLocked(off, end)
	tailFirst := r.reads == 0 && !seq && off >= r.v.Size-r.bs && !r.startRandom
	if tailFirst {
		// Media players and zip readers look at the end of a file first
		// (ID3v1 tags, a central directory), then read from the start:
		// fetch the first block while the tail is read.
		r.s = r.newStream(0, 0)
	}
	r.reads++
	if seq {
		r.streamReads++
	} else {
		r.randomReads++
		r.pending = append(r.pending, run{start: off, end: end})
		defer r.donePending(off, end)
	}
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
	r.slow(&tr, off, len(dest), r.m.clock.Since(start))
	if err != nil {
		return nil, nil, err
	}
	r.m.Stats.BytesRead.Add(int64(len(data)))
	return data, release, nil
}

// donePending removes the read [off, end) from r.pending.
func (r *Reader) donePending(off, end int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range r.pending {
		if p.start == off && p.end == end {
			last := len(r.pending) - 1
			r.pending[i] = r.pending[last]
			r.pending = r.pending[:last]
			return
		}
	}
}

// Close cancels the Reader's GETs, releases its blocks and waits for the
// goroutines it started. Reads of r under way (a handle moving to a new
// version closes its old Reader while other reads use it) fail with
// errClosed; reads of other files that joined r's fetches fetch again.
func (r *Reader) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.dropStreamLocked()
	r.m.rememberPattern(r.v, r.streamReads, r.randomReads, r.streams)
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.m.readersMu.Lock()
	delete(r.m.readers, r)
	r.m.readersMu.Unlock()
	r.m.Stats.OpenReaders.Add(-1)
}

// goFill fills flights in a goroutine of the Reader's: Close waits for it.
func (r *Reader) goFill(ctx context.Context, slot bool, flights ...*cache.Flight) {
	r.wg.Go(func() { r.m.fill(ctx, r.v, slot, flights...) })
}
