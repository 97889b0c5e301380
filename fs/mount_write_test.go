package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
)

// writeMount mounts bucket "b" of f read-write, as the daemon does.
func writeMount(t *testing.T, f *store.Fake, tweak func(*Config)) string {
	t.Helper()
	w, err := write.New(write.Options{Store: f, Dir: t.TempDir(), PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	cfg := Config{Store: f, Bucket: "b", Writer: w, MetadataTTL: time.Minute, NegativeTTL: time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	return realMount(t, cfg)
}

// stored returns the bytes of key in the fake, failing the test if absent.
func stored(t *testing.T, f *store.Fake, key string) []byte {
	t.Helper()
	out, err := f.Get(context.Background(), store.GetInput{Bucket: "b", Key: key, Length: -1})
	if err != nil {
		t.Fatalf("object %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMountWriteBasics: a new file is stored when closed, appends and
// truncates land, and the tree shows each change at once.
func TestMountWriteBasics(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	dir := writeMount(t, f, nil)
	p := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, f, "a.txt"); string(got) != "hello" {
		t.Fatalf("stored %q", got)
	}
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write([]byte(" world")); err != nil {
		t.Fatal(err)
	}
	// Read your writes while the file is open.
	if got, err := os.ReadFile(p); err != nil || string(got) != "hello world" {
		t.Fatalf("read while open: %q, %v", got, err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != 11 {
		t.Fatalf("stat while open: %v, %v", st, err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, f, "a.txt"); string(got) != "hello world" {
		t.Fatalf("stored %q after append", got)
	}
	if err := os.Truncate(p, 3); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, f, "a.txt"); string(got) != "hel" {
		t.Fatalf("stored %q after truncate", got)
	}
	if err := os.Truncate(p, 6); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, f, "a.txt"); !bytes.Equal(got, []byte("hel\x00\x00\x00")) {
		t.Fatalf("stored %q after growing", got)
	}
	names, err := os.ReadDir(dir)
	if err != nil || len(names) != 1 || names[0].Name() != "a.txt" {
		t.Fatalf("listing %v, %v", names, err)
	}
	// Rename over nothing, then unlink.
	if err := os.Rename(p, filepath.Join(dir, "b.txt")); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, f, "b.txt"); !bytes.Equal(got, []byte("hel\x00\x00\x00")) {
		t.Fatalf("renamed: %q", got)
	}
	if _, err := f.Head(context.Background(), "b", "a.txt"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old name after rename: %v", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat old name: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "b.txt")); err != nil || len(got) != 6 {
		t.Fatalf("read renamed: %q %v", got, err)
	}
	if err := os.Remove(filepath.Join(dir, "b.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Head(context.Background(), "b", "b.txt"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after unlink: %v", err)
	}
}

// TestMountWriteDirs: mkdir makes a marker, rmdir refuses a non-empty
// directory, symlinks are refused.
func TestMountWriteDirs(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	dir := writeMount(t, f, nil)
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Head(context.Background(), "b", "d/"); err != nil {
		t.Fatalf("marker: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(d); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir non-empty: %v", err)
	}
	if err := os.Rename(d, filepath.Join(dir, "e")); err != nil {
		t.Fatalf("rename dir: %v", err)
	}
	if got := stored(t, f, "e/x"); string(got) != "x" {
		t.Fatalf("moved file: %q", got)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "e", "x")); err != nil || string(got) != "x" {
		t.Fatalf("read moved file: %q %v", got, err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "e")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("x", filepath.Join(dir, "l")); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("symlink: %v", err)
	}
	page, err := f.List(context.Background(), store.ListInput{Bucket: "b"})
	if err != nil || len(page.Objects) != 0 {
		t.Fatalf("left in the bucket: %+v %v", page, err)
	}
}

// TestMountWriteFailure: close() fails with EIO when the upload fails,
// and nothing is left in the bucket.
func TestMountWriteFailure(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	dir := writeMount(t, f, nil)
	f.SetFailure(func(op, bucket, key string) error {
		if op == "PutObject" || op == "UploadPart" || op == "CompleteMultipartUpload" {
			return &store.Error{Op: op, Bucket: bucket, Key: key, Status: 503, Kind: store.ErrThrottled}
		}
		return nil
	})
	fh, err := os.Create(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write(make([]byte, 12<<20)); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close: %v, want EIO", err)
	}
	if n := f.Uploads("b"); n != 0 {
		t.Fatalf("%d multipart uploads left", n)
	}
	if _, err := f.Head(context.Background(), "b", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("object after failed close: %v", err)
	}
}

// TestMountWriteExclusive: O_EXCL of a name another machine created
// meanwhile fails at close with EEXIST.
func TestMountWriteExclusive(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	dir := writeMount(t, f, nil)
	fh, err := os.OpenFile(filepath.Join(dir, "x"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Seed("b", "x", []byte("theirs"))
	fh.Write([]byte("mine"))
	if err := fh.Close(); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("close: %v, want EEXIST", err)
	}
	if got := stored(t, f, "x"); string(got) != "theirs" {
		t.Fatalf("stored %q", got)
	}
}

// TestMountReadOnlyFlag: with ReadOnly every change is EROFS.
func TestMountReadOnlyFlag(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "x", []byte("x"))
	dir := writeMount(t, f, func(c *Config) { c.ReadOnly = true })
	if err := os.WriteFile(filepath.Join(dir, "y"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("create: %v", err)
	}
	if _, err := os.OpenFile(filepath.Join(dir, "x"), os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("open for write: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("mkdir: %v", err)
	}
}

// TestMountWriteMetadata: utimes and chmod are stored in the object's
// metadata (rclone's names) by a server-side copy, not an upload.
func TestMountWriteMetadata(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	dir := writeMount(t, f, nil)
	p := filepath.Join(dir, "x")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	puts := f.Calls("PutObject")
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if f.Calls("PutObject") != puts {
		t.Fatalf("metadata change uploaded the file")
	}
	h, err := f.Head(context.Background(), "b", "x")
	if err != nil {
		t.Fatal(err)
	}
	if h.Metadata["mtime"] != "981173106.000000007" || h.Metadata["mode"] != "100600" {
		t.Fatalf("metadata %v", h.Metadata)
	}
	st, err := os.Stat(p)
	if err != nil || !st.ModTime().Equal(old) || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat %v %v", st, err)
	}
}

// TestMountWriteTouchesMtime: changing a file's bytes stores the time of
// the change as its mtime, unless a later utimes sets another.
func TestMountWriteTouchesMtime(t *testing.T) {
	f := store.NewFake()
	f.SeedObject("b", "x", []byte("old"), "", map[string]string{"mtime": "981173106.000000000"})
	dir := writeMount(t, f, nil)
	p := filepath.Join(dir, "x")
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	fh.Write([]byte("new"))
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := f.Head(context.Background(), "b", "x")
	if err != nil {
		t.Fatal(err)
	}
	if mt, ok := parseMtime(h.Metadata["mtime"]); !ok || mt.Before(before) {
		t.Fatalf("mtime after a write: %q", h.Metadata["mtime"])
	}
	// cp -p: utimes through the open file after the writes wins.
	fh, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write([]byte("!"))
	old := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	if h, _ = f.Head(context.Background(), "b", "x"); h.Metadata["mtime"] != formatMtime(old) {
		t.Fatalf("mtime after utimes: %q", h.Metadata["mtime"])
	}
	if got := stored(t, f, "x"); string(got) != "oldnew!" {
		t.Fatalf("stored %q", got)
	}
}

// TestMountWriteNewDirNoLookups: files copied into a directory the mount
// just made cost no HEAD or LIST each: the mount knows it is empty.
func TestMountWriteNewDirNoLookups(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	dir := writeMount(t, f, nil)
	d := filepath.Join(dir, "new")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	heads, lists := f.Calls("HeadObject"), f.Calls("ListObjectsV2")
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if h, l := f.Calls("HeadObject")-heads, f.Calls("ListObjectsV2")-lists; h != 0 || l != 0 {
		t.Errorf("20 new files cost %d HEAD and %d LIST", h, l)
	}
	names, err := os.ReadDir(d)
	if err != nil || len(names) != 20 {
		t.Fatalf("listing: %d names, %v", len(names), err)
	}
}

// TestMountRenameDirWithOpenFile: a directory holding a file open for
// writing cannot be renamed (EBUSY), written to since its last fsync or
// not: its handle would go on writing under the old name. Once the file
// is closed it can, at once: FUSE sends the handle's release after
// close(2) returned, and the rename waits for it (cp into a directory,
// then mv of it, 20 times).
func TestMountRenameDirWithOpenFile(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	dir := writeMount(t, f, nil)
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := os.OpenFile(filepath.Join(d, "x"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(d, filepath.Join(dir, "e")); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("rename of a directory with a file being written: %v, want EBUSY", err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(d, filepath.Join(dir, "e")); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("rename of a directory with a file open for writing, fsynced: %v, want EBUSY", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		from, to := filepath.Join(dir, fmt.Sprint("s", i)), filepath.Join(dir, fmt.Sprint("t", i))
		if err := os.MkdirAll(filepath.Join(from, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		body := []byte(fmt.Sprint("file ", i))
		if err := os.WriteFile(filepath.Join(from, "sub", "y"), body, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(from, to); err != nil {
			t.Fatalf("rename %d right after the close of a file under it: %v", i, err)
		}
		if got := stored(t, f, fmt.Sprintf("t%d/sub/y", i)); !bytes.Equal(got, body) {
			t.Fatalf("moved file %d: %q", i, got)
		}
	}
	if err := os.Rename(d, filepath.Join(dir, "e")); err != nil {
		t.Fatalf("rename after the close: %v", err)
	}
	if got := stored(t, f, "e/x"); string(got) != "first" {
		t.Fatalf("moved file: %q", got)
	}
}
