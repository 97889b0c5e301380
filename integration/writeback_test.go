package integration

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
)

// --write-back: close returns once the bytes are safe on local disk, and
// the upload goes on in the background, across a crash of the daemon.

// crash kills the daemon with SIGKILL, as a crash would, and clears the
// dead mount it leaves with `umount -l`.
func crash(t *testing.T, d *daemon) {
	t.Helper()
	d.ended = true
	d.Signal(syscall.SIGKILL)
	if err := d.Wait(5 * time.Second); err != nil && strings.Contains(err.Error(), "still running") {
		d.Kill() // stuck in the kernel on its own mount: abort the connection
	}
	if ok, _ := harness.IsMounted(d.Dir); ok {
		if out, err := exec.Command("umount", "-l", d.Dir).CombinedOutput(); err != nil {
			t.Fatalf("umount -l %s: %v %s", d.Dir, err, out)
		}
	}
}

// syncMount runs `bucketfs sync [args] MOUNTPOINT` and returns its output
// and exit code.
func syncMount(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, append(append([]string{"sync"}, args...), dir)...)
	out, err := runCmd(cmd, time.Minute)
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("bucketfs sync: %v\n%s", err, out)
	}
	return out, cmd.ProcessState.ExitCode()
}

// TestWriteBackSurvivesCrash: with --write-back and --cache-dir, while the
// store refuses every write, `cp` of a file into the mount succeeds (close
// returns 0), the file reads back through the mount and
// user.bucketfs.pending shows its bytes, and `bucketfs sync --timeout`
// gives up. The daemon is killed with SIGKILL (its dead mount cleared with
// umount -l); the store takes writes again; a new daemon on the same
// --cache-dir uploads the file from its journal: the object appears with
// exactly the bytes written, and `bucketfs sync` exits 0.
func TestWriteBackSurvivesCrash(t *testing.T) {
	needProgram(t, "getfattr", "attr")
	b := newBucket(t, nil)
	px := startProxy(t)
	cache := filepath.Join(t.TempDir(), "cache")
	dir := t.TempDir()
	args := []string{"--write-back", "--cache-dir", cache, "--unmount-wait", "2s"}
	d := mountVia(t, px, dir, b, args...)
	data := randomBytes(901, 12<<20+3)
	local := writeLocal(t, "take.wav", data)
	want := sha256.Sum256(data)

	px.RefuseWrites(503)
	if out, err := runIn(dir, time.Minute, "cp", local, "take.wav"); err != nil {
		t.Fatalf("cp with write-back while the store refuses writes: %v\n%s", err, out)
	}
	p := filepath.Join(dir, "take.wav")
	out, err := runIn(dir, time.Minute, "getfattr", "-n", "user.bucketfs.pending", "--only-values", "take.wav")
	if err != nil || strings.TrimSpace(out) != strconv.Itoa(len(data)) {
		t.Errorf("getfattr user.bucketfs.pending: %q %v, want %d", out, err, len(data))
	}
	dropCache(t, p)
	if got := fileSum(t, p); got != want {
		t.Error("the pending file does not read back through the mount with the bytes written")
	}
	if !s3Missing(t, b, "take.wav") {
		t.Fatal("the object is in the store while every write is refused")
	}
	if out, code := syncMount(t, dir, "--timeout", "1s"); code == 0 {
		t.Errorf("bucketfs sync --timeout 1s exited 0 with an upload pending:\n%s", out)
	}

	crash(t, d)
	px.RefuseWrites(0)
	d2 := mountVia(t, px, dir, b, args...)
	waitFor(t, 30*time.Second, "the pending upload to reach the store", func() bool {
		return !s3Missing(t, b, "take.wav")
	})
	if got := s3Sum(t, b, "take.wav"); got != want {
		t.Error("the object uploaded after the crash does not hold the bytes written")
	}
	out, code := syncMount(t, dir)
	if code != 0 {
		t.Errorf("bucketfs sync once the upload is done: exit %d\n%s", code, out)
	}
	if v, err := xattr(t, p, "user.bucketfs.pending"); err != nil || v != "0" {
		t.Errorf("user.bucketfs.pending after the upload: %q %v, want 0", v, err)
	}
	dropCache(t, p)
	if got := fileSum(t, p); got != want {
		t.Error("the file read through the new mount does not hold the bytes written")
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != int64(len(data)) {
		t.Errorf("stat after the upload: %v %v", fi, err)
	}
	d2.stop()
	checkNoUploads(t, b)
}

// TestWriteBackSync: with --write-back, `cp` of several files returns
// before they are stored; `bucketfs sync` waits until every one is, and
// then each object holds exactly its bytes.
func TestWriteBackSync(t *testing.T) {
	b := newBucket(t, nil)
	px := startProxy(t)
	d := mountVia(t, px, t.TempDir(), b, "--write-back", "--cache-dir", filepath.Join(t.TempDir(), "cache"))
	px.SetLatency(300 * time.Millisecond) // so sync has something to wait for
	files := map[string][]byte{}
	for i, size := range []int{0, 1, 3 << 20, 17 << 20} {
		name := "f" + strconv.Itoa(i)
		files[name] = randomBytes(uint64(910+i), size)
		if err := writeClose(t, filepath.Join(d.Dir, name), files[name]); err != nil {
			t.Fatalf("close of %s: %v", name, err)
		}
	}
	out, code := syncMount(t, d.Dir)
	if code != 0 {
		t.Fatalf("bucketfs sync: exit %d\n%s", code, out)
	}
	t.Logf("bucketfs sync: %s", strings.TrimSpace(out))
	for name, data := range files {
		if got := s3Sum(t, b, name); got != sha256.Sum256(data) {
			t.Errorf("%s: the object does not hold the bytes written once sync returned", name)
		}
	}
}

// TestWriteBackUnmountWaits: with --write-back, SIGTERM while an upload is
// pending (the store refusing writes) does not end the daemon: it waits
// (up to --unmount-wait) and, once the store takes writes again, uploads
// the file and exits 0, with the object holding exactly the bytes written.
func TestWriteBackUnmountWaits(t *testing.T) {
	b := newBucket(t, nil)
	px := startProxy(t)
	d := mountVia(t, px, t.TempDir(), b, "--write-back", "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--unmount-wait", "1m")
	data := randomBytes(920, 9<<20)
	px.RefuseWrites(503)
	if err := writeClose(t, filepath.Join(d.Dir, "late.bin"), data); err != nil {
		t.Fatalf("close with write-back while the store refuses writes: %v", err)
	}
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(2 * time.Second); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("the daemon exited with an upload pending: %v\n%s", err, d.Log())
	}
	if !s3Missing(t, b, "late.bin") {
		t.Fatal("the object is in the store while every write is refused")
	}
	px.RefuseWrites(0)
	d.ended = true
	if err := d.Wait(30 * time.Second); err != nil {
		d.Kill()
		t.Fatalf("after the store took writes again: %v\n%s", err, d.Log())
	}
	if got := s3Sum(t, b, "late.bin"); got != sha256.Sum256(data) {
		t.Error("the object uploaded during the unmount does not hold the bytes written")
	}
	checkNoUploads(t, b)
}

// TestWriteBackPendingChanges: with --write-back, files whose uploads are
// pending (the store refusing writes) are changed before they reach the
// store: one is removed (rm succeeds: it was never stored), one renamed,
// one written again. Once the store takes writes and `bucketfs sync`
// returns, the store holds the renamed file under its new name only and
// the last version of the rewritten one, and never the removed one.
func TestWriteBackPendingChanges(t *testing.T) {
	b := newBucket(t, nil)
	px := startProxy(t)
	d := mountVia(t, px, t.TempDir(), b, "--write-back", "--cache-dir", filepath.Join(t.TempDir(), "cache"),
		"--max-retries", "1", "--request-timeout", "2s")
	p := func(name string) string { return filepath.Join(d.Dir, name) }
	first := randomBytes(940, 6<<20)
	px.RefuseWrites(503)
	for _, name := range []string{"gone", "moved", "twice"} {
		if err := writeClose(t, p(name), first); err != nil {
			t.Fatalf("close of %s: %v", name, err)
		}
	}
	if err := os.Remove(p("gone")); err != nil {
		t.Errorf("rm of a file whose upload is pending: %v", err)
	}
	if err := os.Rename(p("moved"), p("moved2")); err != nil {
		t.Errorf("mv of a file whose upload is pending: %v", err)
	}
	if err := writeClose(t, p("twice"), []byte("second version")); err != nil {
		t.Errorf("rewrite of a file whose upload is pending: %v", err)
	}
	if got := readDirNames(t, d.Dir); !slices.Equal(got, []string{"moved2", "twice"}) {
		t.Errorf("listing with the uploads pending: %v", got)
	}
	px.RefuseWrites(0)
	if out, code := syncMount(t, d.Dir, "--timeout", "40s"); code != 0 {
		t.Fatalf("bucketfs sync: exit %d\n%s", code, out)
	}
	if got := s3Keys(t, b, ""); !slices.Equal(got, []string{"moved2", "twice"}) {
		t.Errorf("keys once synced: %v, want [moved2 twice]", got)
	}
	checkFile(t, d, b, "moved2", first)
	checkFile(t, d, b, "twice", []byte("second version"))
	checkNoUploads(t, b)
}
