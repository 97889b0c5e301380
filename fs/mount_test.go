package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/moby/sys/mountinfo"
)

// These tests mount the tree in this process through the kernel (they need
// root and /dev/fuse, and skip otherwise) and check what programs see.

// readDirNames returns the names in dir, failing the test on error.
func readDirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func lstat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return &st
}

// TestMountReaddirStat lists a mounted bucket and stats its entries: names,
// types, sizes, permission bits, owner, modification times and inode
// numbers come from the listing and the configuration; directory markers
// do not show up as files.
func TestMountReaddirStat(t *testing.T) {
	f := store.NewFake()
	f.Seed("bkt", "top.txt", []byte("hello"))
	f.Seed("bkt", "dir/", nil)
	f.Seed("bkt", "dir/a", make([]byte, 1000))
	f.Seed("bkt", "dir/sub/b", []byte("b"))
	f.Seed("bkt", "empty", nil)
	f.Seed("bkt", "only-marker/", nil)
	cfg, clock, _ := testConfig(f, "bkt")
	cfg.UID, cfg.GID = 1234, 5678
	cfg.FileMode, cfg.DirMode = 0o640, 0o750
	mnt := testMount(t, cfg)

	if got, want := readDirNames(t, mnt), []string{"dir", "empty", "only-marker", "top.txt"}; !slices.Equal(got, want) {
		t.Errorf("root lists %q, want %q", got, want)
	}
	if got, want := readDirNames(t, filepath.Join(mnt, "dir")), []string{"a", "sub"}; !slices.Equal(got, want) {
		t.Errorf("dir lists %q, want %q", got, want)
	}
	if got := readDirNames(t, filepath.Join(mnt, "only-marker")); len(got) != 0 {
		t.Errorf("marker-only directory lists %q, want nothing", got)
	}

	checkIno := newInoChecker()
	start := clock.Now()
	tests := []struct {
		path string
		key  string // object key, "" for directories
		size int64
	}{
		{path: "top.txt", key: "top.txt", size: 5},
		{path: "empty", key: "empty", size: 0},
		{path: "dir/a", key: "dir/a", size: 1000},
		{path: "dir/sub/b", key: "dir/sub/b", size: 1},
		{path: "dir"},
		{path: "dir/sub"},
		{path: "only-marker"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			st := lstat(t, filepath.Join(mnt, tt.path))
			if st.Uid != 1234 || st.Gid != 5678 {
				t.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
			}
			if tt.key == "" {
				if st.Mode != syscall.S_IFDIR|0o750 || st.Nlink != 2 {
					t.Errorf("directory mode %o nlink %d, want %o and 2", st.Mode, st.Nlink, syscall.S_IFDIR|0o750)
				}
				if st.Mtim.Sec != start.Unix() {
					t.Errorf("directory mtime %d, want the mount time %d", st.Mtim.Sec, start.Unix())
				}
				checkIno(t, tt.path, st.Ino)
				return
			}
			o, err := f.Head(context.Background(), "bkt", tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode != syscall.S_IFREG|0o640 || st.Nlink != 1 {
				t.Errorf("file mode %o nlink %d, want %o and 1", st.Mode, st.Nlink, syscall.S_IFREG|0o640)
			}
			if st.Size != tt.size || st.Blocks != (tt.size+511)/512 {
				t.Errorf("size %d blocks %d, want %d and %d", st.Size, st.Blocks, tt.size, (tt.size+511)/512)
			}
			if st.Mtim.Sec != o.LastModified.Unix() || st.Ctim.Sec != o.LastModified.Unix() {
				t.Errorf("mtime %d ctime %d, want the object's %d", st.Mtim.Sec, st.Ctim.Sec, o.LastModified.Unix())
			}
			checkIno(t, tt.path, st.Ino)
		})
	}

	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Bsize != 4096 || sfs.Namelen != 255 || sfs.Bavail == 0 || sfs.Flags&0x1 == 0 /* ST_RDONLY */ {
		t.Errorf("statfs %+v, want 4 KiB blocks, 255-byte names, free space, read-only", sfs)
	}
	for _, name := range []string{"missing", "dir/missing", "dir/sub/missing", "only-marker/x"} {
		if _, err := os.Lstat(filepath.Join(mnt, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lstat %s: %v, want not exist", name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(mnt, "top.txt/x")); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("lstat below a file: %v, want ENOTDIR", err)
	}
}

// TestMountLsLong lists a large directory and stats every entry, as
// `ls -l` does: the whole thing costs one LIST per 1,000 entries and no
// HEAD and no GET, both with the real mount options (2,500 files; the
// kernel caches what READDIRPLUS returned) and with a kernel that caches
// nothing (1,200 files; every stat is a LOOKUP answered from the listing).
func TestMountLsLong(t *testing.T) {
	for _, tt := range []struct {
		name        string
		kernelCache bool
		files       int
		wantLists   int64
	}{
		{name: "real options", kernelCache: true, files: 2500, wantLists: 3},
		{name: "no kernel cache", kernelCache: false, files: 1200, wantLists: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := store.NewFake()
			for i := range tt.files {
				f.Seed("bkt", fmt.Sprintf("big/f%04d", i), make([]byte, i%10))
			}
			f.Seed("bkt", "big/d1/x", nil)
			f.Seed("bkt", "big/d2/", nil)
			cfg, _, _ := testConfig(f, "bkt")
			var mnt string
			if tt.kernelCache {
				mnt = realMount(t, cfg)
			} else {
				mnt = testMount(t, cfg)
			}
			dir := filepath.Join(mnt, "big")
			if _, err := os.Lstat(dir); err != nil { // the root's listing, not measured
				t.Fatal(err)
			}
			before := callsOf(f)

			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != tt.files+2 {
				t.Fatalf("listed %d entries, want %d", len(entries), tt.files+2)
			}
			for _, e := range entries {
				fi, err := os.Lstat(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Fatalf("lstat %s: %v", e.Name(), err)
				}
				var i int
				if _, err := fmt.Sscanf(e.Name(), "f%04d", &i); err == nil {
					if fi.Size() != int64(i%10) || !fi.Mode().IsRegular() {
						t.Fatalf("%s: size %d mode %v, want a file of %d bytes", e.Name(), fi.Size(), fi.Mode(), i%10)
					}
				} else if !fi.IsDir() {
					t.Fatalf("%s: mode %v, want a directory", e.Name(), fi.Mode())
				}
			}
			if got := callsOf(f).sub(before); got != (calls{list: tt.wantLists}) {
				t.Errorf("ls -l of %d entries made %+v, want %d LIST and nothing else", len(entries), got, tt.wantLists)
			}
		})
	}
}

// TestMountReadOnly checks that every kind of write through the real mount
// options fails with EROFS.
func TestMountReadOnly(t *testing.T) {
	f := store.NewFake()
	f.Seed("bkt", "file", []byte("data"))
	f.Seed("bkt", "dir/x", []byte("x"))
	cfg, _, _ := testConfig(f, "bkt")
	mnt := realMount(t, cfg)
	p := func(name string) string { return filepath.Join(mnt, name) }

	tests := []struct {
		name string
		op   func() error
	}{
		{"overwrite", func() error { return os.WriteFile(p("file"), []byte("new"), 0o644) }},
		{"open read-write", func() error {
			fh, err := os.OpenFile(p("file"), os.O_RDWR, 0)
			if err == nil {
				fh.Close()
			}
			return err
		}},
		{"append", func() error {
			fh, err := os.OpenFile(p("file"), os.O_WRONLY|os.O_APPEND, 0)
			if err == nil {
				fh.Close()
			}
			return err
		}},
		{"create", func() error {
			fh, err := os.Create(p("new"))
			if err == nil {
				fh.Close()
			}
			return err
		}},
		{"truncate", func() error { return os.Truncate(p("file"), 0) }},
		{"mkdir", func() error { return os.Mkdir(p("newdir"), 0o755) }},
		{"remove file", func() error { return os.Remove(p("file")) }},
		{"remove dir", func() error { return os.Remove(p("dir")) }},
		{"rename", func() error { return os.Rename(p("file"), p("file2")) }},
		{"symlink", func() error { return os.Symlink("file", p("link")) }},
		{"link", func() error { return os.Link(p("file"), p("hard")) }},
		{"chmod", func() error { return os.Chmod(p("file"), 0o600) }},
		{"chown", func() error { return os.Chown(p("file"), 1, 1) }},
		{"utimes", func() error { return os.Chtimes(p("file"), time.Now(), time.Now()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: %v, want EROFS", tt.name, err)
			}
		})
	}
	if got, err := os.ReadFile(p("file")); err != nil || string(got) != "data" {
		t.Errorf("file reads %q, %v after the attempts", got, err)
	}
}

// TestMountAllBuckets mounts without a bucket: the root lists every bucket
// as a directory, each bucket holds its objects, and a name that is not a
// bucket does not exist.
func TestMountAllBuckets(t *testing.T) {
	f := store.NewFake()
	f.Seed("alpha", "a.txt", []byte("in alpha"))
	f.Seed("beta", "sub/b.txt", []byte("in beta"))
	f.CreateBucket("gamma")
	cfg, _, _ := testConfig(f, "")
	mnt := testMount(t, cfg)

	if got, want := readDirNames(t, mnt), []string{"alpha", "beta", "gamma"}; !slices.Equal(got, want) {
		t.Errorf("root lists %q, want %q", got, want)
	}
	checkIno := newInoChecker()
	for _, b := range []string{"alpha", "beta", "gamma"} {
		st := lstat(t, filepath.Join(mnt, b))
		if st.Mode != syscall.S_IFDIR|0o755 {
			t.Errorf("%s: mode %o, want a directory", b, st.Mode)
		}
		checkIno(t, b, st.Ino)
	}
	if got, want := readDirNames(t, filepath.Join(mnt, "beta")), []string{"sub"}; !slices.Equal(got, want) {
		t.Errorf("beta lists %q, want %q", got, want)
	}
	if got := readDirNames(t, filepath.Join(mnt, "gamma")); len(got) != 0 {
		t.Errorf("empty bucket lists %q", got)
	}
	for path, want := range map[string]string{"alpha/a.txt": "in alpha", "beta/sub/b.txt": "in beta"} {
		if got, err := os.ReadFile(filepath.Join(mnt, path)); err != nil || string(got) != want {
			t.Errorf("%s reads %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(mnt, "delta")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lstat of a missing bucket: %v, want not exist", err)
	}
	if got := f.Calls("ListBuckets"); got != 1 {
		t.Errorf("%d ListBuckets calls, want 1 within the TTL", got)
	}
}

// TestMountPrefix mounts a prefix of a bucket: only that subtree shows, its
// marker is not a file, and keys beside it (including ones that merely
// start with the same letters) stay out of reach.
func TestMountPrefix(t *testing.T) {
	f := store.NewFake()
	f.Seed("bkt", "p/", nil)
	f.Seed("bkt", "p/a", []byte("inside"))
	f.Seed("bkt", "p/sub/b", []byte("deeper"))
	f.Seed("bkt", "pp/x", []byte("beside"))
	f.Seed("bkt", "q/c", []byte("outside"))
	f.Seed("bkt", "top", []byte("outside"))
	cfg, _, _ := testConfig(f, "bkt")
	cfg.Prefix = "p/"
	mnt := testMount(t, cfg)

	if got, want := readDirNames(t, mnt), []string{"a", "sub"}; !slices.Equal(got, want) {
		t.Errorf("root lists %q, want %q", got, want)
	}
	if got, want := readDirNames(t, filepath.Join(mnt, "sub")), []string{"b"}; !slices.Equal(got, want) {
		t.Errorf("sub lists %q, want %q", got, want)
	}
	for path, want := range map[string]string{"a": "inside", "sub/b": "deeper"} {
		if got, err := os.ReadFile(filepath.Join(mnt, path)); err != nil || string(got) != want {
			t.Errorf("%s reads %q, %v; want %q", path, got, err, want)
		}
	}
	for _, name := range []string{"top", "q", "pp", "x", "c", "p"} {
		if _, err := os.Lstat(filepath.Join(mnt, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lstat %s: %v, want not exist", name, err)
		}
	}
	if src := mountSource(t, mnt); src != "bucketfs:bkt/p/" {
		t.Errorf("mount source %q, want bucketfs:bkt/p/", src)
	}
}

// mountSource returns the source field of the mount at dir.
func mountSource(t *testing.T, dir string) string {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) == 0 {
		t.Fatalf("%s is not in the mount table", dir)
	}
	return mounts[0].Source
}

// TestMountRewinddir reads a directory of more entries than one READDIR
// reply holds, rewinds it and reads it again: both passes list every name
// once, in order.
func TestMountRewinddir(t *testing.T) {
	f := store.NewFake()
	var want []string
	for i := range 500 {
		name := fmt.Sprintf("file-%03d-%s", i, strings.Repeat("x", 40))
		f.Seed("bkt", name, []byte("x"))
		want = append(want, name)
	}
	f.Seed("bkt", "zz/inside", []byte("y"))
	want = append(want, "zz")
	cfg, _, _ := testConfig(f, "bkt")
	mnt := testMount(t, cfg)

	d, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, pass := range []string{"first", "after rewind"} {
		got, err := d.Readdirnames(-1)
		if err != nil {
			t.Fatalf("%s pass: %v", pass, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s pass lists %d names, want %d in order", pass, len(got), len(want))
		}
		if _, err := d.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
}
