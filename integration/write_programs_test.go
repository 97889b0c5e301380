package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
)

// Writes by real programs (cp, ffmpeg, rsync, touch, chmod, setfattr,
// bucketfs tier) into the mount.

// needProgram fails t in CI, and skips it elsewhere, when a program the
// test runs is missing (make deps installs them).
func needProgram(t *testing.T, name, pkg string) {
	t.Helper()
	_, err := exec.LookPath(name)
	harness.Require(t, err == nil, fmt.Sprintf("%s is missing (Debian package %s; make deps installs it)", name, pkg))
}

// writeLocal writes data to a new local file and returns its path.
func writeLocal(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWriteCopyLargeFile: `cp` of a 300 MiB file of pseudo-random bytes
// into the mount. The upload goes as multipart parts while cp writes (more
// than one UploadPart seen before cp exits), and the object read through
// the S3 API, and the file read back through the mount, have the local
// file's sha256.
func TestWriteCopyLargeFile(t *testing.T) {
	data := randomBytes(401, 300<<20)
	local := writeLocal(t, "big.bin", data)
	want := fileSum(t, local)
	data = nil
	b := newBucket(t, nil)
	m, px := writeMount(t, b)
	px.Reset()

	cmd := exec.Command("cp", local, filepath.Join(m.Dir, "big.bin"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Parts seen uploaded while the file was still short of its size
	// went up while cp was writing.
	var partsWhileWriting int64
	deadline := time.After(3 * time.Minute)
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("cp: %v\n%s", err, out.String())
			}
			break wait
		case <-deadline:
			cmd.Process.Kill()
			<-done
			t.Fatal("cp of 300 MiB did not finish within 3 minutes")
		case <-time.After(20 * time.Millisecond):
			puts := px.Stats().Puts
			if fi, err := os.Stat(filepath.Join(m.Dir, "big.bin")); err == nil && fi.Size() < 300<<20 {
				partsWhileWriting = puts
			}
		}
	}
	s := px.Stats()
	if partsWhileWriting <= 1 {
		t.Errorf("%d parts uploaded while cp was writing, want more than one", partsWhileWriting)
	}
	if s.Completes != 1 || s.Puts < 300/8 {
		t.Errorf("proxy stats %+v: want one multipart upload of at least %d parts", s, 300/8)
	}
	if got := s3Sum(t, b, "big.bin"); got != want {
		t.Errorf("sha256 of the object %x, want the local file's %x", got, want)
	}
	p := filepath.Join(m.Dir, "big.bin")
	dropCache(t, p)
	if got := fileSum(t, p); got != want {
		t.Errorf("sha256 of the file read back through the mount %x, want %x", got, want)
	}
	checkNoUploads(t, b)
}

// TestWriteFfmpegMP3: ffmpeg encodes a generated tone to MP3 straight into
// the mount (a 12 MB file: parts go up while it writes, then it seeks back
// to the start to write the Xing header); the bytes equal, byte for byte,
// the same bit-exact encode written to a local file.
func TestWriteFfmpegMP3(t *testing.T) {
	needProgram(t, "ffmpeg", "ffmpeg")
	b := newBucket(t, nil)
	m, px := writeMount(t, b)
	encode := func(out string) {
		t.Helper()
		o, err := runIn(filepath.Dir(out), 2*time.Minute, "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "sine=frequency=440:duration=300", "-c:a", "libmp3lame", "-b:a", "320k",
			"-fflags", "+bitexact", "-flags:a", "+bitexact", out)
		if err != nil {
			t.Fatalf("ffmpeg to %s: %v\n%s", out, err, o)
		}
	}
	local := filepath.Join(t.TempDir(), "tone.mp3")
	encode(local)
	want, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 9<<20 {
		t.Fatalf("the local encode is %d bytes; the test wants more than one 8 MiB part", len(want))
	}
	px.Reset()
	encode(filepath.Join(m.Dir, "tone.mp3"))
	checkFile(t, m, b, "tone.mp3", want)
	if s := px.Stats(); s.Completes != 1 {
		t.Errorf("proxy stats %+v: want one multipart upload", s)
	}
	checkNoUploads(t, b)
}

// stat returns the mode bits, uid and mtime of path.
func statOf(t *testing.T, path string) (os.FileMode, uint32, time.Time) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode(), st.Uid, fi.ModTime()
}

// TestWriteRsync: `rsync -a` of a nested tree (a 0-byte file, mtimes years
// old, modes 0600 and 0755, a file owned by another uid) into the mount:
// `diff -r` finds the trees equal; a second `rsync -a --itemize-changes`
// prints nothing, and so does a third after a remount. `touch -d` and
// `chmod` on a mounted file show in stat and survive the remount.
func TestWriteRsync(t *testing.T) {
	needProgram(t, "rsync", "rsync")
	src := filepath.Join(t.TempDir(), "src")
	old := time.Date(2016, 3, 14, 15, 9, 26, 0, time.UTC)
	files := []struct {
		path string
		mode os.FileMode
		data []byte
	}{
		{"empty", 0o644, nil},
		{"a/notes.txt", 0o600, []byte("private notes\n")},
		{"a/run.sh", 0o755, []byte("#!/bin/sh\necho hi\n")},
		{"a/b/c/deep.bin", 0o644, randomBytes(501, 300<<10)},
		{"a/b/big.bin", 0o640, randomBytes(502, 9<<20+5)},
		{"d/e/f/zero", 0o600, nil},
	}
	for _, f := range files {
		p := filepath.Join(src, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, f.mode) // past the umask
	}
	if err := os.Chown(filepath.Join(src, "a/notes.txt"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	// Old times, deepest first so a directory's own stays as set.
	var paths []string
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	})
	for i := len(paths) - 1; i >= 0; i-- {
		if fi, _ := os.Stat(paths[i]); fi.IsDir() {
			os.Chmod(paths[i], 0o755)
		}
		mt := old.Add(time.Duration(i) * 24 * time.Hour)
		if err := os.Chtimes(paths[i], mt, mt); err != nil {
			t.Fatal(err)
		}
	}

	b := newBucket(t, nil)
	px := startProxy(t)
	m := mountVia(t, px, t.TempDir(), b)
	dst := filepath.Join(m.Dir, "dst")
	rsync := func(dst string, itemize bool) string {
		t.Helper()
		args := []string{"-a", src + "/", dst + "/"}
		if itemize {
			args = append([]string{"--itemize-changes"}, args...)
		}
		out, err := runIn(src, 3*time.Minute, "rsync", args...)
		if err != nil {
			t.Fatalf("rsync %v: %v\n%s", args, err, out)
		}
		return out
	}
	rsync(dst, false)
	if out, err := runIn(src, time.Minute, "diff", "-r", src, dst); err != nil {
		t.Errorf("diff -r after rsync: %v\n%s", err, out)
	}
	for _, f := range files {
		if got := s3Sum(t, b, "dst/"+f.path); got != fileSum(t, filepath.Join(src, f.path)) {
			t.Errorf("dst/%s through the S3 API differs from the source", f.path)
		}
	}
	if out := rsync(dst, true); out != "" {
		t.Errorf("second rsync changed things:\n%s", out)
	}

	// touch -d and chmod on a mounted file.
	touched := filepath.Join(dst, "a/run.sh")
	sh(t, m.Dir, "touch -d '2001-02-03 04:05:06 UTC' dst/a/run.sh && chmod 0700 dst/a/run.sh")
	wantTime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if mode, _, mt := statOf(t, touched); mode.Perm() != 0o700 || !mt.Equal(wantTime) {
		t.Errorf("after touch -d and chmod: mode %v mtime %v, want 0700 and %v", mode, mt, wantTime)
	}

	if err := m.Stop(); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	m.ended = true
	m2 := mountVia(t, px, t.TempDir(), b)
	dst = filepath.Join(m2.Dir, "dst")
	touched = filepath.Join(dst, "a/run.sh")
	if mode, _, mt := statOf(t, touched); mode.Perm() != 0o700 || !mt.Equal(wantTime) {
		t.Errorf("after a remount: mode %v mtime %v, want 0700 and %v", mode, mt, wantTime)
	}
	if _, uid, _ := statOf(t, filepath.Join(dst, "a/notes.txt")); uid != 1000 {
		t.Errorf("owner of a/notes.txt after a remount: %d, want 1000", uid)
	}
	// Put the source's attributes back, so the tree should be unchanged.
	os.Chmod(filepath.Join(src, "a/run.sh"), 0o700)
	os.Chtimes(filepath.Join(src, "a/run.sh"), wantTime, wantTime)
	if out := rsync(dst, true); out != "" {
		t.Errorf("rsync after a remount changed things:\n%s", out)
	}
	if out, err := runIn(src, time.Minute, "diff", "-r", src, dst); err != nil {
		t.Errorf("diff -r after a remount: %v\n%s", err, out)
	}
	checkNoUploads(t, b)
}

// TestWriteStorageClass: `setfattr -n user.s3.storage_class -v GLACIER`
// moves an object to the archive tier (the proxy's emulation) and the file
// shows mode 0000 at once, without a remount. `bucketfs tier --class` on a
// tree moves the files that are not archived, prints its summary line and
// fails for the archived one. A user who may not write a file (another uid
// on an --allow-other mount) gets EACCES and nothing reaches the store.
func TestWriteStorageClass(t *testing.T) {
	needProgram(t, "setfattr", "attr")
	objects := map[string][]byte{
		"cold.mp3": randomBytes(601, 1<<20), "t/a.bin": randomBytes(602, 6<<20),
		"t/b.txt": []byte("b"), "t/sub/c.txt": []byte("c"),
	}
	b := newBucket(t, objects)
	m, px := writeMount(t, b, "--allow-other")
	p := func(name string) string { return filepath.Join(m.Dir, name) }
	if out, err := runIn(m.Dir, time.Minute, "setfattr", "-n", "user.s3.storage_class", "-v", "GLACIER", "cold.mp3"); err != nil {
		t.Fatalf("setfattr GLACIER: %v %s", err, out)
	}
	if c := px.StorageClass(b, "cold.mp3"); c != "GLACIER" {
		t.Errorf("class in the store after setfattr: %q, want GLACIER", c)
	}
	if fi, err := os.Stat(p("cold.mp3")); err != nil || fi.Mode().Perm() != 0 || fi.Size() != int64(len(objects["cold.mp3"])) {
		t.Errorf("archived file: %v %v, want mode 0000 and its size", fi, err)
	}
	if got, err := s3Get(t, b, "cold.mp3"); err != nil || !bytes.Equal(got, objects["cold.mp3"]) {
		t.Errorf("the archived object's bytes changed: %v", err)
	}

	tier := func(class string) (string, error) {
		cmd := exec.Command(bin, "tier", "--class", class, p("t"))
		out, err := runCmd(cmd, time.Minute)
		return out, err
	}
	out, err := tier("STANDARD_IA")
	if err != nil || !strings.Contains(out, "3 moved to STANDARD_IA, 0 already there, 0 failed") {
		t.Errorf("bucketfs tier --class STANDARD_IA: %v\n%s", err, out)
	}
	for _, k := range []string{"t/a.bin", "t/b.txt", "t/sub/c.txt"} {
		if c := px.StorageClass(b, k); c != "STANDARD_IA" {
			t.Errorf("%s: class %q, want STANDARD_IA", k, c)
		}
		if v, err := xattr(t, p(k), "user.s3.storage_class"); err != nil || v != "STANDARD_IA" {
			t.Errorf("%s: user.s3.storage_class %q, %v", k, v, err)
		}
		checkFile(t, m, b, k, objects[k])
	}

	px.Archive(b, "t/sub/c.txt", "GLACIER")
	out, err = tier("STANDARD")
	if err == nil || !strings.Contains(out, "2 moved to STANDARD, 0 already there, 1 failed") || !strings.Contains(out, p("t/sub/c.txt")) {
		t.Errorf("bucketfs tier --class STANDARD with an archived file: %v\n%s", err, out)
	}
	// The archived file failed because it must be restored first (as
	// `bucketfs tier --help` says), not for want of permission.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "c.txt") && !strings.Contains(line, "restore") {
			t.Errorf("the archived file's failure does not say to restore it first: %q", line)
		}
	}
	for _, k := range []string{"t/a.bin", "t/b.txt"} {
		if c := px.StorageClass(b, k); c != "" && c != "STANDARD" {
			t.Errorf("%s: class %q after tier STANDARD", k, c)
		}
	}

	// Another uid, who may read but not write the files (mode 0644, owner root).
	if err := os.Chmod(filepath.Dir(m.Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	copies := px.Stats().Copies
	cmd := exec.Command("setfattr", "-n", "user.s3.storage_class", "-v", "GLACIER", p("t/b.txt"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := runCmd(cmd, time.Minute); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("setfattr as a user who may not write: %v %s, want Permission denied", err, out)
	}
	if n := px.Stats().Copies - copies; n != 0 {
		t.Errorf("the refused change sent %d copies", n)
	}
	if c := px.StorageClass(b, "t/b.txt"); c != "" && c != "STANDARD" {
		t.Errorf("t/b.txt: class %q after a refused change", c)
	}
}

// runCmd runs cmd, killing it after timeout, and returns its combined
// output.
func runCmd(cmd *exec.Cmd, timeout time.Duration) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s killed after %s", cmd.Path, timeout)
	}
}
