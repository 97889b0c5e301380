package prefetch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
	"github.com/jonboulle/clockwork"
)

// diskFixture is a fixture whose manager has a disk tier in dir.
func diskFixture(t *testing.T, size int, dir string) *fixture {
	t.Helper()
	fx := newFixture(t, size, 0, 32*mib)
	fx.restart(t, dir)
	return fx
}

// restart replaces the fixture's manager and cache with new ones over a
// disk tier opened in dir, as a restarted daemon would have, after closing
// the old cache (which writes what its disk tier has queued). The fake
// store (and its call counts) stays.
func (fx *fixture) restart(t *testing.T, dir string) {
	t.Helper()
	fx.c.Close()
	c, err := cache.New(cache.Config{MemoryBytes: 64 * mib, BlockSize: bs, Disk: &cache.DiskConfig{Dir: dir, MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitScan()
	t.Cleanup(c.Close)
	fx.c = c
	fx.m = newManager(fx.st, c, 32*mib, Options{BlockSize: bs, MaxReadahead: 8 * mib, MaxGets: 8, SplitBytes: 256 << 10})
}

func (fx *fixture) readAll(t *testing.T) {
	t.Helper()
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	for off := int64(0); off < int64(len(fx.data)); off += 256 << 10 {
		fx.read(t, r, off, 256<<10)
	}
	fx.settle(t)
}

// TestDiskTierServesAfterRestart: blocks streamed from the store are
// written to disk in the background; after a restart (empty memory) the
// same reads make no GET.
func TestDiskTierServesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	fx := diskFixture(t, 10*mib+5, dir)
	fx.readAll(t)
	if fx.st.Calls("GetObject") == 0 {
		t.Fatal("cold read made no GET")
	}
	fx.c.Close() // writes what is queued

	fx.restart(t, dir)
	before := fx.st.Calls("GetObject")
	fx.readAll(t)
	// Random reads, including ones across a block boundary, too.
	r := fx.m.NewReader(fx.v)
	fx.read(t, r, 3*mib+100, 4096)
	fx.read(t, r, 7*mib-100, 300<<10)
	r.Close()
	if got := fx.st.Calls("GetObject") - before; got != 0 {
		t.Fatalf("%d GETs after the restart, want 0", got)
	}
	if fx.c.DiskStats().Hits.Load() < 11 {
		t.Errorf("%d disk hits, want at least the 11 blocks", fx.c.DiskStats().Hits.Load())
	}
}

// TestDiskTierChangedObject: an overwritten object (new ETag) is read from
// the store, never from the old version's blocks.
func TestDiskTierChangedObject(t *testing.T) {
	dir := t.TempDir()
	fx := diskFixture(t, 3*mib, dir)
	fx.readAll(t)
	fx.c.Close()
	fx.restart(t, dir)

	fx.data = append([]byte(nil), fx.data...)
	for i := range fx.data {
		fx.data[i] ^= 0x5a
	}
	fx.st.Seed("b", "obj", fx.data)
	o, _ := fx.st.Head(context.Background(), "b", "obj")
	fx.v = store.Version{Bucket: "b", Key: "obj", ETag: o.ETag, Size: o.Size}
	before := fx.st.Calls("GetObject")
	fx.readAll(t) // checks the new bytes
	if fx.st.Calls("GetObject") == before {
		t.Fatal("the new version was served without a GET")
	}
}

// TestDiskTierDamagedBlockRefetched: a block whose file was damaged is
// fetched again, and the reader gets the right bytes.
func TestDiskTierDamagedBlockRefetched(t *testing.T) {
	dir := t.TempDir()
	fx := diskFixture(t, 4*mib, dir)
	fx.readAll(t)
	fx.c.Close()
	// Flip a byte in the middle of every block file.
	filepath.WalkDir(filepath.Join(dir, "blocks"), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.WriteFile(p, b, 0o600)
		}
		return nil
	})
	fx.restart(t, dir)
	before := fx.st.Calls("GetObject")
	fx.readAll(t)
	if fx.st.Calls("GetObject") == before {
		t.Fatal("damaged blocks were not fetched again")
	}
	if fx.c.DiskStats().Corrupt.Load() != 4 {
		t.Errorf("%d damaged blocks found, want 4", fx.c.DiskStats().Corrupt.Load())
	}
}

// TestWarm: Warm brings a whole object to disk, reports it in CachedBytes,
// and a later reader (after a restart) makes no GET.
func TestWarm(t *testing.T) {
	dir := t.TempDir()
	fx := diskFixture(t, 9*mib+77, dir)
	if got := fx.m.CachedBytes(fx.v); got != 0 {
		t.Fatalf("cached before warming: %d", got)
	}
	// Half of it read first: warming fetches only the rest.
	r := fx.m.NewReader(fx.v)
	for off := int64(0); off < 4*mib; off += 256 << 10 {
		fx.read(t, r, off, 256<<10)
	}
	r.Close()
	fx.settle(t)
	if err := fx.m.Warm(context.Background(), fx.v); err != nil {
		t.Fatal(err)
	}
	if got := fx.m.CachedBytes(fx.v); got != fx.v.Size {
		t.Fatalf("cached after warming: %d of %d", got, fx.v.Size)
	}
	if f := fx.m.Stats.BytesFetched.Load(); f > fx.v.Size+4*mib {
		t.Errorf("fetched %d bytes to warm %d", f, fx.v.Size)
	}
	fx.budgetReturns(t)
	fx.c.Close()
	fx.restart(t, dir)
	before := fx.st.Calls("GetObject")
	fx.readAll(t)
	if got := fx.st.Calls("GetObject") - before; got != 0 {
		t.Fatalf("%d GETs after warming, want 0", got)
	}
}

// TestWarmInterrupted: cancelling Warm stops it promptly with the
// context's error, and what was fetched stays. The store answers when the
// test moves its clock: once for the first requests, never for the next.
func TestWarmInterrupted(t *testing.T) {
	t.Parallel()
	fx := diskFixture(t, 32*mib, t.TempDir())
	clock := clockwork.NewFakeClock()
	fx.st.SetClock(clock)
	fx.st.SetLatency(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- fx.m.Warm(ctx, fx.v) }()
	wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := clock.BlockUntilContext(wait, warmParallel); err != nil {
		t.Fatalf("warm's first requests: %v", err)
	}
	clock.Advance(time.Second) // they answer
	if err := clock.BlockUntilContext(wait, warmParallel); err != nil {
		t.Fatalf("warm's next requests: %v", err)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted warm: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("warm did not stop when cancelled")
	}
	fx.settle(t)
	fx.budgetReturns(t)
	got := fx.m.CachedBytes(fx.v)
	if want := int64(warmParallel * warmBlocksPerGet * bs); got != want {
		t.Errorf("an interrupted warm cached %d bytes, want the %d its first requests fetched", got, want)
	}
}

func TestWarmWithoutDisk(t *testing.T) {
	fx := newFixture(t, mib, 0, 32*mib)
	if err := fx.m.Warm(context.Background(), fx.v); !errors.Is(err, ErrNoDisk) {
		t.Fatalf("warm without a disk tier: %v", err)
	}
}

// TestRandomReadsFillDiskTier: with a disk tier, the first random read of
// a block fetches just its bytes and the second fetches the whole block,
// which then serves the rest of the block and, after a restart, every
// record in it without a GET. Without a disk tier random reads stay exact.
func TestRandomReadsFillDiskTier(t *testing.T) {
	const rec = 64 << 10
	dir := t.TempDir()
	fx := diskFixture(t, 4*mib, dir)
	r := fx.m.NewReader(fx.v)
	calls := func() int64 { return fx.st.Calls("GetObject") }
	fx.read(t, r, 2*mib+5*rec, rec) // block 2, first miss: exact
	fetched := fx.m.Stats.BytesFetched.Load()
	if fetched != rec {
		t.Errorf("first miss fetched %d bytes, want %d", fetched, rec)
	}
	fx.read(t, r, 2*mib+1*rec, rec) // block 2 again: whole block
	if got := fx.m.Stats.BytesFetched.Load() - fetched; got != bs {
		t.Errorf("second miss fetched %d bytes, want the block's %d", got, bs)
	}
	if fx.m.Stats.Promoted.Load() != 1 {
		t.Errorf("Promoted = %d, want 1", fx.m.Stats.Promoted.Load())
	}
	before := calls()
	fx.read(t, r, 2*mib+9*rec, 3*rec) // the rest of block 2 is local
	fx.read(t, r, 3*mib-rec-7, 2*rec) // across blocks 2 and 3: 3 is a first miss, exact
	if got := calls() - before; got != 1 {
		t.Errorf("%d GETs for the rest of block 2 and a first miss of block 3, want 1", got)
	}
	r.Close()
	fx.settle(t)
	fx.c.Close() // writes what is queued

	fx.restart(t, dir)
	r = fx.m.NewReader(fx.v)
	defer r.Close()
	before = calls()
	for off := int64(2 * mib); off < 3*mib; off += 4 * rec {
		fx.read(t, r, off+100, rec)
	}
	if got := calls() - before; got != 0 {
		t.Errorf("%d GETs for records of block 2 after a restart, want 0", got)
	}

	// Without a disk tier: exact every time.
	mem := newFixture(t, 4*mib, 0, 32*mib)
	mr := mem.m.NewReader(mem.v)
	defer mr.Close()
	for range 3 {
		mem.read(t, mr, 2*mib+5*rec, rec)
	}
	if got := mem.m.Stats.BytesFetched.Load(); got > 3*rec {
		t.Errorf("without a disk tier, three misses of one record fetched %d bytes, want at most %d", got, 3*rec)
	}
}

// TestMissSetForgetsOldest: the set of missed blocks is bounded and drops
// the oldest first.
func TestMissSetForgetsOldest(t *testing.T) {
	s := newMissSet(3)
	k := func(i int64) cache.Key { return cache.Key{Bucket: "b", Object: "o", ETag: "e", Index: i} }
	for i := range int64(4) {
		if s.missed(k(i)) {
			t.Fatalf("block %d: missed before on its first miss", i)
		}
	}
	if s.missed(k(0)) {
		t.Error("block 0 still remembered after 3 newer misses in a set of 3")
	}
	if !s.missed(k(3)) {
		t.Error("block 3 forgotten")
	}
	if len(s.seen) != 3 {
		t.Errorf("set holds %d keys, want 3", len(s.seen))
	}
}

// TestDiskTierResumedBlocksReadBack: blocks whose GETs were cut mid-block
// and resumed carry, on the disk tier, the checksum of the bytes that
// landed across both GETs (summed as they land): after a restart they
// read back whole, none is found damaged, and no GET is sent.
func TestDiskTierResumedBlocksReadBack(t *testing.T) {
	dir := t.TempDir()
	fx := diskFixture(t, 10*mib+5, dir)
	fs := &flakyStore{Store: fx.st, faults: 4, after: 300<<10 + 7}
	fx.m = newManager(fs, fx.c, 32*mib, Options{BlockSize: bs, MaxReadahead: 8 * mib, MaxGets: 8, MaxRetries: 3, StallTimeout: time.Second, SplitBytes: 256 << 10})
	fx.readAll(t)
	if got := fx.m.Stats.Resumes.Load(); got != 4 {
		t.Fatalf("%d resumes, want 4", got)
	}
	fx.c.Close() // writes what is queued

	fx.restart(t, dir)
	before := fx.st.Calls("GetObject")
	fx.readAll(t)
	if got := fx.st.Calls("GetObject") - before; got != 0 {
		t.Errorf("%d GETs after the restart, want 0", got)
	}
	if n := fx.c.DiskStats().Corrupt.Load(); n != 0 {
		t.Errorf("%d block files written after resumed GETs found damaged", n)
	}
}
