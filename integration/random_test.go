package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRandomReadsFetchWhatIsRead: random 256 KiB preads, two handles per
// file on four files at once, fetch at most 1.1x the bytes read: the
// kernel's read-ahead around reads that overlap what the other handle
// read (two contiguous requests for one pread) is not taken for a
// sequential reader. Each handle's first read is near the file's start
// (4 KiB or 8 KiB in). A second round, on new handles of the same files,
// begins at offset 0 (a header; the other handle 4 KiB in): the files
// were read randomly, so that first read is not taken for a sequential
// reader either. Then a sequential read of one of them on a new handle
// still streams: whole blocks fetched ahead, about as many GETs as the
// same read of a file never read randomly, and so does loading another
// through a memory map. Offsets come from fixed seeds.
func TestRandomReadsFetchWhatIsRead(t *testing.T) {
	const (
		files   = 4
		handles = 2 // per file
		records = 24
		rec     = 256 << 10
		size    = 24 << 20
	)
	objects := map[string][]byte{}
	for i := range files {
		objects[fmt.Sprintf("shard-%d.bin", i)] = randomBytes(uint64(40+i), size)
	}
	objects["fresh.bin"] = randomBytes(50, size)
	b := newBucket(t, objects)
	m, px := proxiedMount(t, b)
	path := func(i int) string { return filepath.Join(m.Dir, fmt.Sprintf("shard-%d.bin", i)) }

	round := func(name string, first int64) {
		t.Helper()
		for i := range files {
			dropCache(t, path(i))
		}
		px.Reset()
		var wg sync.WaitGroup
		for i := range files {
			for h := range handles {
				wg.Go(func() {
					f, err := os.Open(path(i))
					if err != nil {
						t.Error(err)
						return
					}
					defer f.Close()
					rng := rand.New(rand.NewPCG(uint64(i), uint64(h)+uint64(first)))
					offs := []int64{first + int64(h)*4096}
					for len(offs) < records {
						offs = append(offs, rng.Int64N(size-rec)&^4095)
					}
					buf := make([]byte, rec)
					want := objects[fmt.Sprintf("shard-%d.bin", i)]
					for _, off := range offs {
						if _, err := f.ReadAt(buf, off); err != nil {
							t.Errorf("%s: shard %d: read at %d: %v", name, i, off, err)
							return
						}
						if !bytes.Equal(buf, want[off:off+rec]) {
							t.Errorf("%s: shard %d: wrong bytes at %d", name, i, off)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		read := int64(files * handles * records * rec)
		got := px.Stats().GetBytes
		t.Logf("%s: fetched %d bytes for %d read (%.3fx)", name, got, read, float64(got)/float64(read))
		if float64(got) > 1.1*float64(read) {
			t.Errorf("%s: fetched %d bytes for %d read: %.3fx, want <= 1.1x", name, got, read, float64(got)/float64(read))
		}
	}
	round("first handles", 4096)
	round("new handles, first read at 0", 0)

	// A sequential read after the random ones, on a new handle, against
	// the same read of a file never read randomly.
	seq := func(p string) (gets, streams, ahead, fetched int64) {
		t.Helper()
		dropCache(t, p)
		px.Reset()
		st0 := readStats(t, m.Dir)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
		if err != nil || n != size {
			t.Fatalf("sequential read of %s: %d bytes, %v", p, n, err)
		}
		st := readStats(t, m.Dir)
		return px.Stats().Gets, st["streams_started"] - st0["streams_started"], st["readahead_blocks"] - st0["readahead_blocks"], px.Stats().GetBytes
	}
	fg, _, fa, ff := seq(filepath.Join(m.Dir, "fresh.bin"))
	gets, streams, ahead, fetched := seq(path(0))
	t.Logf("sequential read of 24 MiB: %d GETs, %d streams, %d blocks read ahead, %d bytes fetched (file never read randomly: %d GETs, %d blocks read ahead, %d bytes)", gets, streams, ahead, fetched, fg, fa, ff)
	if streams < 1 || ahead < 3 {
		t.Errorf("the sequential read after random ones started %d streams, read %d blocks ahead", streams, ahead)
	}
	if gets > fg+3 {
		t.Errorf("the sequential read after random ones made %d GETs, a file never read randomly %d: not fetching whole blocks", gets, fg)
	}
	if float64(fetched) > 1.2*size {
		t.Errorf("the sequential read after random ones fetched %d bytes for %d", fetched, size)
	}

	// A file read randomly before, loaded through a memory map in order
	// (safetensors, numpy memmap): exact bytes, and it streams.
	p := path(1)
	dropCache(t, p)
	px.Reset()
	st0 := readStats(t, m.Dir)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer unix.Munmap(mem)
	if !bytes.Equal(mem, objects["shard-1.bin"]) {
		t.Error("the memory map holds other bytes than the object")
	}
	st := readStats(t, m.Dir)
	got := px.Stats().GetBytes
	t.Logf("mmap of 24 MiB in order: %d bytes fetched, %d streams", got, st["streams_started"]-st0["streams_started"])
	if st["streams_started"] == st0["streams_started"] || float64(got) > 1.2*size {
		t.Errorf("mmap of a file read randomly before: %d streams, %d bytes fetched for %d", st["streams_started"]-st0["streams_started"], got, size)
	}
}
