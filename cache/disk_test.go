package cache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const dbs = 64 << 10 // block size in the disk tests

// blockData returns a block whose bytes depend on i.
func blockData(i int64, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(int64(j)*7 + i*13)
	}
	return b
}

func openTestDisk(t *testing.T, dir string, maxBytes int64) *Disk {
	t.Helper()
	d, err := openDisk(DiskConfig{Dir: dir, MaxBytes: maxBytes}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.WaitScan()
	return d
}

// fileSize is the size of key(i)'s file holding n bytes.
func fileSize(i int64, n int) int64 { return int64(diskPage + n) }

func mustRead(t *testing.T, d *Disk, i int64) {
	t.Helper()
	buf := make([]byte, dbs)
	if !d.Read(key(i), buf) {
		t.Fatalf("block %d not on disk", i)
	}
	if !bytes.Equal(buf, blockData(i, dbs)) {
		t.Fatalf("block %d: wrong bytes", i)
	}
}

func TestDiskWriteReadAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	d := openTestDisk(t, dir, 1<<30)
	for i := range int64(5) {
		if err := d.Write(key(i), blockData(i, dbs)); err != nil {
			t.Fatal(err)
		}
	}
	mustRead(t, d, 3)
	// An object's last block is often not a whole number of pages.
	odd := blockData(7, 1000)
	d.Write(key(7), odd)
	if got := make([]byte, 1000); !d.Read(key(7), got) || !bytes.Equal(got, odd) {
		t.Fatal("a 1000-byte block did not read back")
	}
	if d.Has(key(9)) || d.Read(key(9), make([]byte, dbs)) {
		t.Fatal("block 9 was never written")
	}
	// Another version of the object never finds these blocks.
	other := key(3)
	other.ETag = `"e2"`
	if d.Has(other) || d.Read(other, make([]byte, dbs)) {
		t.Fatal("another ETag found a block")
	}
	d.Close()

	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	d = openTestDisk(t, dir, 1<<30)
	defer d.Close()
	d.remove(fileName(key(7)))
	if got, want := d.Stats.Files.Load(), int64(5); got != want {
		t.Fatalf("index after restart holds %d files, want %d", got, want)
	}
	if got, want := d.Used(), 5*fileSize(0, dbs); got != want {
		t.Fatalf("index after restart counts %d bytes, want %d", got, want)
	}
	for i := range int64(5) {
		mustRead(t, d, i)
	}
}

func TestDiskEvictsToSizeLimit(t *testing.T) {
	limit := 4 * fileSize(0, dbs)
	d := openTestDisk(t, t.TempDir(), limit)
	defer d.Close()
	d.Write(key(0), blockData(0, dbs))
	for i := int64(1); i < 10; i++ {
		// Block 0 is read after every write: it is the one that stays.
		mustRead(t, d, 0)
		if err := d.Write(key(i), blockData(i, dbs)); err != nil {
			t.Fatal(err)
		}
		if d.Used() > limit {
			t.Fatalf("after %d writes the cache holds %d bytes, over its %d limit", i+1, d.Used(), limit)
		}
	}
	mustRead(t, d, 0)
	mustRead(t, d, 9)
	if d.Has(key(1)) {
		t.Error("block 1, never read again, survived eviction")
	}
	if n := d.Stats.Evictions.Load(); n != 6 {
		t.Errorf("%d evictions, want 6", n)
	}
	// Evicted files are gone from the directory too.
	var files int
	filepath.WalkDir(filepath.Join(d.Dir(), "blocks"), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			files++
		}
		return nil
	})
	if files != 4 {
		t.Errorf("%d block files on disk, want 4", files)
	}
}

// TestDiskFrequentBlocksOutliveAStream: a block read again and again is not
// flushed by a run of blocks written once (one long stream), as it would
// be under plain LRU.
func TestDiskFrequentBlocksOutliveAStream(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 4*fileSize(0, dbs))
	defer d.Close()
	d.Write(key(0), blockData(0, dbs))
	for range 3 {
		mustRead(t, d, 0)
	}
	for i := int64(100); i < 104; i++ {
		d.Write(key(i), blockData(i, dbs))
	}
	if !d.Has(key(0)) {
		t.Fatal("a block read three times was evicted by four blocks written once")
	}
	mustRead(t, d, 103)
}

func TestDiskKeepsFreeSpaceFloor(t *testing.T) {
	dir := t.TempDir()
	d, err := openDisk(DiskConfig{Dir: dir, MaxBytes: 1 << 30, MinFree: 10 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.WaitScan()
	// A filesystem with 10 MiB + 3 blocks free when the cache is empty.
	base := int64(10<<20) + 3*fileSize(0, dbs)
	d.mu.Lock()
	d.space = func() (int64, int64, error) { return base - d.used, 1 << 40, nil } // called with d.mu held
	d.mu.Unlock()
	for i := range int64(6) {
		d.Write(key(i), blockData(i, dbs))
	}
	if n := d.Stats.Files.Load(); n != 3 {
		t.Fatalf("%d blocks kept, want 3: the free-space floor allows no more", n)
	}
	mustRead(t, d, 5)
	// A disk filled by someone else leaves no room: nothing is written and
	// the cache gives up its own blocks first.
	d.mu.Lock()
	d.space = func() (int64, int64, error) { return 1 << 20, 1 << 40, nil }
	d.mu.Unlock()
	d.Write(key(6), blockData(6, dbs))
	if d.Has(key(6)) || d.Stats.Files.Load() != 0 {
		t.Fatalf("with the disk full, %d blocks kept", d.Stats.Files.Load())
	}
	if d.Stats.Dropped.Load() == 0 {
		t.Error("a block left unwritten was not counted as dropped")
	}
}

func TestDiskDamagedBlockIsDropped(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 1<<30)
	defer d.Close()
	for i := range int64(4) {
		d.Write(key(i), blockData(i, dbs))
	}
	damage := map[int64]func(path string){
		0: func(p string) { // one flipped bit in the data
			b, _ := os.ReadFile(p)
			b[len(b)-100] ^= 1
			os.WriteFile(p, b, 0o600)
		},
		1: func(p string) { os.Truncate(p, 1000) },                            // torn write
		2: func(p string) { os.WriteFile(p, nil, 0o600) },                     // empty file
		3: func(p string) { os.WriteFile(p, make([]byte, 1<<16+200), 0o600) }, // zeros
	}
	for i, f := range damage {
		p := d.path(fileName(key(i)))
		f(p)
		buf := make([]byte, dbs)
		if d.Read(key(i), buf) {
			t.Errorf("damaged block %d was served", i)
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("damaged block %d's file was kept", i)
		}
		if d.Has(key(i)) {
			t.Errorf("damaged block %d still indexed", i)
		}
	}
	if n := d.Stats.Corrupt.Load(); n != 4 {
		t.Errorf("%d damaged blocks counted, want 4", n)
	}
	// Written again, it reads back.
	d.Write(key(0), blockData(0, dbs))
	mustRead(t, d, 0)
}

// TestDiskCrashMidWrite: what a crash can leave behind (a temporary file,
// a block file cut short, a stray tiny file) is never served and is
// cleaned up by the next start.
func TestDiskCrashMidWrite(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, 1<<30)
	d.Write(key(0), blockData(0, dbs))
	d.Write(key(1), blockData(1, dbs))
	d.Close()

	tmp := filepath.Join(dir, "tmp", "block-123")
	os.WriteFile(tmp, []byte("half a block"), 0o600)
	os.Truncate(filepath.Join(dir, "blocks", fileName(key(1))), dbs/2)
	stray := filepath.Join(dir, "blocks", "ab", "cdef")
	os.MkdirAll(filepath.Dir(stray), 0o700)
	os.WriteFile(stray, []byte("x"), 0o600)

	d = openTestDisk(t, dir, 1<<30)
	defer d.Close()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Error("temporary file left from the crash survived the restart")
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Error("stray file shorter than a header survived the scan")
	}
	mustRead(t, d, 0)
	if d.Read(key(1), make([]byte, dbs)) {
		t.Fatal("block cut short by a crash was served")
	}
}

// TestDiskIndexRebuildKeepsRecency: after a restart the blocks read least
// recently (oldest mtime) go first, and a smaller limit is applied at once.
func TestDiskIndexRebuildKeepsRecency(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, 1<<30)
	for i := range int64(6) {
		d.Write(key(i), blockData(i, dbs))
	}
	d.Close()
	old := time.Now().Add(-48 * time.Hour)
	for _, i := range []int64{1, 3} {
		os.Chtimes(filepath.Join(dir, "blocks", fileName(key(i))), old, old)
	}
	d = openTestDisk(t, dir, 4*fileSize(0, dbs))
	defer d.Close()
	if d.Used() > 4*fileSize(0, dbs) {
		t.Fatalf("over the new limit after the scan: %d bytes", d.Used())
	}
	for _, i := range []int64{1, 3} {
		if d.Has(key(i)) {
			t.Errorf("block %d, the oldest, survived the trim", i)
		}
	}
	for _, i := range []int64{0, 2, 4, 5} {
		mustRead(t, d, i)
	}
}

func TestDiskSecondOpenRefused(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, 1<<30)
	_, err := openDisk(DiskConfig{Dir: dir, MaxBytes: 1 << 30}, nil)
	if !errors.Is(err, ErrCacheInUse) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second open: %v, want ErrCacheInUse naming the pid", err)
	}
	d.Close()
	d2, err := openDisk(DiskConfig{Dir: dir, MaxBytes: 1 << 30}, nil)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	d2.Close()
}

func TestDiskRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	os.Chmod(dir, 0o755)
	_, err := openDisk(DiskConfig{Dir: dir, MaxBytes: 1 << 30}, nil)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("open of a directory holding other files: %v", err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("a refused directory's mode was changed to %v", fi.Mode().Perm())
	}
}

// TestFetchedBlocksWriteThrough: blocks a fetch function brought are
// queued for the disk tier when their flight lands; Close writes what is
// queued; blocks read from the disk tier are not written again.
func TestFetchedBlocksWriteThrough(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{MemoryBytes: 8 << 20, BlockSize: dbs, Disk: &DiskConfig{Dir: dir, MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	c.disk.WaitScan()
	fetches := 0
	fetch := func(ctx context.Context, fs []*Flight) {
		for _, f := range fs {
			fetches++
			copy(f.Buffer(), blockData(f.Key().Index, dbs))
			f.Filled(dbs)
			f.Finish(nil)
		}
	}
	fill := func(c *Cache, i int64) {
		f, b, created := c.Join(key(i), dbs)
		defer b.Release()
		if created {
			c.Fill(context.Background(), fetch, f)
		}
		if data, err := f.Wait(context.Background(), dbs); err != nil || !bytes.Equal(data, blockData(i, dbs)) {
			t.Fatalf("block %d: %v", i, err)
		}
	}
	for i := range int64(3) {
		fill(c, i)
	}
	c.Close()
	if fetches != 3 {
		t.Fatalf("%d fetches for 3 blocks", fetches)
	}
	c, err = New(Config{MemoryBytes: 8 << 20, BlockSize: dbs, Disk: &DiskConfig{Dir: dir, MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range int64(3) {
		fill(c, i)
	}
	if fetches != 3 || c.disk.Stats.Hits.Load() != 3 || c.disk.Stats.Writes.Load() != 0 {
		t.Errorf("after a restart: %d fetches, %d disk hits, %d disk writes; want 3, 3, 0",
			fetches, c.disk.Stats.Hits.Load(), c.disk.Stats.Writes.Load())
	}
}

// TestDiskDeferredWrites: blocks that find the write queue full are
// written later from the memory tier; those gone from memory are counted
// as dropped.
func TestDiskDeferredWrites(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	memory := map[Key]*Block{}
	d, err := openDisk(DiskConfig{Dir: dir, MaxBytes: 1 << 30, QueueBlocks: 1}, func(k Key) (*Block, bool) {
		mu.Lock()
		defer mu.Unlock()
		b, ok := memory[k]
		if ok {
			b.Ref()
		}
		return b, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	d.WaitScan()
	for i := range int64(40) {
		b := &Block{data: blockData(i, dbs)}
		b.refs.Store(1)
		if i%10 != 9 { // every tenth block leaves memory at once
			mu.Lock()
			memory[key(i)] = b
			mu.Unlock()
		}
		d.Enqueue(key(i), b)
	}
	d.Close()
	d = openTestDisk(t, dir, 1<<30)
	defer d.Close()
	written := 0
	for i := range int64(40) {
		if d.Has(key(i)) {
			mustRead(t, d, i)
			written++
		} else if i%10 != 9 {
			t.Errorf("block %d, still in memory, was not written", i)
		}
	}
	if written < 36 {
		t.Errorf("%d of 40 blocks written", written)
	}
}

// TestDiskBlockOfOtherRange writes a block under one byte range and reads
// it under keys of the same index cut at other block sizes: none of them
// finds it, so a block cut at another size is never served.
func TestDiskBlockOfOtherRange(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 1<<30)
	defer d.Close()
	k := Key{Bucket: "b", Object: "o", ETag: "e", Index: 1, Offset: 4 << 20, Length: 2 << 20}
	data := blockData(1, 2<<20)
	if err := d.Write(k, data); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2<<20)
	if !d.Read(k, buf) || !bytes.Equal(buf, data) {
		t.Fatal("block not read back under its own key")
	}
	for _, other := range []Key{
		{Bucket: "b", Object: "o", ETag: "e", Index: 1, Offset: 2 << 20, Length: 2 << 20}, // 2 MiB blocks
		{Bucket: "b", Object: "o", ETag: "e", Index: 1, Offset: 4 << 20, Length: 1 << 20}, // shorter last block
	} {
		if d.Has(other) || d.Read(other, make([]byte, other.Length)) {
			t.Errorf("block of %d+%d served for %d+%d", k.Offset, k.Length, other.Offset, other.Length)
		}
	}
}

// TestDiskRefusesForeignCacheTag opens a directory that another tool
// marked with a CACHEDIR.TAG: it is refused and nothing in it is touched,
// its tmp/ included.
func TestDiskRefusesForeignCacheTag(t *testing.T) {
	dir := t.TempDir()
	cargo := "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cargo.\n"
	os.WriteFile(filepath.Join(dir, "CACHEDIR.TAG"), []byte(cargo), 0o644)
	os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	os.WriteFile(filepath.Join(dir, "tmp", "keep"), []byte("work"), 0o644)
	_, err := openDisk(DiskConfig{Dir: dir, MaxBytes: 1 << 30}, nil)
	if err == nil || !strings.Contains(err.Error(), "not a bucketfs cache") {
		t.Fatalf("open of a cargo-tagged directory: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "tmp", "keep")); err != nil || string(got) != "work" {
		t.Errorf("tmp/keep after the refusal: %q, %v", got, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "CACHEDIR.TAG")); string(got) != cargo {
		t.Errorf("the foreign tag was rewritten: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, formatFile)); err == nil {
		t.Error("a format file was written into a refused directory")
	}
}

// TestDiskStartsOtherFormatAfresh opens cache directories of an earlier
// layout (bucketfs's own tag without a format file, and a format file of
// another version): their block files are removed, the directory gets the
// current format file, and blocks written then read back.
func TestDiskStartsOtherFormatAfresh(t *testing.T) {
	for name, marker := range map[string][2]string{
		"tag only":     {"CACHEDIR.TAG", cacheDirTag},
		"older format": {formatFile, "bucketfs block cache, format 2\n"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, marker[0]), []byte(marker[1]), 0o600)
			old := filepath.Join(dir, "blocks", "ab", "cdef")
			os.MkdirAll(filepath.Dir(old), 0o700)
			os.WriteFile(old, []byte("a block cut at another size"), 0o600)
			d := openTestDisk(t, dir, 1<<30)
			defer d.Close()
			if _, err := os.Stat(old); err == nil {
				t.Error("a block file of the earlier layout survived")
			}
			if got, _ := os.ReadFile(filepath.Join(dir, formatFile)); string(got) != formatLine {
				t.Errorf("format file %q, want %q", got, formatLine)
			}
			if err := d.Write(key(0), blockData(0, dbs)); err != nil {
				t.Fatal(err)
			}
			mustRead(t, d, 0)
		})
	}
}

// TestFlightSumsBlockAsItFills: a flight bound for the disk tier sums its
// bytes as they land, in whatever pieces they come, to the checksum the
// block file holds; the file written with it reads back. Bytes changed
// after they were summed make the file fail its check on reading: the
// disk tier then fetches again rather than serve them.
func TestFlightSumsBlockAsItFills(t *testing.T) {
	c, err := New(Config{MemoryBytes: 8 << 20, BlockSize: dbs, Disk: &DiskConfig{Dir: t.TempDir(), MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.disk.WaitScan()
	fill := func(i int64, tamper bool) *Block {
		f, b, created := c.Join(key(i), dbs)
		if !created {
			t.Fatalf("block %d: not a new flight", i)
		}
		want := blockData(i, dbs)
		for _, end := range []int{1, 4096, 4097, 50_000, dbs} {
			copy(f.Buffer()[f.summed:end], want[f.summed:end])
			f.Filled(end)
		}
		if tamper {
			f.Buffer()[10] ^= 1
		}
		f.Finish(nil)
		return b
	}
	b := fill(1, false)
	if !b.summed || b.sum != diskSum(key(1).String(), blockData(1, dbs)) {
		t.Fatalf("summed %v, sum %08x; want the block file's %08x", b.summed, b.sum, diskSum(key(1).String(), blockData(1, dbs)))
	}
	c.disk.writeBlock(key(1), b)
	buf := make([]byte, dbs)
	if !c.disk.Read(key(1), buf) || !bytes.Equal(buf, blockData(1, dbs)) {
		t.Fatal("the block written with the flight's sum does not read back")
	}

	b = fill(2, true)
	c.disk.writeBlock(key(2), b)
	if c.disk.Read(key(2), buf) {
		t.Fatal("a block changed after it was summed read back from the disk tier")
	}
	if got := c.disk.Stats.Corrupt.Load(); got != 1 {
		t.Fatalf("%d damaged block files counted, want 1", got)
	}
}
