package prefetch

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
	"github.com/jonboulle/clockwork"
)

const (
	bs  = 1 << 20 // block size in these tests
	mib = 1 << 20
)

type fixture struct {
	st   *store.Fake
	c    *cache.Cache
	m    *Manager
	data []byte
	v    store.Version
	held int64   // the manager's budget
	o    Options // the manager's options
}

// newFixture stores one object of size bytes in a fake with the given
// latency and returns a manager over it.
func newFixture(t *testing.T, size int, latency time.Duration, budget int64) *fixture {
	t.Helper()
	st := store.NewFake()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(size), byte(size >> 8)}).Read(data)
	st.Seed("b", "obj", data)
	o, _ := st.Head(context.Background(), "b", "obj")
	st.SetLatency(latency)
	c, err := cache.New(cache.Config{MemoryBytes: 64 * mib, BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	opts := Options{BlockSize: bs, MaxReadahead: 8 * mib, MaxGets: 8, SplitBytes: 256 << 10}
	m := newManager(st, c, budget, opts)
	fx := &fixture{st: st, c: c, m: m, data: data, v: store.Version{Bucket: "b", Key: "obj", ETag: o.ETag, Size: o.Size}, held: budget, o: opts}
	// Whatever a test did, the read path's invariants hold once it is
	// quiet (cleanups run after the test's own defers closed its readers).
	t.Cleanup(func() {
		if !t.Failed() {
			fx.quiet(t)
		}
	})
	return fx
}

// withClock replaces the fixture's manager with one whose time is clock.
// REQUIRES: no reader of the old manager is open.
func (fx *fixture) withClock(clock clockwork.Clock) {
	o := fx.o
	o.Clock = clock
	fx.m = newManager(fx.st, fx.c, fx.held, o)
}

// read reads n bytes at off and checks them against the source.
func (fx *fixture) read(t *testing.T, r *Reader, off int64, n int) {
	t.Helper()
	buf := make([]byte, n)
	got, err := r.ReadAt(context.Background(), buf, off)
	if err != nil {
		t.Fatalf("read %d@%d: %v", n, off, err)
	}
	want := fx.data[off:min(int(off)+n, len(fx.data))]
	if got != len(want) || !bytes.Equal(buf[:got], want) {
		t.Fatalf("read %d@%d: %d bytes, content differs: %v", n, off, got, !bytes.Equal(buf[:got], want))
	}
}

// settle waits for background GETs to end.
func (fx *fixture) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for fx.m.Stats.InflightGets.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("GETs still in flight after 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// budgetReturns waits for every budget byte to come back: blocks that
// were still arriving when released are counted until they land.
func (fx *fixture) budgetReturns(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for fx.m.Budget().Used() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("budget used = %d after every reader closed", fx.m.Budget().Used())
		}
		time.Sleep(time.Millisecond)
	}
}

// quiet waits for the read path to be quiet and checks its invariants.
func (fx *fixture) quiet(t *testing.T) {
	t.Helper()
	fx.settle(t)
	var err error
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if err = fx.m.checkInvariants(); err == nil {
			return
		}
	}
	t.Fatal(err)
}

// TestSequentialReadAhead: a sequential reader gets exact bytes, the window
// grows, wide windows are fetched in multi-block GETs, and no byte is
// fetched twice.
func TestSequentialReadAhead(t *testing.T) {
	fx := newFixture(t, 24*mib+333, time.Millisecond, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	for off := int64(0); off < int64(len(fx.data)); off += 128 << 10 {
		fx.read(t, r, off, 128<<10)
	}
	fx.quiet(t)
	s := &fx.m.Stats
	// Once the window is wide, one GET fetches several blocks.
	if got := fx.st.Calls("GetObject"); got >= 25 || got < 7 {
		t.Errorf("%d GETs for 25 blocks, want fewer than one per block", got)
	}
	if s.BytesFetched.Load() != int64(len(fx.data)) {
		t.Errorf("fetched %d bytes for %d read", s.BytesFetched.Load(), len(fx.data))
	}
	if s.ReadaheadBlocks.Load() < 20 {
		t.Errorf("only %d blocks read ahead", s.ReadaheadBlocks.Load())
	}
	if s.StreamsStarted.Load() != 1 || s.RandomReads.Load() != 0 {
		t.Errorf("streams %d, random reads %d", s.StreamsStarted.Load(), s.RandomReads.Load())
	}
	r.mu.Lock()
	window := r.s.window
	r.mu.Unlock()
	if window != 8*mib {
		t.Errorf("window = %d after 24 MiB, want the 8 MiB maximum", window)
	}
}

// TestRandomReadsNoAmplification: records read at random offsets fetch
// exactly what was asked and start no stream.
func TestRandomReadsNoAmplification(t *testing.T) {
	fx := newFixture(t, 64*mib, 0, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	rng := rand.New(rand.NewPCG(5, 5))
	total := 0
	for range 100 {
		off := 4096 + rng.Int64N(60*mib)
		fx.read(t, r, off, 256<<10)
		total += 256 << 10
	}
	fx.settle(t)
	if f := fx.m.Stats.BytesFetched.Load(); f != int64(total) {
		t.Errorf("fetched %d bytes for %d read (amplification %.2f)", f, total, float64(f)/float64(total))
	}
	if n := fx.m.Stats.StreamsStarted.Load(); n != 0 {
		t.Errorf("%d streams started by random reads", n)
	}
}

// TestKernelSplitReadIsNotAStream: one 256 KiB read that the kernel split
// into two adjacent requests does not start read-ahead.
func TestKernelSplitReadIsNotAStream(t *testing.T) {
	fx := newFixture(t, 64*mib, 0, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	fx.read(t, r, 10*mib, 128<<10)
	fx.read(t, r, 10*mib+128<<10, 128<<10)
	fx.settle(t)
	if fx.m.Stats.StreamsStarted.Load() != 0 || fx.m.Stats.BytesFetched.Load() != 256<<10 {
		t.Errorf("streams %d, fetched %d", fx.m.Stats.StreamsStarted.Load(), fx.m.Stats.BytesFetched.Load())
	}
}

// TestTailReadThenSequential: a player reads the tag at the end, then
// plays from the start, then checks the tag again: one stream throughout,
// its window intact.
func TestTailReadThenSequential(t *testing.T) {
	fx := newFixture(t, 32*mib, time.Millisecond, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	size := int64(len(fx.data))
	fx.read(t, r, size-128, 128)
	r.mu.Lock()
	first := r.s != nil && r.s.held[0] != nil
	r.mu.Unlock()
	if !first {
		t.Fatal("reading the tail first did not start fetching the first block")
	}
	for off := int64(0); off < 6*mib; off += 64 << 10 {
		fx.read(t, r, off, 64<<10)
	}
	r.mu.Lock()
	before := *r.s
	r.mu.Unlock()
	fx.read(t, r, size-128, 128)       // tag again
	fx.read(t, r, 6*mib-200<<10, 4096) // small step back
	fx.read(t, r, 6*mib, 64<<10)
	r.mu.Lock()
	after := *r.s
	r.mu.Unlock()
	if fx.m.Stats.StreamsStarted.Load() != 1 {
		t.Errorf("%d streams started, want 1", fx.m.Stats.StreamsStarted.Load())
	}
	if after.window < before.window {
		t.Errorf("window shrank from %d to %d", before.window, after.window)
	}
}

// TestSeekInsideWindowReusesBlocks: a forward jump inside the window is
// served from blocks already fetched or in flight.
func TestSeekInsideWindowReusesBlocks(t *testing.T) {
	fx := newFixture(t, 32*mib, time.Millisecond, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	for off := int64(0); off < 4*mib; off += 256 << 10 {
		fx.read(t, r, off, 256<<10)
	}
	fx.settle(t)
	gets := fx.st.Calls("GetObject")
	r.mu.Lock()
	heldAhead := r.s.held[(r.s.next+2*mib)/bs] != nil
	r.mu.Unlock()
	if !heldAhead {
		t.Fatal("block 2 MiB ahead not held")
	}
	fx.read(t, r, 6*mib+1000, 64<<10)
	if got := fx.st.Calls("GetObject"); got != gets {
		// Only read-ahead beyond the old window may add GETs: none for
		// the jump target itself.
		fx.settle(t)
	}
	if fx.m.Stats.StreamsStarted.Load() != 1 || fx.m.Stats.RandomReads.Load() != 0 {
		t.Errorf("jump inside the window: streams %d random %d", fx.m.Stats.StreamsStarted.Load(), fx.m.Stats.RandomReads.Load())
	}
}

// TestLongSeekRestartsStream: a jump far outside the window is served at
// once by an exact GET, and reading on from there starts a new stream
// whose window grows again from one block.
func TestLongSeekRestartsStream(t *testing.T) {
	fx := newFixture(t, 64*mib, time.Millisecond, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	for off := int64(0); off < 8*mib; off += 256 << 10 {
		fx.read(t, r, off, 256<<10)
	}
	// Let the read-ahead land, including GETs not started yet.
	r.mu.Lock()
	var held []*cache.Flight
	for _, hb := range r.s.held {
		held = append(held, hb.f)
	}
	r.mu.Unlock()
	for _, f := range held {
		f.Wait(context.Background(), f.Len())
	}
	fx.settle(t)
	fetched := fx.m.Stats.BytesFetched.Load()
	fx.read(t, r, 40*mib, 64<<10)
	if got := fx.m.Stats.BytesFetched.Load() - fetched; got != 64<<10 {
		t.Errorf("first read after a long seek fetched %d bytes, want exactly 64 KiB", got)
	}
	for off := int64(40*mib + 64<<10); off < 44*mib; off += 64 << 10 {
		fx.read(t, r, off, 64<<10)
	}
	if n := fx.m.Stats.StreamsStarted.Load(); n != 2 {
		t.Errorf("%d streams, want 2", n)
	}
	r.mu.Lock()
	next := r.s.next
	r.mu.Unlock()
	if next != 44*mib {
		t.Errorf("stream at %d, want 44 MiB", next)
	}
}

// TestSmallObjectOneGet: an object no larger than a block is fetched
// whole with one GET, whatever is read of it.
func TestSmallObjectOneGet(t *testing.T) {
	fx := newFixture(t, 300_000, 0, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	fx.read(t, r, 299_000, 1000)
	fx.read(t, r, 5, 100)
	fx.read(t, r, 0, 300_000)
	fx.settle(t)
	if got := fx.st.Calls("GetObject"); got != 1 {
		t.Errorf("%d GETs for a 300 KB object", got)
	}
}

// TestTwoReadersOneGetPerBlock: two files reading the same object at once
// share GETs.
func TestTwoReadersOneGetPerBlock(t *testing.T) {
	fx := newFixture(t, 8*mib, 5*time.Millisecond, 32*mib)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := fx.m.NewReader(fx.v)
			defer r.Close()
			for off := int64(0); off < 8*mib; off += 512 << 10 {
				fx.read(t, r, off, 512<<10)
			}
		}()
	}
	wg.Wait()
	fx.settle(t)
	if got := fx.st.Calls("GetObject"); got > 8 {
		t.Errorf("%d GETs for 8 blocks read by two readers", got)
	}
}

// TestCloseCancelsReadAhead: closing a file cancels its GETs and gives
// back its budget. The store answers only when the test's clock moves,
// which it never does: the GETs end because Close cancelled them.
func TestCloseCancelsReadAhead(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, 64*mib, 0, 32*mib)
	fx.st.SetClock(clockwork.NewFakeClock())
	r := fx.m.NewReader(fx.v)
	fx.read(t, r, 0, 256<<10) // block 0, and block 1 read ahead, at once
	for deadline := time.Now().Add(5 * time.Second); !fx.c.Contains(fx.m.blockKey(fx.v, 1)); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("block 1 was not read ahead")
		}
	}
	fx.st.SetLatency(time.Hour)
	// Served from block 1; the window doubles and reads blocks 2 and 3
	// ahead, which wait.
	fx.read(t, r, mib, 256<<10)
	for deadline := time.Now().Add(5 * time.Second); fx.m.Stats.InflightGets.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no read-ahead in flight")
		}
	}
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }() // waits for the fills it started
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: its GETs were not cancelled")
	}
	if n := fx.m.Stats.InflightGets.Load(); n != 0 {
		t.Errorf("%d GETs still in flight after Close returned", n)
	}
	fx.budgetReturns(t)
	fx.quiet(t)
	if _, err := r.ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, errClosed) {
		t.Errorf("read after close: %v", err)
	}
}

// TestChangedObjectFails: reading a version whose ETag no longer matches
// fails with ErrPreconditionFailed, never with other bytes.
func TestChangedObjectFails(t *testing.T) {
	fx := newFixture(t, 8*mib, 0, 32*mib)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	fx.read(t, r, 0, 4096)
	fx.st.Seed("b", "obj", bytes.Repeat([]byte{1}, 8*mib))
	_, err := r.ReadAt(context.Background(), make([]byte, 4096), 6*mib)
	if !errors.Is(err, store.ErrPreconditionFailed) {
		t.Errorf("read after change: %v", err)
	}
}

// TestResumeAfterSeekBecomesStream: after a seek, a small read followed by
// a larger contiguous one (the kernel's read-ahead growing) is a stream;
// when the kernel sends whole reads, any second contiguous read is.
func TestResumeAfterSeekBecomesStream(t *testing.T) {
	fx := newFixture(t, 64*mib, 0, 32*mib)
	whole := newManager(fx.st, fx.c, 32*mib, Options{BlockSize: bs, MaxReadahead: 8 * mib})
	w := whole.NewReader(fx.v)
	defer w.Close()
	// Small contiguous reads become a stream once they cover more than
	// runStart (256 KiB): two adjacent records are not a stream.
	for i := range 4 {
		fx.read(t, w, 30*mib+int64(i)*64<<10, 64<<10)
	}
	if n := whole.Stats.StreamsStarted.Load(); n != 0 {
		t.Errorf("with SplitBytes 0, four contiguous 64 KiB reads (256 KiB) started %d streams", n)
	}
	fx.read(t, w, 30*mib+4*64<<10, 64<<10)
	if whole.Stats.StreamsStarted.Load() != 1 {
		t.Errorf("with SplitBytes 0, five contiguous 64 KiB reads did not start a stream")
	}

	r := fx.m.NewReader(fx.v)
	defer r.Close()
	fx.read(t, r, 20*mib, 64<<10)
	if fx.m.Stats.StreamsStarted.Load() != 0 {
		t.Fatal("a lone read started a stream")
	}
	fx.read(t, r, 20*mib+64<<10, 256<<10)
	if fx.m.Stats.StreamsStarted.Load() != 1 {
		t.Errorf("second contiguous read did not start a stream")
	}
}

// TestSlowReaderSmallWindow: a reader consuming slowly (audio at its
// bitrate) keeps a window of a few seconds of its rate, not the maximum.
func TestSlowReaderSmallWindow(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, 32*mib, 0, 32*mib)
	clock := clockwork.NewFakeClock()
	fx.withClock(clock)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	for off := int64(0); off < 3*mib; off += 64 << 10 {
		fx.read(t, r, off, 64<<10)
		clock.Advance(20 * time.Millisecond) // ~3.2 MB/s
	}
	r.mu.Lock()
	window := r.s.window
	r.mu.Unlock()
	if window >= 8*mib {
		t.Errorf("window of a 3 MB/s reader = %d, want under the 8 MiB maximum", window)
	}
}

// TestFailedReadAheadIsRetried: a read-ahead GET that fails (503) does not
// keep failing later reads of its block: the next read fetches again.
func TestFailedReadAheadIsRetried(t *testing.T) {
	fx := newFixture(t, 8*mib, 0, 32*mib)
	var n atomic.Int32
	fx.st.SetFailure(func(op, bucket, key string) error {
		if op == "GetObject" && n.Add(1) == 2 {
			return &store.Error{Op: op, Status: 503, Code: "SlowDown", Kind: store.ErrThrottled}
		}
		return nil
	})
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	fx.read(t, r, 0, 512<<10) // starts the stream; block 1 is read ahead and fails
	fx.settle(t)
	buf := make([]byte, 64<<10)
	var err error
	for range 2 {
		if _, err = r.ReadAt(context.Background(), buf, 1*mib); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("block 1 still failing after its read-ahead failed once: %v", err)
	}
	fx.read(t, r, 1*mib, 64<<10)
}

// TestCrossBlockReadFetchesInParallel: a read that crosses into the next
// block just after a stream began (a kernel read-ahead request after a
// seek) has both blocks' GETs under way at once, not one after the other.
// The store answers only when the test moves its clock: one GET after the
// other would leave a single request waiting.
func TestCrossBlockReadFetchesInParallel(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, 16*mib, 0, 32*mib)
	clock := clockwork.NewFakeClock()
	fx.st.SetClock(clock)
	fx.m.SetSplitBytes(0)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	base := int64(6*mib - 200<<10)
	fx.read(t, r, base, 64<<10) // after a seek: exact
	fx.st.SetLatency(time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fx.read(t, r, base+64<<10, 256<<10) // a stream; ends in block 6
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 2); err != nil {
		t.Fatalf("fewer than two GETs under way before any answered: %v", err)
	}
	// Let the store answer until the read is served (its own block's GET
	// may start after the window's).
	for {
		clock.Advance(time.Second)
		select {
		case <-done:
			return
		case <-time.After(time.Millisecond):
		}
	}
}
