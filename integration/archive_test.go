package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// xattr reads one extended attribute through the mount.
func xattr(t *testing.T, path, name string) (string, error) {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(path, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// TestArchivedObjectsShownAndRefused: an archived object is listed with
// its size and mode 0000, opening it fails with EACCES with one warning
// naming the restore command, its xattrs tell the tier, and GLACIER_IR
// reads normally.
func TestArchivedObjectsShownAndRefused(t *testing.T) {
	old, ir := randomBytes(31, 3<<20), randomBytes(32, 1<<20)
	b := newBucket(t, map[string][]byte{"2019/old-set.mp3": old, "2019/ir-set.mp3": ir, "2019/new.txt": []byte("new")})
	m, px := proxiedMount(t, b)
	px.Archive(b, "2019/old-set.mp3", "GLACIER")
	px.Archive(b, "2019/ir-set.mp3", "GLACIER_IR")
	p := filepath.Join(m.Dir, "2019", "old-set.mp3")

	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0 || fi.Size() != int64(len(old)) {
		c, _ := xattr(t, p, "user.s3.storage_class")
		r, rerr := xattr(t, p, "user.s3.restore")
		t.Fatalf("archived file: %v %v, want mode 0000 and size %d (class %q restore %q %v)\n%s", fi, err, len(old), c, r, rerr, m.Log())
	}
	for range 3 {
		if _, err := os.ReadFile(p); !errors.Is(err, syscall.EACCES) {
			t.Fatalf("read of an archived file: %v, want EACCES", err)
		}
	}
	// The daemon's log reaches the test through a pipe: wait for it.
	waitFor(t, 2*time.Second, "the restore hint in the log", func() bool { return strings.Contains(m.Log(), "setfattr -n user.s3.restore") })
	if n := strings.Count(m.Log(), "setfattr -n user.s3.restore"); n != 1 {
		t.Errorf("restore hint logged %d times, want once:\n%s", n, m.Log())
	}
	for name, want := range map[string]string{"user.s3.storage_class": "GLACIER", "user.s3.restore": "archived"} {
		if got, err := xattr(t, p, name); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if etag, err := xattr(t, p, "user.s3.etag"); err != nil || len(etag) < 8 || strings.Contains(etag, `"`) {
		t.Errorf("user.s3.etag = %q, %v", etag, err)
	}
	if _, err := xattr(t, filepath.Join(m.Dir, "2019", "new.txt"), "user.s3.restore"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("user.s3.restore of a STANDARD object: %v, want ENODATA", err)
	}
	if _, err := xattr(t, p, "user.s3.nope"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("missing xattr: %v, want ENODATA", err)
	}
	list := make([]byte, 4096)
	n, err := unix.Listxattr(p, list)
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Split(strings.TrimRight(string(list[:n]), "\x00"), "\x00")
	for _, want := range []string{"user.s3.storage_class", "user.s3.restore", "user.s3.etag"} {
		if !slices.Contains(names, want) {
			t.Errorf("listxattr %v lacks %s", names, want)
		}
	}
	got, err := os.ReadFile(filepath.Join(m.Dir, "2019", "ir-set.mp3"))
	if err != nil || !bytes.Equal(got, ir) {
		t.Errorf("GLACIER_IR read: %v", err)
	}
	if c, _ := xattr(t, filepath.Join(m.Dir, "2019", "ir-set.mp3"), "user.s3.storage_class"); c != "GLACIER_IR" {
		t.Errorf("GLACIER_IR class xattr = %q", c)
	}
}

// TestRestoreWithSetfattr starts a restore with setfattr: opening fails
// with EAGAIN while it runs; when it completes the daemon notices by
// itself and the file becomes readable with the right bytes, without a
// remount; when the restored copy expires the file is unreadable again,
// cached blocks or not.
func TestRestoreWithSetfattr(t *testing.T) {
	data := randomBytes(33, 2<<20)
	b := newBucket(t, map[string][]byte{"set.mp3": data})
	m, px := proxiedMount(t, b, "--restore-check-interval", "1s")
	px.Archive(b, "set.mp3", "GLACIER")
	p := filepath.Join(m.Dir, "set.mp3")
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("before restore: %v", err)
	}
	if out, err := exec.Command("setfattr", "-n", "user.s3.restore", "-v", "2", p).CombinedOutput(); err != nil {
		t.Fatalf("setfattr: %v %s", err, out)
	}
	if px.RestoreRequests() != 1 {
		t.Errorf("%d RestoreObject requests, want 1", px.RestoreRequests())
	}
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("while restoring: %v, want EAGAIN", err)
	}
	if out, err := exec.Command("getfattr", "-n", "user.s3.restore", "--only-values", p).Output(); err != nil || string(out) != "ongoing" {
		t.Errorf("getfattr while restoring: %q %v", out, err)
	}

	expiry := time.Now().Add(5 * time.Second).UTC().Truncate(time.Second)
	px.FinishRestore(b, "set.mp3", expiry)
	waitFor(t, 10*time.Second, "the restored file to become readable", func() bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().Perm() == 0o644
	})
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after restore: %v", err)
	}
	if v, _ := xattr(t, p, "user.s3.restore"); v != "restored until "+expiry.Format(time.RFC3339) {
		t.Errorf("user.s3.restore = %q", v)
	}
	waitFor(t, 2*time.Second, "the completion in the log", func() bool { return strings.Contains(m.Log(), "restore complete") })

	time.Sleep(time.Until(expiry) + 100*time.Millisecond)
	waitFor(t, 3*time.Second, "mode 0000 after expiry", func() bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().Perm() == 0
	})
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EACCES) {
		t.Errorf("after the restored copy expired: %v, want EACCES", err)
	}
}

// TestRestoreExpiredEarly: the store may drop a restored copy before the
// expiry bucketfs knows of; the first GET refused tells it.
func TestRestoreExpiredEarly(t *testing.T) {
	data := randomBytes(35, 12<<20)
	b := newBucket(t, map[string][]byte{"set.mp3": data})
	m, px := proxiedMount(t, b)
	px.Archive(b, "set.mp3", "GLACIER")
	px.FinishRestore(b, "set.mp3", time.Now().Add(time.Hour))
	p := filepath.Join(m.Dir, "set.mp3")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	px.ExpireRestore(b, "set.mp3")
	if _, err := f.ReadAt(buf, 10<<20); !errors.Is(err, syscall.EACCES) {
		t.Errorf("read of an uncached block after early expiry: %v, want EACCES", err)
	}
	waitFor(t, 3*time.Second, "mode 0000", func() bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().Perm() == 0
	})
}

// TestArchivedAfterListing: an object a lifecycle rule archived after it
// was listed fails with EACCES on read, not EIO.
func TestArchivedAfterListing(t *testing.T) {
	b := newBucket(t, map[string][]byte{"late.bin": randomBytes(34, 1<<20)})
	m, px := proxiedMount(t, b)
	p := filepath.Join(m.Dir, "late.bin")
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("before: %v %v", fi, err)
	}
	px.Archive(b, "late.bin", "DEEP_ARCHIVE")
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EACCES) {
		t.Errorf("read after archiving: %v, want EACCES", err)
	}
	waitFor(t, 5*time.Second, "mode 0000", func() bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().Perm() == 0
	})
}

// TestAutoRestore: with --auto-restore, opening an archived object starts
// its restore and fails with EAGAIN.
func TestAutoRestore(t *testing.T) {
	b := newBucket(t, map[string][]byte{"x.mp3": []byte("audio")})
	m, px := proxiedMount(t, b, "--auto-restore=3")
	px.Archive(b, "x.mp3", "GLACIER")
	p := filepath.Join(m.Dir, "x.mp3")
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("first open: %v, want EAGAIN", err)
	}
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("second open: %v, want EAGAIN", err)
	}
	if n := px.RestoreRequests(); n != 1 {
		t.Errorf("%d restore requests, want 1", n)
	}
	if v, _ := xattr(t, p, "user.s3.restore"); v != "ongoing" {
		t.Errorf("user.s3.restore = %q", v)
	}
}

// TestRestoreCommand runs `bucketfs restore` and `--status` on a directory.
func TestRestoreCommand(t *testing.T) {
	b := newBucket(t, map[string][]byte{
		"archive/a.mp3": []byte("a"), "archive/b.mp3": []byte("b"), "archive/sub/c.mp3": []byte("c"),
		"archive/done.mp3": []byte("d"), "archive/plain.txt": []byte("p"),
	})
	m, px := proxiedMount(t, b)
	for _, k := range []string{"archive/a.mp3", "archive/b.mp3", "archive/sub/c.mp3", "archive/done.mp3"} {
		px.Archive(b, k, "GLACIER")
	}
	px.FinishRestore(b, "archive/done.mp3", time.Now().Add(24*time.Hour))
	dir := filepath.Join(m.Dir, "archive")

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("bucketfs %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("restore", "--days", "3", dir); !strings.Contains(out, "started 3, already running 0, already restored 1, not archived 1, failed 0") {
		t.Errorf("first restore:\n%s", out)
	}
	if out := run("restore", dir); !strings.Contains(out, "started 0, already running 3, already restored 1, not archived 1, failed 0") {
		t.Errorf("second restore:\n%s", out)
	}
	status := run("restore", "--status", dir)
	for _, want := range []string{"ongoing", filepath.Join(dir, "sub", "c.mp3"), "restored"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "plain.txt") {
		t.Errorf("status lists a STANDARD file:\n%s", status)
	}
	if out, err := exec.Command(bin, "restore", "--days", "0", dir).CombinedOutput(); err == nil || !strings.Contains(string(out), "--days") {
		t.Errorf("--days 0: %v %s", err, out)
	}
}

// TestOddKeysInListing shows keys the posix backend cannot store (through
// the proxy's listing): empty, "." and ".." components and overlong names
// are skipped, and an object beside a prefix of the same name shows as the
// directory.
func TestOddKeysInListing(t *testing.T) {
	b := newBucket(t, map[string][]byte{"clash/inner.txt": []byte("in"), "dir/real.txt": []byte("r")})
	m, px := proxiedMount(t, b)
	long := strings.Repeat("n", 300)
	px.InjectListing(b, []string{"a//b", "../x", "dir/./y", "dir/../z", long, "clash"})
	root := readDirNames(t, m.Dir)
	for _, bad := range []string{"..", long} {
		if slices.Contains(root, bad) {
			t.Errorf("root lists %q", bad)
		}
	}
	if got := readDirNames(t, filepath.Join(m.Dir, "a")); len(got) != 0 {
		t.Errorf("a/ lists %v; the empty component must be skipped", got)
	}
	if got := readDirNames(t, filepath.Join(m.Dir, "dir")); !slices.Equal(got, []string{"real.txt"}) {
		t.Errorf("dir/ lists %v", got)
	}
	if fi, err := os.Stat(filepath.Join(m.Dir, "clash")); err != nil || !fi.IsDir() {
		t.Errorf("clash: %v %v, want the directory", fi, err)
	}
	waitFor(t, 2*time.Second, "the clash in the log", func() bool {
		return strings.Contains(m.Log(), "skipping key that cannot be a file name") && strings.Contains(m.Log(), "share a name")
	})
	if strings.Count(m.Log(), "object and directory share a name") != 1 {
		t.Errorf("clash not logged exactly once:\n%s", m.Log())
	}
}

// TestRestoreManyFiles restores 2,000 archived files with `bucketfs
// restore DIR` and watches the daemon while they run: the checks of running
// restores hold the daemon's goroutines under a few hundred (one watcher
// for all, not one per file) and the HEADs per second at the store under
// --restore-check-rate, even when every file's first check falls due in
// the same second.
func TestRestoreManyFiles(t *testing.T) {
	const files, rate = 2000, 20
	objects := map[string][]byte{}
	for i := range files {
		objects[fmt.Sprintf("archive/set-%04d.mp3", i)] = []byte("x")
	}
	b := newBucket(t, objects)
	addr := freeAddr(t)
	m, px := proxiedMount(t, b, "--metrics-addr", addr, "--restore-check-interval", "1s", "--restore-check-rate", fmt.Sprint(rate))
	px.SetRestoreDelay(time.Hour)
	for k := range objects {
		px.Archive(b, k, "GLACIER")
	}
	out, err := exec.Command(bin, "restore", "--days", "1", filepath.Join(m.Dir, "archive")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("started %d,", files)) {
		t.Fatalf("bucketfs restore: %v\n%s", err, out)
	}
	heads0, start := px.Stats().Heads, time.Now()
	maxG := 0.0
	for time.Since(start) < 4*time.Second {
		maxG = max(maxG, scrape(t, addr)["go_goroutines"])
		time.Sleep(200 * time.Millisecond)
	}
	heads, elapsed := px.Stats().Heads-heads0, time.Since(start)
	if maxG > 300 {
		t.Errorf("daemon ran %v goroutines while %d restores ran, want under 300", maxG, files)
	}
	// +3: HEADs under way when the window opened and closed.
	if limit := int64(rate*elapsed.Seconds()) + 3; heads > limit {
		t.Errorf("%d HEADs in %v, above --restore-check-rate %d/s (limit %d)", heads, elapsed, rate, limit)
	}
	if heads == 0 {
		t.Errorf("no HEAD checked a running restore in %v", elapsed)
	}
	t.Logf("%d restores: at most %v goroutines, %d HEADs in %v", files, maxG, heads, elapsed.Round(time.Millisecond))
}

// TestRestoreNeedsReadAccess: on an --allow-other mount whose file mode
// excludes others, a user who may not read a file cannot start its
// restore (billed to the bucket owner) or warm it: EACCES, and nothing
// reaches the store; root can.
func TestRestoreNeedsReadAccess(t *testing.T) {
	b := newBucket(t, map[string][]byte{"cold.mp3": []byte("audio"), "hot.mp3": randomBytes(36, 1<<20)})
	m, px := proxiedMount(t, b, "--allow-other", "--file-mode", "0600", "--uid", "0", "--gid", "0",
		"--cache-dir", t.TempDir())
	px.Archive(b, "cold.mp3", "GLACIER")
	// The unprivileged user must reach the mountpoint.
	if err := os.Chmod(filepath.Dir(m.Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	cold, hot := filepath.Join(m.Dir, "cold.mp3"), filepath.Join(m.Dir, "hot.mp3")
	for _, p := range []string{cold, hot} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	px.Reset()
	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command("setfattr", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody("-n", "user.s3.restore", "-v", "1", cold); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("restore as nobody: %v %s, want Permission denied", err, out)
	}
	if out, err := asNobody("-n", "user.bucketfs.warm", "-v", "1", hot); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("warm as nobody: %v %s, want Permission denied", err, out)
	}
	if n, st := px.RestoreRequests(), px.Stats(); n != 0 || st.Gets != 0 {
		t.Errorf("refused callers sent %d RestoreObject and %d GET requests, want none", n, st.Gets)
	}
	if out, err := exec.Command("setfattr", "-n", "user.s3.restore", "-v", "1", cold).CombinedOutput(); err != nil {
		t.Fatalf("restore as root: %v %s", err, out)
	}
	if n := px.RestoreRequests(); n != 1 {
		t.Errorf("root's restore sent %d RestoreObject requests, want 1", n)
	}
}
