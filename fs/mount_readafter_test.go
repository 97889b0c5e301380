package fs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/bucketfs/bucketfs/store"
)

// TestMountReadAfterWriteOnOlderHandle reads a file through a descriptor
// opened (and read) before another descriptor rewrote part of it through
// the mount and closed: the older descriptor must read the file as it is
// now, not the version it first read (from the read path's cache) nor
// fail because that version is gone from the store.
func TestMountReadAfterWriteOnOlderHandle(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	old := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	f.Seed("b", "v.bin", old)
	dir := writeMount(t, f, nil)
	p := filepath.Join(dir, "v.bin")
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, len(old))
	if _, err := r.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, old) {
		t.Fatalf("first read: %v", err)
	}
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("CHANGED"), 10); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(old)
	copy(want[10:], "CHANGED")
	if got := stored(t, f, "v.bin"); !bytes.Equal(got, want) {
		t.Fatal("the store does not hold the write")
	}
	got := make([]byte, 100)
	if _, err := r.ReadAt(got, 0); err != nil {
		t.Fatalf("read on the older descriptor after the write: %v", err)
	}
	if !bytes.Equal(got, want[:100]) {
		t.Fatalf("the older descriptor reads %q, want %q", got[:20], want[:20])
	}
}
