package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/bucketfs/bucketfs/integration/harness"
)

// randomBytes returns n deterministic pseudo-random bytes (ChaCha8: fast
// even under the race detector, which the 300 MiB write tests need).
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// TestPreadOffsets reads with pread at many offsets, including ones that
// cross the end of the object and ones past it.
func TestPreadOffsets(t *testing.T) {
	const size = 5<<20 + 12345
	data := randomBytes(1, size)
	b := newBucket(t, map[string][]byte{"obj.bin": data})
	m := mount(t, b)
	f, err := os.Open(filepath.Join(m.Dir, "obj.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cases := []struct{ off, n int64 }{
		{0, 1}, {0, 4096}, {1, 100}, {4095, 2}, {131071, 131073}, {1 << 20, 1 << 20},
		{3<<20 + 7, 999_999}, {size - 10, 10}, {size - 10, 100}, {size - 1, 1},
		{size, 10}, {size + 1, 10}, {size + 1<<30, 4096}, {2 << 20, 0},
	}
	for _, c := range cases {
		buf := make([]byte, c.n)
		n, err := f.ReadAt(buf, c.off)
		want := int64(0)
		if c.off < size {
			want = min(c.n, size-c.off)
		}
		if int64(n) != want {
			t.Errorf("pread(%d, %d) = %d bytes (%v), want %d", c.off, c.n, n, err, want)
			continue
		}
		if err != nil && err != io.EOF {
			t.Errorf("pread(%d, %d): %v", c.off, c.n, err)
		}
		if want > 0 && !bytes.Equal(buf[:n], data[c.off:c.off+want]) {
			t.Errorf("pread(%d, %d): bytes differ", c.off, c.n)
		}
	}
}

// TestLargeObjectChecksum reads a 64 MiB object through the mount and
// compares its SHA-256 with the source's.
func TestLargeObjectChecksum(t *testing.T) {
	data := randomBytes(2, 64<<20)
	b := newBucket(t, map[string][]byte{"set.mp3": data})
	m := mount(t, b)
	f, err := os.Open(filepath.Join(m.Dir, "set.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Errorf("sha256 through the mount %x, want %x", got, want)
	}
}

// TestConcurrentReaders runs 8 readers of one file and 8 readers of 8
// different files at once; every byte must match.
func TestConcurrentReaders(t *testing.T) {
	objs := map[string][]byte{}
	for i := range 8 {
		objs[fmt.Sprintf("f%d.bin", i)] = randomBytes(uint64(10+i), 3<<20+i*1000)
	}
	shared := randomBytes(99, 9<<20)
	objs["shared.bin"] = shared
	b := newBucket(t, objs)
	m := mount(t, b)

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	check := func(name string, want []byte, seed uint64) {
		defer wg.Done()
		f, err := os.Open(filepath.Join(m.Dir, name))
		if err != nil {
			errs <- err
			return
		}
		defer f.Close()
		// Each reader uses its own pattern: sequential chunks from a
		// random start, wrapping around.
		r := rand.New(rand.NewPCG(seed, 1))
		start := r.Int64N(int64(len(want)))
		buf := make([]byte, 300_000)
		for done := int64(0); done < int64(len(want)); done += int64(len(buf)) {
			off := (start + done) % int64(len(want))
			n, err := f.ReadAt(buf, off)
			if err != nil && err != io.EOF {
				errs <- fmt.Errorf("%s at %d: %v", name, off, err)
				return
			}
			if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
				errs <- fmt.Errorf("%s at %d: bytes differ", name, off)
				return
			}
		}
	}
	for i := range 8 {
		wg.Add(2)
		go check("shared.bin", shared, uint64(i))
		name := fmt.Sprintf("f%d.bin", i)
		go check(name, objs[name], uint64(100+i))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestChangedObjectUnderOpenHandle overwrites an object while a handle is
// open: further reads on that handle fail with ESTALE rather than mixing
// versions, and a fresh open reads the new bytes.
func TestChangedObjectUnderOpenHandle(t *testing.T) {
	const size = 32 << 20
	oldData, newData := randomBytes(3, size), randomBytes(4, size)
	b := newBucket(t, map[string][]byte{"live.bin": oldData})
	// A zero TTL makes a fresh open check the object's current version.
	m := mount(t, "--metadata-ttl", "0", b)
	p := filepath.Join(m.Dir, "live.bin")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, oldData[:len(buf)]) {
		t.Fatalf("first read: %v", err)
	}
	if err := harness.Put(context.Background(), client, b, "live.bin", newData); err != nil {
		t.Fatal(err)
	}
	// Far beyond anything the kernel read ahead.
	_, err = f.ReadAt(buf, 24<<20)
	if !errors.Is(err, syscall.ESTALE) {
		t.Errorf("read after overwrite: %v, want ESTALE", err)
	}

	g, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, off := range []int64{0, 24 << 20} {
		if _, err := g.ReadAt(buf, off); err != nil || !bytes.Equal(buf, newData[off:off+int64(len(buf))]) {
			t.Errorf("fresh open at %d: %v, or old bytes", off, err)
		}
	}
}
