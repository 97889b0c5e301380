package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Changes to directories through the mount: mkdir, rmdir, rm -r, mv, and
// writes in prefix and all-buckets mounts.

// TestWriteDirectories: mkdir makes a directory that persists, empty,
// across a remount; rmdir of a non-empty directory fails with ENOTEMPTY;
// `rm -r` removes a tree; `mv` renames a file over an existing one and
// renames a directory; a directory with more keys than --rename-dir-limit
// still moves with `mv` (rename fails with EXDEV and mv copies), with the
// right content.
func TestWriteDirectories(t *testing.T) {
	objects := map[string][]byte{
		"full/a.txt": []byte("a"), "full/sub/b.txt": []byte("b"),
		"tree/1.txt": []byte("1"), "tree/x/2.txt": []byte("2"), "tree/x/y/3.txt": []byte("3"),
		"src.txt": []byte("source"), "dst.txt": []byte("target"),
	}
	for i := range 8 {
		objects[fmt.Sprintf("big/%d.bin", i)] = randomBytes(uint64(200+i), 1000+i)
	}
	b := newBucket(t, objects)
	px := startProxy(t)
	m := mountVia(t, px, t.TempDir(), b, "--rename-dir-limit", "5")
	p := func(name string) string { return filepath.Join(m.Dir, name) }

	if err := os.Mkdir(p("empty"), 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if got := s3Keys(t, b, "empty"); !slices.Equal(got, []string{"empty/"}) {
		t.Errorf("keys after mkdir: %v, want the marker empty/", got)
	}
	if err := os.Remove(p("full")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir of a non-empty directory: %v, want ENOTEMPTY", err)
	}
	sh(t, m.Dir, "rm -r tree")
	if keys := s3Keys(t, b, "tree"); len(keys) != 0 {
		t.Errorf("keys left after rm -r: %v", keys)
	}
	if _, err := os.Stat(p("tree")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after rm -r: %v", err)
	}

	sh(t, m.Dir, "mv src.txt dst.txt")
	checkFile(t, m, b, "dst.txt", []byte("source"))
	if !s3Missing(t, b, "src.txt") {
		t.Error("src.txt still in the store after mv")
	}
	sh(t, m.Dir, "mv full moved")
	checkFile(t, m, b, "moved/a.txt", []byte("a"))
	checkFile(t, m, b, "moved/sub/b.txt", []byte("b"))
	if keys := s3Keys(t, b, "full"); len(keys) != 0 {
		t.Errorf("keys left under full/ after mv: %v", keys)
	}

	sh(t, m.Dir, "mv big big2")
	waitFor(t, 5*time.Second, "the log line saying rename fell back to EXDEV", func() bool {
		return strings.Contains(m.Log(), "--rename-dir-limit")
	})
	for i := range 8 {
		checkFile(t, m, b, fmt.Sprintf("big2/%d.bin", i), objects[fmt.Sprintf("big/%d.bin", i)])
	}
	if keys := s3Keys(t, b, "big/"); len(keys) != 0 {
		t.Errorf("keys left under big/ after mv: %v", keys)
	}
	if got := readDirNames(t, m.Dir); !slices.Equal(got, []string{"big2", "dst.txt", "empty", "moved"}) {
		t.Errorf("root after the changes: %v", got)
	}
	if err := m.Stop(); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	m.ended = true

	m2 := mountVia(t, px, t.TempDir(), b)
	if got := readDirNames(t, m2.Dir); !slices.Equal(got, []string{"big2", "dst.txt", "empty", "moved"}) {
		t.Errorf("root after a remount: %v", got)
	}
	if fi, err := os.Stat(filepath.Join(m2.Dir, "empty")); err != nil || !fi.IsDir() {
		t.Fatalf("the empty directory after a remount: %v %v", fi, err)
	}
	if got := readDirNames(t, filepath.Join(m2.Dir, "empty")); len(got) != 0 {
		t.Errorf("empty/ after a remount lists %v", got)
	}
	if err := os.Remove(filepath.Join(m2.Dir, "empty")); err != nil {
		t.Errorf("rmdir of the empty directory: %v", err)
	}
	if keys := s3Keys(t, b, "empty"); len(keys) != 0 {
		t.Errorf("keys left after rmdir: %v", keys)
	}
}

// TestWritePrefixAndAllBuckets: in a mount of BUCKET/PREFIX, files and
// directories made and renamed land under PREFIX in the store. In a mount
// of every bucket, files are written inside a bucket's directory, and the
// root, which lists buckets, takes no files or directories (EROFS).
func TestWritePrefixAndAllBuckets(t *testing.T) {
	b := newBucket(t, map[string][]byte{"sub/a.txt": []byte("a"), "top.txt": []byte("t")})
	px := startProxy(t)
	m := mountVia(t, px, t.TempDir(), b+"/sub")
	p := func(name string) string { return filepath.Join(m.Dir, name) }
	if err := os.WriteFile(p("f.txt"), []byte("f"), 0o644); err != nil {
		t.Fatalf("write in a prefix mount: %v", err)
	}
	if err := os.Mkdir(p("d"), 0o755); err != nil {
		t.Fatalf("mkdir in a prefix mount: %v", err)
	}
	if err := os.Rename(p("f.txt"), p("d/g.txt")); err != nil {
		t.Fatalf("rename in a prefix mount: %v", err)
	}
	if got := s3Keys(t, b, ""); !slices.Equal(got, []string{"sub/a.txt", "sub/d/", "sub/d/g.txt", "top.txt"}) {
		t.Errorf("keys after changes in a prefix mount: %v", got)
	}
	if got, err := os.ReadFile(p("d/g.txt")); err != nil || string(got) != "f" {
		t.Errorf("d/g.txt through the mount: %q %v", got, err)
	}
	if got, err := s3Get(t, b, "sub/d/g.txt"); err != nil || string(got) != "f" {
		t.Errorf("sub/d/g.txt through the S3 API: %q %v", got, err)
	}

	all := mountVia(t, px, t.TempDir(), "")
	if err := os.WriteFile(filepath.Join(all.Dir, b, "in-bucket.txt"), []byte("ib"), 0o644); err != nil {
		t.Fatalf("write in a bucket's directory: %v", err)
	}
	if got, err := s3Get(t, b, "in-bucket.txt"); err != nil || string(got) != "ib" {
		t.Errorf("in-bucket.txt through the S3 API: %q %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(all.Dir, "root.txt"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create at the root of buckets: %v, want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(all.Dir, fmt.Sprintf("it-new-%d", time.Now().UnixNano())), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir at the root of buckets: %v, want EROFS", err)
	}
}
