package prefetch

// Pattern classification: which reads belong to a sequential stream, when
// a stream starts, how wide its window may grow, and when it is idle.

import "time"

// backSlack is how far behind a stream's position a read may land and
// still count as part of the stream: the kernel sends parallel reads that
// can arrive out of order, and players step back a little.
const backSlack = 2 << 20

// A run of contiguous reads outside the stream becomes the stream once it
// has at least two reads and more than max(minRunBytes, SplitBytes) bytes.
// Without the byte floor, one 256 KiB record read that the kernel cut into
// two 128 KiB requests would look sequential, and so would one random read
// that arrived as the kernel's read-ahead around it plus an asynchronous
// read-ahead (see Options.SplitBytes); with it, a player resuming after a
// seek (the kernel's read-ahead grows its requests) is a stream within its
// first few reads.
const minRunBytes = 256 << 10

// runFloor is how many bytes a run from start must cover to be a stream.
// A run from the file's start needs only minRunBytes: there the kernel's
// read-ahead sends one request for a read, with the page that starts its
// asynchronous read-ahead just past the read, so two contiguous requests
// mean a reader that went on (a sequential reader of a file last read
// randomly, see startRandom).
func (r *Reader) runFloor(start int64) int64 {
	if start == 0 {
		return minRunBytes
	}
	return max(r.m.splitBytes.Load(), minRunBytes)
}

// A run is contiguous bytes [start, end) read outside the stream, in reads
// requests.
type run struct {
	start, end int64
	reads      int
}

// maxRuns is how many runs a Reader follows at once. The kernel sends a
// sequential reader's read-ahead as several requests at once and the
// daemon serves them in parallel, so they can reach classifyLocked out of
// order: [0,32K), [160K,416K), [32K,160K). With one run, each request
// that skips ahead started a new run, and the reader was served by exact
// GETs until two requests happened to arrive in order; with a few, the
// request that fills the gap joins the pieces.
const maxRuns = 4

// joinRunLocked adds [off, end) to the runs and returns the run it joined,
// now runs[0]. The read continues the most recent run when it starts
// inside it or at its end (out-of-order requests overlap), or an older
// run that ends where it starts while a read of that run is still being
// served; a read that continues a run and ends where a run being read
// starts fills the gap between them and joins both. Otherwise it starts a
// new run in place of the least recent.
//
// Only requests served at the same time are joined out of order: those
// are the pieces of one read-ahead the kernel sent at once. One handle's
// random preads come one after another, and a pread overlapping pages an
// earlier one cached asks for pages starting exactly where that one's
// ended; joining it to a finished run would make two random preads a
// stream. A reader stepping backwards never continues a run.
// REQUIRES: r.mu held.
func (r *Reader) joinRunLocked(off, end int64) run {
	cont := -1
	for i, u := range r.runs {
		if u.reads > 0 && ((i == 0 && off >= u.start && off <= u.end) || (off == u.end && r.servingLocked(u))) {
			cont = i
			break
		}
	}
	j := run{start: off, end: end, reads: 1}
	var apart [maxRuns - 1]run
	n := 0
	for i, u := range r.runs {
		switch {
		case u.reads == 0:
		case i == cont || (cont >= 0 && end == u.start && r.servingLocked(u)):
			j = run{start: min(j.start, u.start), end: max(j.end, u.end), reads: j.reads + u.reads}
		case n < len(apart):
			apart[n] = u
			n++
		}
	}
	r.runs = [maxRuns]run{j}
	copy(r.runs[1:], apart[:n])
	return j
}

// servingLocked reports whether a read of run u is being served.
// REQUIRES: r.mu held.
func (r *Reader) servingLocked(u run) bool {
	for _, p := range r.pending {
		if p.start < u.end && p.end > u.start {
			return true
		}
	}
	return false
}

// leadTime is how far ahead of a stream's reader, in time at its measured
// rate, the window reaches: enough to hide several round trips, not so much
// that a slow reader (audio at 320 kbit/s) holds minutes of data it may
// skip.
const leadTime = 2 * time.Second

// classifyLocked decides whether [off, end) belongs to the stream, starting
// or replacing the stream when a sequential pattern appears.
// REQUIRES: r.mu held.
func (r *Reader) classifyLocked(off, end int64) bool {
	if s := r.s; s != nil && off >= s.next-backSlack && off <= s.next+max(s.window, r.bs) {
		s.next = max(s.next, end)
		s.last = r.m.clock.Now()
		s.strays = 0
		if idx := (s.next - 1) / r.bs; idx > s.grownAt {
			s.grownAt = idx
			s.window = min(s.window*2, r.windowCap(s))
		}
		return true
	}
	// A read continuing a recent run (or overlapping it, or filling the
	// gap between two, as out-of-order kernel requests do) extends it;
	// anything else starts a new run.
	j := r.joinRunLocked(off, end)
	// A first read at the start is taken for a sequential reader (cp,
	// cat, a player): its block is fetched whole and read ahead of, unless
	// the file's last reader read it randomly (startRandom).
	if (off == 0 && r.s == nil && !r.startRandom) || (j.reads >= 2 && j.end-j.start > r.runFloor(j.start)) {
		r.dropStreamLocked()
		r.s = r.newStream(j.start, j.end)
		r.runs = [maxRuns]run{}
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
	r.streams++
	now := r.m.clock.Now()
	return &stream{start: start, began: now, last: now, next: next, window: r.bs, grownAt: max(next-1, 0) / r.bs, held: map[int64]*heldBlock{}}
}

// windowCap bounds a stream's window by its reader's rate: leadTime of
// reading at the rate seen so far, at least two blocks, at most
// MaxReadahead.
func (r *Reader) windowCap(s *stream) int64 {
	elapsed := r.m.clock.Since(s.began)
	if elapsed < 100*time.Millisecond {
		return r.m.cfg.MaxReadahead // too early to tell: assume a fast reader
	}
	rate := float64(s.next-s.start) / elapsed.Seconds()
	return min(max(int64(rate*leadTime.Seconds()), 2*r.bs), r.m.cfg.MaxReadahead)
}

// reclaimableLocked reports whether r's stream may give its blocks to
// other readers: r has no read under way and the stream has stopped.
// REQUIRES: r.mu held.
func (r *Reader) reclaimableLocked() bool {
	s := r.s
	if r.active.Load() > 0 || s == nil || len(s.held) == 0 {
		return false
	}
	idle := r.m.clock.Since(s.last)
	return (s.strays > 0 && idle >= r.m.cfg.IdleStream) || idle >= r.m.cfg.PausedStream
}
