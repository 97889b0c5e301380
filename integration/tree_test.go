package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"
)

// readDirNames lists a directory through the mount.
func readDirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// TestAllBucketsRoot mounts without a bucket: the root lists the account's
// buckets and each bucket directory shows its tree.
func TestAllBucketsRoot(t *testing.T) {
	b1 := newBucket(t, map[string][]byte{"one.txt": []byte("first")})
	b2 := newBucket(t, map[string][]byte{"sub/two.txt": []byte("second")})
	m := mount(t)
	names := readDirNames(t, m.Dir)
	for _, b := range []string{b1, b2} {
		if !slices.Contains(names, b) {
			t.Errorf("root listing %v lacks bucket %s", names, b)
		}
		fi, err := os.Stat(filepath.Join(m.Dir, b))
		if err != nil || !fi.IsDir() {
			t.Errorf("bucket %s is not a directory: %v", b, err)
		}
	}
	got, err := os.ReadFile(filepath.Join(m.Dir, b2, "sub", "two.txt"))
	if err != nil || string(got) != "second" {
		t.Errorf("read through all-buckets mount: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "no-such-bucket-here")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of a missing bucket: %v, want ENOENT", err)
	}
}

// TestSingleBucketAndPrefix mounts one bucket, then a prefix of it: the
// prefix mount shows only that subtree, rooted at the prefix.
func TestSingleBucketAndPrefix(t *testing.T) {
	b := newBucket(t, map[string][]byte{
		"top.txt":               []byte("top"),
		"2024/11/set-01.mp3":    []byte("set one"),
		"2024/11/set-01.txt":    []byte("tracklist"),
		"2024/12/set-02.mp3":    []byte("set two"),
		"2025/01/set-03.mp3":    []byte("set three"),
		"2024-notes/readme.txt": []byte("notes"),
	})
	whole := mount(t, b)
	if got := readDirNames(t, whole.Dir); !slices.Equal(got, []string{"2024", "2024-notes", "2025", "top.txt"}) {
		t.Errorf("bucket root = %v", got)
	}
	if got := readDirNames(t, filepath.Join(whole.Dir, "2024", "11")); !slices.Equal(got, []string{"set-01.mp3", "set-01.txt"}) {
		t.Errorf("2024/11 = %v", got)
	}

	for _, target := range []string{b + "/2024", b + "/2024/"} {
		sub := mount(t, target)
		if got := readDirNames(t, sub.Dir); !slices.Equal(got, []string{"11", "12"}) {
			t.Errorf("prefix mount %s root = %v, want [11 12]", target, got)
		}
		data, err := os.ReadFile(filepath.Join(sub.Dir, "12", "set-02.mp3"))
		if err != nil || string(data) != "set two" {
			t.Errorf("read in prefix mount: %q, %v", data, err)
		}
		if _, err := os.Stat(filepath.Join(sub.Dir, "top.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("prefix mount shows a key outside the prefix: %v", err)
		}
	}
}

// TestNestedDirsAndMarkers checks that zero-byte "dir/" marker objects are
// directories (never files), that prefixes without markers are directories,
// and that attributes come from the listing.
func TestNestedDirsAndMarkers(t *testing.T) {
	b := newBucket(t, map[string][]byte{
		"empty/":              nil, // marker of an empty directory
		"marked/":             nil,
		"marked/inside.txt":   []byte("x"),
		"a/b/c/d/deep.txt":    []byte("deep"),
		"zero.bin":            nil,
		"sizes/forty-two.bin": make([]byte, 42),
	})
	m := mount(t, b)
	if got := readDirNames(t, m.Dir); !slices.Equal(got, []string{"a", "empty", "marked", "sizes", "zero.bin"}) {
		t.Errorf("root = %v", got)
	}
	for _, d := range []string{"empty", "marked", "a", "a/b/c/d"} {
		fi, err := os.Stat(filepath.Join(m.Dir, d))
		if err != nil || !fi.IsDir() {
			t.Errorf("%s: want a directory, got %v %v", d, fi, err)
		}
	}
	if got := readDirNames(t, filepath.Join(m.Dir, "empty")); len(got) != 0 {
		t.Errorf("empty/ lists %v; the marker must not show as a file", got)
	}
	if got := readDirNames(t, filepath.Join(m.Dir, "marked")); !slices.Equal(got, []string{"inside.txt"}) {
		t.Errorf("marked/ = %v", got)
	}
	data, err := os.ReadFile(filepath.Join(m.Dir, "a/b/c/d/deep.txt"))
	if err != nil || string(data) != "deep" {
		t.Errorf("deep read: %q %v", data, err)
	}
	fi, err := os.Stat(filepath.Join(m.Dir, "sizes/forty-two.bin"))
	if err != nil || fi.Size() != 42 || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("forty-two.bin: %v %v", fi, err)
	}
	if time.Since(fi.ModTime()) > time.Hour || time.Since(fi.ModTime()) < -time.Minute {
		t.Errorf("mtime %v is not the object's LastModified", fi.ModTime())
	}
}

// TestLargeDirectory lists a directory of 2,500 objects: continuation
// tokens are followed, every entry shows once.
func TestLargeDirectory(t *testing.T) {
	objs := map[string][]byte{}
	for i := range 2500 {
		objs[fmt.Sprintf("big/track-%04d.txt", i)] = []byte{byte(i)}
	}
	b := newBucket(t, objs)
	m := mount(t, b)
	names := readDirNames(t, filepath.Join(m.Dir, "big"))
	if len(names) != 2500 {
		t.Fatalf("listed %d entries, want 2500", len(names))
	}
	for i, n := range names {
		if want := fmt.Sprintf("track-%04d.txt", i); n != want {
			t.Fatalf("entry %d = %s, want %s", i, n, want)
		}
	}
	// ls -l: READDIRPLUS gives every entry's attributes from the listing.
	ents, err := os.ReadDir(filepath.Join(m.Dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents[:50] {
		fi, err := e.Info()
		if err != nil || fi.Size() != 1 {
			t.Fatalf("%s: %v %v", e.Name(), fi, err)
		}
	}
}

// TestUnicodeAndOddKeys covers names with spaces and non-ASCII characters,
// and keys that cannot be file names: they are skipped, never resolved
// outside the mount.
func TestUnicodeAndOddKeys(t *testing.T) {
	objs := map[string][]byte{
		"DJ Ünïcødé/Set 01 – Läte Nïght 🎧.mp3": []byte("unicode"),
		"with space.txt": []byte("space"),
		"日本語/トラック.txt":   []byte("japanese"),
	}
	b := newBucket(t, objs)
	m := mount(t, b)
	for k, v := range objs {
		got, err := os.ReadFile(filepath.Join(m.Dir, k))
		if err != nil || string(got) != string(v) {
			t.Errorf("%s: %q %v", k, got, err)
		}
	}
	// Names no key can produce through the mount.
	for _, p := range []string{"..", "../..", "nonexistent/../../etc"} {
		abs := filepath.Join(m.Dir, p)
		if rel, err := filepath.Rel(m.Dir, abs); err == nil && !filepath.IsLocal(rel) {
			continue // the path itself leaves the mount; nothing of ours
		}
		if _, err := os.Stat(abs); err == nil {
			t.Errorf("%s resolved", p)
		}
	}
}

// TestZeroByteObject reads an empty object: size 0, empty content.
func TestZeroByteObject(t *testing.T) {
	b := newBucket(t, map[string][]byte{"empty.txt": nil})
	m := mount(t, b)
	p := filepath.Join(m.Dir, "empty.txt")
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != 0 || !fi.Mode().IsRegular() {
		t.Fatalf("stat: %v %v", fi, err)
	}
	data, err := os.ReadFile(p)
	if err != nil || len(data) != 0 {
		t.Errorf("read: %q %v", data, err)
	}
}

// TestReadOnly: on a --read-only mount every kind of change fails with
// EROFS.
func TestReadOnly(t *testing.T) {
	b := newBucket(t, map[string][]byte{"f.txt": []byte("x"), "d/g.txt": []byte("y")})
	m := mount(t, "--read-only", b)
	p := func(s string) string { return filepath.Join(m.Dir, s) }
	checks := map[string]error{
		"create": os.WriteFile(p("new.txt"), []byte("n"), 0o644),
		"write": func() error {
			f, err := os.OpenFile(p("f.txt"), os.O_WRONLY, 0)
			if err == nil {
				f.Close()
			}
			return err
		}(),
		"truncate": os.Truncate(p("f.txt"), 0),
		"remove":   os.Remove(p("f.txt")),
		"rename":   os.Rename(p("f.txt"), p("h.txt")),
		"mkdir":    os.Mkdir(p("nd"), 0o755),
		"rmdir":    os.Remove(p("d")),
		"chmod":    os.Chmod(p("f.txt"), 0o600),
	}
	for name, err := range checks {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
}

// TestStatfs runs df's system call on the mount.
func TestStatfs(t *testing.T) {
	b := newBucket(t, map[string][]byte{"f": []byte("x")})
	m := mount(t, b)
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.Dir, &st); err != nil {
		t.Fatalf("statfs: %v", err)
	}
	if st.Blocks == 0 || st.Bsize == 0 || st.Namelen != 255 {
		t.Errorf("statfs = %+v", st)
	}
}
