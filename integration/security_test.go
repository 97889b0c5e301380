package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
	"github.com/moby/sys/mountinfo"
)

// TestNoCredentialsInLogs: at debug level, with every FUSE request logged
// and requests failing, the log never holds the access key, the secret or
// a request signature; nor does the error of a mount with a wrong secret.
func TestNoCredentialsInLogs(t *testing.T) {
	data := randomBytes(81, 2<<20)
	b := newBucket(t, map[string][]byte{"set.mp3": data, "fail.mp3": data, "dir/a.txt": []byte("a")})
	m, px := proxiedMount(t, b, "--debug-fuse", "--max-retries", "1")
	if _, err := preadAll(filepath.Join(m.Dir, "set.mp3")); err != nil {
		t.Fatal(err)
	}
	os.Stat(filepath.Join(m.Dir, "missing"))
	os.ReadDir(filepath.Join(m.Dir, "dir"))
	px.SetFaults(proxy.Faults{ErrorRate: 1, ErrorStatus: 500, GetsOnly: true})
	preadAll(filepath.Join(m.Dir, "fail.mp3"))
	px.SetFaults(proxy.Faults{ErrorRate: 1, ErrorStatus: 403})
	os.ReadDir(filepath.Join(m.Dir, "dir2"))
	px.SetFaults(proxy.Faults{})
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	log := m.Log()
	if !strings.Contains(log, "request failed") || !strings.Contains(log, "READ") {
		t.Fatalf("the log does not show the failures (%d bytes):\n%s", len(log), log)
	}
	for _, secret := range []string{harness.AccessKey, harness.SecretKey, "Signature=", "X-Amz-Credential", "Authorization"} {
		if strings.Contains(log, secret) {
			t.Errorf("the debug log contains %q", secret)
		}
	}

	env := append(harness.Env(px.URL), "AWS_SECRET_ACCESS_KEY=wrong-secret-do-not-print")
	out, code := runBucketfs(t, env, "mount", "--endpoint", px.URL, "--path-style", "--log-level", "debug", "--debug-fuse", b, t.TempDir())
	if code == 0 || !strings.Contains(out, "credentials rejected") || strings.Contains(out, "wrong-secret-do-not-print") || strings.Contains(out, harness.AccessKey) {
		t.Errorf("mount with a wrong secret (exit %d):\n%s", code, out)
	}
}

// TestReadOnlyKeyAccessDenied: a key refused by the store (403
// AccessDenied) gives EACCES to the reader and to ls, at once, not EIO
// after retries.
func TestReadOnlyKeyAccessDenied(t *testing.T) {
	b := newBucket(t, map[string][]byte{"x.bin": randomBytes(82, 1<<20), "d/y.txt": []byte("y")})
	m, px := faultMount(t, b)
	if _, err := os.Stat(filepath.Join(m.Dir, "x.bin")); err != nil {
		t.Fatal(err)
	}
	px.SetFaults(proxy.Faults{ErrorRate: 1, ErrorStatus: 403})
	if _, err := preadAll(filepath.Join(m.Dir, "x.bin")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("read refused by the store: %v, want EACCES", err)
	}
	if _, err := os.ReadDir(filepath.Join(m.Dir, "d")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("listing refused by the store: %v, want EACCES", err)
	}
	// The GET, the directory's HEAD and LIST (looked up in parallel) and
	// its listing: each refused once, none retried.
	if n := px.Injected(); n > 4 {
		t.Errorf("%d requests refused for two operations: 403 must not be retried", n)
	}
}

// TestAllowOtherOnlyWhenAsked: the mount carries allow_other only with
// --allow-other.
func TestAllowOtherOnlyWhenAsked(t *testing.T) {
	b := newBucket(t, map[string][]byte{"x": []byte("x")})
	for _, asked := range []bool{false, true} {
		args := []string{b}
		if asked {
			args = []string{"--allow-other", b}
		}
		m := mount(t, args...)
		opts := mountOptions(t, m.Dir)
		if got := strings.Contains(opts, "allow_other"); got != asked {
			t.Errorf("--allow-other %v: mount options %q", asked, opts)
		}
	}
}

// mountOptions returns the super options of the mount at dir.
func mountOptions(t *testing.T, dir string) string {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) == 0 {
		t.Fatalf("%s not in mountinfo", dir)
	}
	return mounts[0].VFSOptions
}
