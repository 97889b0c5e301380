package fs

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// testFile returns the node of bucket b's key in cfg's mount, with the
// attributes a listing would have given it at the current fake time.
func testFile(t *testing.T, cfg Config, f *store.Fake, key string) *fileNode {
	t.Helper()
	root := testDir(t, cfg)
	n := &fileNode{base: base{m: root.m}, bucket: cfg.Bucket, key: key, inoKey: key}
	o, err := f.Head(context.Background(), cfg.Bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	n.setMeta(*o, cfg.Now(), true)
	return n
}

// openHandle opens n read-only and fails the test on error.
func openHandle(t *testing.T, n *fileNode) (*handle, uint32) {
	t.Helper()
	fh, flags, errno := n.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatalf("Open: %v", errno)
	}
	t.Cleanup(func() { fh.(*handle).Release(context.Background()) })
	return fh.(*handle), flags
}

// read calls h.Read and returns the bytes of its result.
func read(t *testing.T, h *handle, off int64, size int) ([]byte, syscall.Errno) {
	t.Helper()
	res, errno := h.Read(context.Background(), make([]byte, size), off)
	if errno != 0 {
		return nil, errno
	}
	data, st := res.Bytes(make([]byte, size))
	if st != fuse.OK {
		t.Fatalf("ReadResult.Bytes: %v", st)
	}
	return data, 0
}

// TestOpenReadOnly checks that opens for writing or truncation fail with
// EROFS before any request, and read-only opens succeed.
func TestOpenReadOnly(t *testing.T) {
	tests := []struct {
		name  string
		flags uint32
		want  syscall.Errno
	}{
		{name: "read only", flags: syscall.O_RDONLY, want: 0},
		{name: "read only, direct", flags: syscall.O_RDONLY | syscall.O_DIRECT | syscall.O_LARGEFILE, want: 0},
		{name: "write only", flags: syscall.O_WRONLY, want: syscall.EROFS},
		{name: "read write", flags: syscall.O_RDWR, want: syscall.EROFS},
		{name: "append", flags: syscall.O_WRONLY | syscall.O_APPEND, want: syscall.EROFS},
		{name: "truncate", flags: syscall.O_RDONLY | syscall.O_TRUNC, want: syscall.EROFS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := store.NewFake()
			f.Seed("b", "k", []byte("data"))
			cfg, clock, _ := testConfig(f, "b")
			n := testFile(t, cfg, f, "k")
			clock.Advance(time.Hour) // stale: a successful open HEADs
			before := callsOf(f)
			fh, _, errno := n.Open(context.Background(), tt.flags)
			if errno != tt.want {
				t.Fatalf("Open(%#x) = %v, want %v", tt.flags, errno, tt.want)
			}
			if fh != nil {
				fh.(*handle).Release(context.Background())
			}
			wantHeads := int64(1)
			if tt.want != 0 {
				wantHeads = 0
			}
			if got := callsOf(f).sub(before).head; got != wantHeads {
				t.Errorf("%d HEAD calls, want %d", got, wantHeads)
			}
		})
	}
}

// TestOpenMetadata checks what Open costs and keeps: fresh attributes cost
// no request; stale ones cost a HEAD; a missing object fails with ENOENT;
// and the kernel may keep its cached pages only when the object's ETag is
// the one of the previous open.
func TestOpenMetadata(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "k", []byte("version one"))
	cfg, clock, _ := testConfig(f, "b")
	n := testFile(t, cfg, f, "k")
	before := callsOf(f)

	h1, flags := openHandle(t, n)
	if flags&fuse.FOPEN_KEEP_CACHE != 0 {
		t.Error("first open keeps the kernel's cache")
	}
	h2, flags := openHandle(t, n)
	if flags&fuse.FOPEN_KEEP_CACHE == 0 {
		t.Error("second open of the same version drops the kernel's cache")
	}
	if got := callsOf(f).sub(before); got != (calls{}) {
		t.Errorf("opens with fresh attributes made requests: %+v", got)
	}
	v1, _, _ := h1.current()
	if v2, _, _ := h2.current(); v1 != v2 {
		t.Errorf("handles of one version pinned %+v and %+v", v1, v2)
	}

	f.Seed("b", "k", []byte("version two, longer"))
	clock.Advance(cfg.MetadataTTL)
	h3, flags := openHandle(t, n)
	if flags&fuse.FOPEN_KEEP_CACHE != 0 {
		t.Error("open of a changed object keeps the kernel's cache")
	}
	if got := callsOf(f).sub(before); got != (calls{head: 1}) {
		t.Errorf("open with stale attributes made %+v, want one HEAD", got)
	}
	v3, _, _ := h3.current()
	if v3.Size != 19 || v3.ETag == v1.ETag {
		t.Errorf("open after the change pinned %+v, want the new version of 19 bytes", v3)
	}
	var attr fuse.AttrOut
	if errno := n.Getattr(context.Background(), nil, &attr); errno != 0 || attr.Size != 19 {
		t.Errorf("Getattr after the open: size %d errno %v, want 19", attr.Size, errno)
	}

	f.Remove("b", "k")
	clock.Advance(cfg.MetadataTTL)
	if _, _, errno := n.Open(context.Background(), syscall.O_RDONLY); errno != syscall.ENOENT {
		t.Errorf("open of a deleted object with stale attributes: %v, want ENOENT", errno)
	}
}

// TestFileGetattr checks file attributes: size, blocks, modes, owner and
// mtime from the object; a HEAD only once they are older than MetadataTTL.
func TestFileGetattr(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "dir/k", make([]byte, 1000))
	cfg, clock, _ := testConfig(f, "b")
	cfg.UID, cfg.GID, cfg.FileMode = 1234, 5678, 0o640
	n := testFile(t, cfg, f, "dir/k")
	o, _ := f.Head(context.Background(), "b", "dir/k")
	before := callsOf(f)

	var out fuse.AttrOut
	if errno := n.Getattr(context.Background(), nil, &out); errno != 0 {
		t.Fatal(errno)
	}
	a := out.Attr
	if a.Size != 1000 || a.Blocks != 2 || a.Mode != syscall.S_IFREG|0o640 || a.Uid != 1234 || a.Gid != 5678 ||
		a.Nlink != 1 || a.Ino != n.StableAttr().Ino || a.Mtime != uint64(o.LastModified.Unix()) || a.Blksize != blockSizeHint {
		t.Errorf("attributes %+v", a)
	}
	clock.Advance(cfg.MetadataTTL - time.Nanosecond)
	if errno := n.Getattr(context.Background(), nil, &out); errno != 0 {
		t.Fatal(errno)
	}
	if got := callsOf(f).sub(before); got != (calls{}) {
		t.Errorf("Getattr with fresh attributes made requests: %+v", got)
	}
	f.Seed("b", "dir/k", make([]byte, 3))
	clock.Advance(time.Nanosecond)
	if errno := n.Getattr(context.Background(), nil, &out); errno != 0 || out.Size != 3 {
		t.Errorf("Getattr after expiry: size %d errno %v, want 3", out.Size, errno)
	}
	if got := callsOf(f).sub(before); got != (calls{head: 1}) {
		t.Errorf("Getattr with stale attributes made %+v, want one HEAD", got)
	}
	f.Remove("b", "dir/k")
	clock.Advance(cfg.MetadataTTL)
	if errno := n.Getattr(context.Background(), nil, &out); errno != syscall.ENOENT {
		t.Errorf("Getattr of a deleted object: %v, want ENOENT", errno)
	}
}

// TestHandleRead reads through a handle at many offsets, including at and
// past the end of the object, where it returns nothing and sends no GET.
func TestHandleRead(t *testing.T) {
	data := randomBytes(10000, 2)
	f := store.NewFake()
	f.Seed("b", "k", data)
	cfg, _, _ := testConfig(f, "b")
	h, _ := openHandle(t, testFile(t, cfg, f, "k"))
	tests := []struct {
		off, size int
		wantN     int
		wantGets  int64
	}{
		{off: 0, size: 4096, wantN: 4096, wantGets: 1},
		{off: 3, size: 5, wantN: 5, wantGets: 1},
		{off: 8192, size: 4096, wantN: 1808, wantGets: 1},
		{off: 9999, size: 4096, wantN: 1, wantGets: 1},
		{off: 10000, size: 4096, wantN: 0, wantGets: 0},
		{off: 1 << 30, size: 4096, wantN: 0, wantGets: 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d+%d", tt.off, tt.size), func(t *testing.T) {
			before := f.Calls("GetObject")
			got, errno := read(t, h, int64(tt.off), tt.size)
			if errno != 0 {
				t.Fatalf("Read: %v", errno)
			}
			var want []byte
			if tt.off < len(data) {
				want = data[tt.off : tt.off+tt.wantN]
			}
			if len(got) != tt.wantN || !bytes.Equal(got, want) {
				t.Errorf("read %d bytes, want %d bytes of the object at %d", len(got), tt.wantN, tt.off)
			}
			if n := f.Calls("GetObject") - before; n != tt.wantGets {
				t.Errorf("%d GET calls, want %d", n, tt.wantGets)
			}
		})
	}
}

// TestHandleReadEmpty checks that reading an empty object returns nothing
// without a GET.
func TestHandleReadEmpty(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "empty", nil)
	cfg, _, _ := testConfig(f, "b")
	h, _ := openHandle(t, testFile(t, cfg, f, "empty"))
	got, errno := read(t, h, 0, 4096)
	if errno != 0 || len(got) != 0 {
		t.Errorf("Read = %q, %v; want nothing", got, errno)
	}
	if n := f.Calls("GetObject"); n != 0 {
		t.Errorf("%d GET calls for an empty object, want 0", n)
	}
}

// TestHandleStale checks that once a handle has returned bytes of one
// version, reads after the object changed fail with ESTALE (and say so in
// the log) instead of mixing versions, and keep failing.
func TestHandleStale(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "k", []byte("old old old old"))
	cfg, _, hook := testConfig(f, "b")
	h, _ := openHandle(t, testFile(t, cfg, f, "k"))
	if got, errno := read(t, h, 0, 3); errno != 0 || string(got) != "old" {
		t.Fatalf("first read = %q, %v", got, errno)
	}
	f.Seed("b", "k", []byte("new new new new"))
	for _, off := range []int64{4, 0} {
		if got, errno := read(t, h, off, 3); errno != syscall.ESTALE {
			t.Errorf("read at %d after the change = %q, %v; want ESTALE", off, got, errno)
		}
	}
	if len(logged(hook, "object changed while open")) == 0 {
		t.Error("the stale handle was not logged")
	}
}

// TestHandleRepinsBeforeFirstRead checks that a handle opened with cached
// attributes of an object that has changed since moves to the new version
// on its first read, since it has served nothing of the old one.
func TestHandleRepinsBeforeFirstRead(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "k", []byte("old contents"))
	cfg, _, _ := testConfig(f, "b")
	n := testFile(t, cfg, f, "k")
	h, _ := openHandle(t, n) // pins the old ETag from the cached attributes
	f.Seed("b", "k", []byte("the new contents"))
	before := callsOf(f)
	got, errno := read(t, h, 4, 3)
	if errno != 0 || string(got) != "new" {
		t.Fatalf("first read = %q, %v; want %q", got, errno, "new")
	}
	if c := callsOf(f).sub(before); c != (calls{head: 1, get: 2}) {
		t.Errorf("re-pinning made %+v, want one failed GET, one HEAD and one GET", c)
	}
	if v, _, _ := h.current(); v.Size != 16 {
		t.Errorf("handle pinned size %d, want 16", v.Size)
	}
	// The node's attributes follow the new version too.
	var out fuse.AttrOut
	n.fillAttr(&out.Attr)
	if out.Size != 16 {
		t.Errorf("node size %d after re-pinning, want 16", out.Size)
	}

	// If the object is gone by the first read, the read says so.
	h2, _ := openHandle(t, n)
	f.Remove("b", "k")
	if _, errno := read(t, h2, 0, 3); errno != syscall.ENOENT {
		t.Errorf("first read of a deleted object = %v, want ENOENT", errno)
	}
}

// countingReader is an ObjectReader that counts Close calls.
type countingReader struct {
	ObjectReader
	closed *atomic.Int32
}

func (r countingReader) Close() { r.closed.Add(1); r.ObjectReader.Close() }

// TestHandleRelease checks that releasing a handle closes its reader once,
// that re-pinning closes the replaced reader, and that a released handle
// reads nothing.
func TestHandleRelease(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "k", []byte("contents"))
	cfg, _, _ := testConfig(f, "b")
	var closed atomic.Int32
	cfg.NewReader = func(v ObjectVersion) ObjectReader {
		return countingReader{ObjectReader: NewDirectReader(f, v), closed: &closed}
	}
	n := testFile(t, cfg, f, "k")
	fh, _, errno := n.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	h := fh.(*handle)
	f.Seed("b", "k", []byte("contents 2"))
	if _, errno := read(t, h, 0, 4); errno != 0 {
		t.Fatal(errno)
	}
	if got := closed.Load(); got != 1 {
		t.Errorf("re-pinning closed %d readers, want 1", got)
	}
	h.Release(context.Background())
	h.Release(context.Background())
	if got := closed.Load(); got != 2 {
		t.Errorf("%d readers closed after release, want 2", got)
	}
	if _, errno := read(t, h, 0, 4); errno != syscall.EBADF {
		t.Errorf("read after release: %v, want EBADF", errno)
	}
}
