package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeClasses stands in for the user.s3.storage_class attribute of the
// files of a temporary directory.
type fakeClasses struct {
	mu      sync.Mutex        // protects the following
	class   map[string]string // GUARDED_BY(mu); by base name
	getErr  map[string]error  // GUARDED_BY(mu)
	setErr  map[string]error  // GUARDED_BY(mu)
	sets    []string          // GUARDED_BY(mu); base names set
	onSet   func()            // called outside mu by each set
	running int               // GUARDED_BY(mu); sets under way
	most    int               // GUARDED_BY(mu); most sets at once
}

func (f *fakeClasses) xattr() classXattr {
	return classXattr{
		get: func(path string) (string, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			name := filepath.Base(path)
			if err := f.getErr[name]; err != nil {
				return "", err
			}
			return f.class[name], nil
		},
		set: func(path, class string) error {
			name := filepath.Base(path)
			f.mu.Lock()
			f.running++
			f.most = max(f.most, f.running)
			f.sets = append(f.sets, name)
			err := f.setErr[name]
			f.mu.Unlock()
			if f.onSet != nil {
				f.onSet()
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.running--
			if err == nil {
				f.class[name] = class
			}
			return err
		},
	}
}

// tree makes dir/a.mp3, dir/sub/b.mp3, dir/sub/c.txt and dir/sub/d.mp3,
// plus a symlink that is not walked into, and returns dir.
func tree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"a.mp3", "sub/b.mp3", "sub/c.txt", "sub/d.mp3"} {
		path := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "a.mp3"), filepath.Join(dir, "sub", "link.mp3")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTierTree: a directory tree is walked; files in the class already
// are read and left alone, the others are set to the class; a file the
// caller may not change (EACCES) fails with "not yours to change", named
// in its own line, and makes the command fail after the summary.
func TestTierTree(t *testing.T) {
	dir := tree(t)
	f := &fakeClasses{
		class:  map[string]string{"a.mp3": "STANDARD", "b.mp3": "STANDARD", "c.txt": "GLACIER", "d.mp3": "STANDARD"},
		setErr: map[string]error{"d.mp3": syscall.EACCES},
	}
	files, err := collectFiles([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = tierFiles(&out, &bytes.Buffer{}, files, "GLACIER", 4, f.xattr())
	if err == nil || !strings.Contains(err.Error(), "1 of 4 files failed") {
		t.Errorf("error %v, want 1 of 4 failed", err)
	}
	want := "2 moved to GLACIER, 1 already there, 1 failed\n" +
		"failed: " + filepath.Join(dir, "sub", "d.mp3") + ": not yours to change\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sets) != 3 {
		t.Errorf("set %v, want a.mp3, b.mp3 and d.mp3 (c.txt is there already)", f.sets)
	}
	if f.class["a.mp3"] != "GLACIER" || f.class["b.mp3"] != "GLACIER" || f.class["d.mp3"] != "STANDARD" {
		t.Errorf("classes after: %v", f.class)
	}
}

// TestTierErrors: each kind of per-file failure is reported in words,
// failures of reading the class as well as of setting it; files that
// succeed still move.
func TestTierErrors(t *testing.T) {
	dir := tree(t)
	f := &fakeClasses{
		class:  map[string]string{"a.mp3": "GLACIER", "b.mp3": "STANDARD", "c.txt": "STANDARD", "d.mp3": "STANDARD"},
		getErr: map[string]error{"b.mp3": syscall.ENOENT},
		setErr: map[string]error{"a.mp3": syscall.EACCES, "c.txt": syscall.EROFS, "d.mp3": syscall.EIO},
	}
	files, _ := collectFiles([]string{dir})
	var out bytes.Buffer
	if err := tierFiles(&out, &bytes.Buffer{}, files, "STANDARD_IA", 2, f.xattr()); err == nil {
		t.Error("no error")
	}
	for _, want := range []string{
		"0 moved to STANDARD_IA, 0 already there, 4 failed\n",
		filepath.Join(dir, "a.mp3") + ": archived: restore it first (bucketfs restore)\n",
		filepath.Join(dir, "sub", "b.mp3") + ": gone\n",
		filepath.Join(dir, "sub", "c.txt") + ": the mount is read-only\n",
		filepath.Join(dir, "sub", "d.mp3") + ": input/output error\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestTierAllThere: nothing to move is a success, and nothing is set.
func TestTierAllThere(t *testing.T) {
	dir := tree(t)
	f := &fakeClasses{class: map[string]string{"a.mp3": "GLACIER_IR", "b.mp3": "GLACIER_IR", "c.txt": "GLACIER_IR", "d.mp3": "GLACIER_IR"}}
	files, _ := collectFiles([]string{filepath.Join(dir, "a.mp3"), filepath.Join(dir, "sub")})
	var out bytes.Buffer
	if err := tierFiles(&out, &bytes.Buffer{}, files, "GLACIER_IR", 4, f.xattr()); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "0 moved to GLACIER_IR, 4 already there, 0 failed\n" {
		t.Errorf("output %q", got)
	}
	if len(f.sets) != 0 {
		t.Errorf("set %v", f.sets)
	}
}

// TestTierNotBucketfs: files outside a bucketfs mount (no class
// attribute) fail the command at once with one line, nothing set.
func TestTierNotBucketfs(t *testing.T) {
	dir := tree(t)
	for _, errno := range []error{syscall.ENODATA, syscall.ENOTSUP} {
		f := &fakeClasses{class: map[string]string{}, getErr: map[string]error{"a.mp3": errno, "b.mp3": errno, "c.txt": errno, "d.mp3": errno}}
		files, _ := collectFiles([]string{dir})
		var out bytes.Buffer
		err := tierFiles(&out, &bytes.Buffer{}, files, "GLACIER", 4, f.xattr())
		if err == nil || !strings.Contains(err.Error(), "not on a bucketfs mount") {
			t.Errorf("%v: error %v", errno, err)
		}
		if len(f.sets) != 0 || out.Len() != 0 {
			t.Errorf("%v: set %v, printed %q", errno, f.sets, out.String())
		}
	}
}

// TestTierJobs: --jobs N moves N files at once (each copy is a
// server-side request that takes a while), and no more.
func TestTierJobs(t *testing.T) {
	dir := t.TempDir()
	f := &fakeClasses{class: map[string]string{}}
	var files []string
	for i := range 12 {
		p := filepath.Join(dir, string(rune('a'+i)))
		os.WriteFile(p, nil, 0o644)
		files = append(files, p)
		f.class[filepath.Base(p)] = "STANDARD"
	}
	// Each set waits until three are under way (or a second passes).
	gate := make(chan struct{})
	var once sync.Once
	f.onSet = func() {
		f.mu.Lock()
		full := f.running >= 3
		f.mu.Unlock()
		if full {
			once.Do(func() { close(gate) })
		}
		select {
		case <-gate:
		case <-time.After(time.Second):
		}
	}
	var out bytes.Buffer
	if err := tierFiles(&out, &bytes.Buffer{}, files, "GLACIER", 3, f.xattr()); err != nil {
		t.Fatal(err)
	}
	if f.most != 3 {
		t.Errorf("at most %d files moved at once, want 3", f.most)
	}
	if !strings.HasPrefix(out.String(), "12 moved to GLACIER") {
		t.Errorf("output %q", out.String())
	}
}

// TestTierCommandArgs: --class is required and checked (any case is
// taken, in upper case), --jobs is from 1 to 64, and a path that does not
// exist fails before anything is moved.
func TestTierCommandArgs(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"tier", "/x"}, "--class is required: one of STANDARD"},
		{[]string{"tier", "--class", "COLD", "/x"}, `--class: "COLD" is not a storage class`},
		{[]string{"tier", "--class", "glacier", "--jobs", "0", "/x"}, "--jobs must be from 1 to 64"},
		{[]string{"tier", "--class", "glacier", "--jobs", "65", "/x"}, "--jobs must be from 1 to 64"},
		{[]string{"tier", "--class", "glacier"}, "requires at least 1 arg"},
		{[]string{"tier", "--class", "glacier", filepath.Join(t.TempDir(), "missing")}, "no such file or directory"},
	} {
		_, err := parse(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}
