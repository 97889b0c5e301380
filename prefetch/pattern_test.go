package prefetch

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// TestRandomReadSplitByKernelIsNotStream: with the kernel's read-ahead
// raised to 1 MiB (SplitBytes 2 MiB), one random 256 KiB read that arrives
// as the kernel's read-ahead around it plus an asynchronous read-ahead
// (two contiguous requests, about 1 MiB in all) is served by exact GETs,
// as workload 5 of the bench saw; a third contiguous request (a reader
// that keeps going) starts a stream.
func TestRandomReadSplitByKernelIsNotStream(t *testing.T) {
	fx := newFixture(t, 64*mib, 0, 32*mib)
	fx.m.SetSplitBytes(2 * mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	off := int64(20*mib + 12345*4096%mib)
	fx.read(t, r, off, 446464)
	fx.read(t, r, off+446464, 634880)
	fx.settle(t)
	s := &fx.m.Stats
	if n := s.StreamsStarted.Load(); n != 0 {
		t.Errorf("one split random read started %d streams", n)
	}
	if got, want := s.BytesFetched.Load(), int64(446464+634880); got != want {
		t.Errorf("fetched %d bytes for %d read", got, want)
	}
	fx.read(t, r, off+446464+634880, 1<<20)
	if n := s.StreamsStarted.Load(); n != 1 {
		t.Errorf("three contiguous requests over 2 MiB started %d streams, want 1", n)
	}
}

// TestRandomFileStartsRandom: a file its last Reader read randomly is
// read randomly by the next one too: a first read at offset 0 or in the
// last block fetches exactly its bytes instead of starting a stream (a
// block or two for one record). Reading the file sequentially from the
// start still becomes a stream by its second request, and afterwards a
// first read at offset 0 is a stream again.
func TestRandomFileStartsRandom(t *testing.T) {
	fx := newFixture(t, 16*mib, 0, 32*mib)
	s := &fx.m.Stats
	// A fresh file read randomly (a stream at offset 0 would leave block 0
	// cached: the records below avoid it).
	a := fx.m.NewReader(fx.v)
	for _, off := range []int64{9 * mib, 3*mib + 4096, 13 * mib} {
		fx.read(t, a, off, 256<<10)
	}
	a.Close()
	fx.settle(t)
	if s.StreamsStarted.Load() != 0 {
		t.Fatalf("random reads started %d streams", s.StreamsStarted.Load())
	}

	for i, first := range []int64{0, 16*mib - 256<<10} {
		streams, fetched := s.StreamsStarted.Load(), s.BytesFetched.Load()
		b := fx.m.NewReader(fx.v)
		fx.read(t, b, first, 256<<10)
		fx.read(t, b, 6*mib+int64(i)*mib, 256<<10)
		fx.settle(t)
		if n := s.StreamsStarted.Load() - streams; n != 0 {
			t.Errorf("reader %d of a randomly read file, first read at %d: %d streams started", i, first, n)
		}
		if got := s.BytesFetched.Load() - fetched; got != 2*256<<10 {
			t.Errorf("reader %d of a randomly read file fetched %d bytes for %d read", i, got, 2*256<<10)
		}
		b.Close()
	}

	// A sequential reader of the same file still streams: whole blocks,
	// read ahead.
	c := fx.m.NewReader(fx.v)
	streams, gets, ahead := s.StreamsStarted.Load(), fx.st.Calls("GetObject"), s.ReadaheadBlocks.Load()
	for off := int64(0); off < 16*mib; off += 1 << 20 {
		fx.read(t, c, off, 1<<20)
		if off == 1<<20 && s.StreamsStarted.Load() == streams {
			t.Error("two contiguous 1 MiB requests from the start did not start a stream")
		}
	}
	fx.settle(t)
	if n := s.StreamsStarted.Load() - streams; n != 1 {
		t.Errorf("a sequential reader of a randomly read file started %d streams, want 1", n)
	}
	if n := fx.st.Calls("GetObject") - gets; n >= 16 {
		t.Errorf("a sequential reader made %d GETs for 16 reads: not fetching blocks ahead", n)
	}
	if n := s.ReadaheadBlocks.Load() - ahead; n < 10 {
		t.Errorf("a sequential reader of 16 blocks had %d read ahead", n)
	}
	c.Close()
	if fx.m.randoms.has(fx.v) {
		t.Error("a file read sequentially is still remembered as read randomly")
	}
	d := fx.m.NewReader(fx.v)
	defer d.Close()
	streams = s.StreamsStarted.Load()
	fx.read(t, d, 0, 256<<10)
	if s.StreamsStarted.Load()-streams != 1 {
		t.Error("after a sequential reader, a first read at 0 did not start a stream")
	}
}

// TestRandomFilesBounded: the set of randomly read files stays within its
// size, and a file read sequentially leaves it.
func TestRandomFilesBounded(t *testing.T) {
	s := newRandomFiles(3)
	fx := newFixture(t, mib, 0, 32*mib)
	v := fx.v
	for i := range 10 {
		v.Key = string(rune('a' + i))
		s.set(v, true)
		if len(s.seen) > 3 {
			t.Fatalf("%d files remembered, limit 3", len(s.seen))
		}
	}
	if !s.has(v) {
		t.Error("the file just set is not remembered")
	}
	s.set(v, false)
	if s.has(v) {
		t.Error("a file set sequential is still remembered")
	}
}

// TestOutOfOrderRequestsBecomeStream: the kernel's read-ahead requests of
// one sequential reader, served in parallel, can arrive out of order (as
// a mount under load saw: [0,32K), [160K,416K), [32K,160K), [950K,2M),
// [416K,950K), here with a last request larger). While they are all being
// served, the request that fills a gap joins the runs on either side, so
// the reader becomes a stream as soon as the requests in order would have
// made it one.
func TestOutOfOrderRequestsBecomeStream(t *testing.T) {
	fx := newFixture(t, 64*mib, 100*time.Millisecond, 32*mib)
	fx.m.SetSplitBytes(2 * mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	base := int64(20 * mib)
	var wg sync.WaitGroup
	read := func(from, to int64) {
		wg.Go(func() {
			buf := make([]byte, to-from)
			if _, err := r.ReadAt(context.Background(), buf, base+from); err != nil {
				t.Errorf("read at %d: %v", base+from, err)
			} else if !bytes.Equal(buf, fx.data[base+from:base+to]) {
				t.Errorf("read at %d: wrong bytes", base+from)
			}
		})
		time.Sleep(10 * time.Millisecond) // in this order, all in flight at once
	}
	for _, rq := range [][2]int64{{0, 32 << 10}, {160 << 10, 416 << 10}, {32 << 10, 160 << 10}, {950 << 10, 3072 << 10}} {
		read(rq[0], rq[1])
	}
	if n := fx.m.Stats.StreamsStarted.Load(); n != 0 {
		t.Errorf("%d streams started before the requests cover 2 MiB", n)
	}
	read(416<<10, 950<<10)
	wg.Wait()
	if n := fx.m.Stats.StreamsStarted.Load(); n != 1 {
		t.Errorf("five requests covering 3 MiB, out of order, started %d streams, want 1", n)
	}
}

// TestRandomPreadsStayApart: one handle's random preads come one after
// another, each as the kernel's read-around plus an asynchronous
// read-ahead (about 1 MiB in all). A later pread that asks for pages
// starting exactly where an earlier, finished one ended, or exactly
// filling the gap between two finished ones, does not join them into a
// stream: only requests served at the same time are joined out of order.
func TestRandomPreadsStayApart(t *testing.T) {
	fx := newFixture(t, 64*mib, 0, 32*mib)
	fx.m.SetSplitBytes(2 * mib)
	s := &fx.m.Stats
	pread := func(r *Reader, off int64) int64 {
		fx.read(t, r, off, 446464)
		fx.read(t, r, off+446464, 634880)
		return off + 446464 + 634880
	}

	// A pread continuing an earlier one after two others elsewhere.
	r := fx.m.NewReader(fx.v)
	e := pread(r, 20*mib)
	fx.read(t, r, 40*mib, 256<<10)
	fx.read(t, r, 50*mib, 256<<10)
	pread(r, e)
	r.Close()
	if n := s.StreamsStarted.Load(); n != 0 {
		t.Errorf("a pread continuing an earlier one started %d streams", n)
	}

	// A pread filling exactly the gap between two earlier ones.
	r = fx.m.NewReader(fx.v)
	x := int64(8 * mib)
	fx.read(t, r, x, 446464)
	fx.read(t, r, x+446464, mib-446464)
	y := x + mib + 192<<10
	fx.read(t, r, y, 446464)
	fx.read(t, r, y+446464, mib-446464)
	fx.read(t, r, x+mib, 192<<10)
	r.Close()
	fx.settle(t)
	if n := s.StreamsStarted.Load(); n != 0 {
		t.Errorf("a pread filling the gap between two earlier ones started %d streams", n)
	}
	want := int64(2*(446464+634880) + 2*256<<10 + 2*mib + 192<<10)
	if got := s.BytesFetched.Load(); got != want {
		t.Errorf("fetched %d bytes for %d read", got, want)
	}
}

// TestBackwardReaderIsNotStream: a reader stepping backwards through a
// file (each request ending where the last began) never forms a run, so
// it starts no stream and fetches exactly what it reads.
func TestBackwardReaderIsNotStream(t *testing.T) {
	fx := newFixture(t, 64*mib, 0, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	const step = 128 << 10
	for i := range int64(32) {
		fx.read(t, r, 40*mib-(i+1)*step, step)
	}
	fx.settle(t)
	s := &fx.m.Stats
	if n := s.StreamsStarted.Load(); n != 0 {
		t.Errorf("a backward reader started %d streams", n)
	}
	if got, want := s.BytesFetched.Load(), int64(32*step); got != want {
		t.Errorf("fetched %d bytes for %d read", got, want)
	}
}
