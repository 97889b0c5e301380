package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// These tests mount the tree in this process through the kernel (they need
// root and /dev/fuse, and skip otherwise) and check what programs see.

// TestMountRead reads a mounted object at many offsets, both through the
// page cache and with O_DIRECT (each read reaching the tree), including
// reads that cross and start past the end; an empty file reads empty
// without any GET.
func TestMountRead(t *testing.T) {
	const size = 300_001
	data := randomBytes(size, 3)
	f := store.NewFake()
	f.Seed("bkt", "d/blob", data)
	f.Seed("bkt", "d/empty", nil)
	cfg, _, _ := testConfig(f, "bkt")
	mnt := testMount(t, cfg)
	path := filepath.Join(mnt, "d/blob")

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("ReadFile returned %d bytes that differ from the object's %d", len(got), len(data))
	}

	tests := []struct {
		off, size int
		wantN     int
	}{
		{off: 0, size: 4096, wantN: 4096},
		{off: 1, size: 10, wantN: 10},
		{off: 4095, size: 2, wantN: 2},
		{off: 123_457, size: 65_536, wantN: 65_536},
		{off: 200_000, size: 1 << 20, wantN: size - 200_000},
		{off: size - 10, size: 10, wantN: 10},
		{off: size - 10, size: 100, wantN: 10},
		{off: size - 1, size: 1, wantN: 1},
		{off: size, size: 10, wantN: 0},
		{off: size + 1000, size: 10, wantN: 0},
	}
	for _, mode := range []struct {
		name  string
		flags int
	}{{"page cache", os.O_RDONLY}, {"O_DIRECT", os.O_RDONLY | syscall.O_DIRECT}} {
		t.Run(mode.name, func(t *testing.T) {
			fh, err := os.OpenFile(path, mode.flags, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			for _, tt := range tests {
				buf := make([]byte, tt.size)
				n, err := fh.ReadAt(buf, int64(tt.off))
				if n < tt.size && err != io.EOF {
					t.Errorf("ReadAt(%d, %d) = %d, %v; want io.EOF after a short read", tt.off, tt.size, n, err)
				}
				if n == tt.size && err != nil {
					t.Errorf("ReadAt(%d, %d): %v", tt.off, tt.size, err)
				}
				var want []byte
				if tt.off < size {
					want = data[tt.off : tt.off+tt.wantN]
				}
				if n != tt.wantN || !bytes.Equal(buf[:n], want) {
					t.Errorf("ReadAt(%d, %d) read %d bytes, want %d bytes of the object", tt.off, tt.size, n, tt.wantN)
				}
			}
		})
	}

	before := f.Calls("GetObject")
	for _, flags := range []int{os.O_RDONLY, os.O_RDONLY | syscall.O_DIRECT} {
		fh, err := os.OpenFile(filepath.Join(mnt, "d/empty"), flags, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(fh)
		fh.Close()
		if err != nil || len(got) != 0 {
			t.Errorf("reading the empty file = %q, %v", got, err)
		}
	}
	if n := f.Calls("GetObject") - before; n != 0 {
		t.Errorf("reading an empty file made %d GET calls, want 0", n)
	}
}

// TestMountChangedObject replaces an object while a handle is open: reads
// on that handle fail with ESTALE instead of mixing versions, both with
// O_DIRECT and through the page cache (8 MiB object, read far beyond the
// kernel's read-ahead); once the metadata is stale, a new open sees the new
// size and bytes even though the kernel held pages of the old version (the
// page-cache case keeps the size, so only the ETag tells the versions apart).
func TestMountChangedObject(t *testing.T) {
	for _, mode := range []struct {
		name  string
		flags int
		size  int
		grow  int
	}{{"O_DIRECT", os.O_RDONLY | syscall.O_DIRECT, 256 << 10, 100}, {"page cache", os.O_RDONLY, 8 << 20, 0}} {
		t.Run(mode.name, func(t *testing.T) {
			size, newSize := mode.size, mode.size+mode.grow
			oldData := randomBytes(size, 4)
			newData := randomBytes(newSize, 5)
			f := store.NewFake()
			f.Seed("bkt", "obj", oldData)
			cfg, clock, _ := testConfig(f, "bkt")
			mnt := testMount(t, cfg)
			path := filepath.Join(mnt, "obj")

			fh, err := os.OpenFile(path, mode.flags, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			buf := make([]byte, 4096)
			if _, err := fh.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, oldData[:4096]) {
				t.Fatalf("first read: %v (or wrong bytes)", err)
			}

			f.Seed("bkt", "obj", newData)
			_, err = fh.ReadAt(buf, int64(size-8192))
			if !errors.Is(err, syscall.ESTALE) {
				t.Errorf("read after the change: %v, want ESTALE", err)
			}
			fh.Close()

			clock.Advance(cfg.MetadataTTL)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(newSize) {
				t.Errorf("stat after the metadata expired: size %d, want %d", fi.Size(), newSize)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, newData) {
				t.Errorf("a new open read %d bytes that are not the new version", len(got))
			}
		})
	}
}

// getRecorder is a store whose GETs report how they ended.
type getRecorder struct {
	*store.Fake
	ended chan error
}

func (g *getRecorder) Get(ctx context.Context, in store.GetInput) (*store.GetOutput, error) {
	out, err := g.Fake.Get(ctx, in)
	select {
	case g.ended <- err:
	default:
	}
	return out, err
}

// TestMountInterruptedRead kills a process blocked in a read of a slow
// object: the kernel interrupts the request and the GET behind it is
// cancelled instead of running on.
func TestMountInterruptedRead(t *testing.T) {
	f := store.NewFake()
	f.Seed("bkt", "slow", randomBytes(100_000, 6))
	rec := &getRecorder{Fake: f, ended: make(chan error, 10)}
	cfg, _, _ := testConfig(rec, "bkt")
	mnt := testMount(t, cfg)
	path := filepath.Join(mnt, "slow")
	if _, err := os.Lstat(path); err != nil { // list now, before the store slows down
		t.Fatal(err)
	}
	f.SetLatency(30 * time.Second)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReader$")
	cmd.Env = append(os.Environ(), "BUCKETFS_HELPER_READ="+path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	deadline := time.Now().Add(20 * time.Second)
	for f.Calls("GetObject") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the reader never sent a GET; its output: %s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-rec.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the GET ended with %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the GET was not cancelled when its reader was killed")
	}
}

// TestHelperReader is not a test: TestMountInterruptedRead runs it in a
// child process to block in an O_DIRECT read of the file it names.
func TestHelperReader(t *testing.T) {
	path := os.Getenv("BUCKETFS_HELPER_READ")
	if path == "" {
		t.Skip("helper process for TestMountInterruptedRead")
	}
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	_, err = fh.ReadAt(make([]byte, 4096), 0)
	fmt.Println("read returned:", err)
	os.Exit(3)
}
