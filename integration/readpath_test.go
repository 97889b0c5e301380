package integration

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
	"golang.org/x/sys/unix"
)

// proxiedMount mounts bucket through a counting proxy in front of the
// server.
func proxiedMount(t *testing.T, bucket string, extra ...string) (*harness.Mount, *proxy.Proxy) {
	t.Helper()
	px, err := proxy.Start(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	dir := t.TempDir()
	args := append([]string{"--endpoint", px.URL, "--path-style", "--log-level", "debug"}, extra...)
	m, err := harness.StartMount(bin, harness.Env(px.URL), dir, append(args, bucket)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("unclean exit: %v\n%s", err, m.Log())
		}
	})
	return m, px
}

// dropCache evicts the kernel's cached pages of path, so reads reach bucketfs.
func dropCache(t *testing.T, path string) {
	t.Helper()
	if err := evictPages(path); err != nil {
		t.Fatal(err)
	}
}

// evictPages drops the kernel's cached pages of path (safe to call from
// any goroutine).
func evictPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// TestAccessPatternsByteExact reads one object through the mount the ways
// its users do (sequential, random records, tag-then-play with seeks, small
// steps back) and checks every byte.
func TestAccessPatternsByteExact(t *testing.T) {
	const size = 40<<20 + 4321
	data := randomBytes(21, size)
	b := newBucket(t, map[string][]byte{"set.mp3": data, "small.txt": []byte("tracklist\n")})
	m, px := proxiedMount(t, b, "--block-size", "1MiB", "--max-readahead", "8MiB")
	p := filepath.Join(m.Dir, "set.mp3")
	check := func(name string, f *os.File, off int64, n int) {
		t.Helper()
		buf := make([]byte, n)
		got, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatalf("%s: read %d@%d: %v", name, n, off, err)
		}
		want := data[off:min(off+int64(n), size)]
		if got != len(want) || !bytes.Equal(buf[:got], want) {
			t.Fatalf("%s: read %d@%d: wrong bytes", name, n, off)
		}
	}
	open := func() *os.File {
		dropCache(t, p)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}

	f := open()
	for off := int64(0); off < size; off += 1 << 20 {
		check("sequential", f, off, 1<<20)
	}
	seqFetched := px.Stats().GetBytes
	if seqFetched < size || seqFetched > size+size/10 {
		t.Errorf("sequential read fetched %d bytes for %d", seqFetched, size)
	}

	f = open()
	r := rand.New(rand.NewPCG(3, 3))
	for range 50 {
		check("random", f, r.Int64N(size), 256<<10)
	}

	f = open()
	check("tag", f, size-128, 128)
	for _, start := range []int64{0, 17 << 20, 33<<20 + 5} {
		for c := int64(0); c < 32; c++ {
			check("playback", f, start+c*64<<10, 64<<10)
		}
		check("step back", f, start+20*64<<10, 4096)
	}

	data2, err := os.ReadFile(filepath.Join(m.Dir, "small.txt"))
	if err != nil || string(data2) != "tracklist\n" {
		t.Errorf("small file: %q %v", data2, err)
	}
}

// TestCachedBlocksCostNoGET reads a file, drops the kernel's pages, and
// reads it again: the block cache serves it without a single GET.
func TestCachedBlocksCostNoGET(t *testing.T) {
	const size = 24 << 20
	data := randomBytes(22, size)
	b := newBucket(t, map[string][]byte{"weights.bin": data})
	m, px := proxiedMount(t, b)
	p := filepath.Join(m.Dir, "weights.bin")
	first, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(first, data) {
		t.Fatalf("first read: %v", err)
	}
	before := px.Stats()
	if before.Gets == 0 {
		t.Fatal("the first read made no GET through the proxy")
	}
	dropCache(t, p)
	again, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("re-read: %v", err)
	}
	if after := px.Stats(); after.Gets != before.Gets {
		t.Errorf("re-read of cached blocks made %d GETs", after.Gets-before.Gets)
	}
}

// TestSlowReadsLogged: with --log-slow-reads, a read slower than the limit
// (here the first reads: the store answers after 80 ms) is logged with
// the file, the offset and what it waited for; the stats count it.
func TestSlowReadsLogged(t *testing.T) {
	data := randomBytes(23, 3<<20)
	b := newBucket(t, map[string][]byte{"set.mp3": data})
	m, px := proxiedMount(t, b, "--log-slow-reads", "40ms", "--log-level", "info")
	px.SetLatency(80 * time.Millisecond)
	p := filepath.Join(m.Dir, "set.mp3")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v", err)
	}
	// The kernel's requests may be served in any order; the one at offset
	// 0 waited for block 0 whichever of them asked for it first.
	var line string
	waitFor(t, 2*time.Second, "the read at offset 0 in the log", func() bool {
		for _, l := range strings.Split(m.Log(), "\n") {
			if strings.Contains(l, `msg="slow read"`) && strings.Contains(l, "offset=0 ") {
				line = l
				return true
			}
		}
		return false
	})
	for _, want := range []string{"key=set.mp3", "block 0 (", "waited", "the file's lock"} {
		if !strings.Contains(line, want) {
			t.Errorf("slow-read line lacks %q:\n%s", want, line)
		}
	}
	if n := readStats(t, m.Dir)["slow_reads"]; n < 1 {
		t.Errorf("stats count %d slow reads", n)
	}
}
