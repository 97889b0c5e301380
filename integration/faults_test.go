package integration

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
)

// faultMount mounts bucket through a fresh proxy with short timeouts, so
// faults show within seconds.
func faultMount(t *testing.T, bucket string, extra ...string) (*harness.Mount, *proxy.Proxy) {
	t.Helper()
	args := append([]string{"--request-timeout", "500ms", "--max-retries", "3", "--block-size", "1MiB", "--metadata-ttl", "1h"}, extra...)
	return proxiedMount(t, bucket, args...)
}

// readErr reads a whole file with the page cache dropped and returns its
// bytes, the error and how long it took.
func readErr(t *testing.T, p string) ([]byte, error, time.Duration) {
	t.Helper()
	dropCache(t, p)
	start := time.Now()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := preadAll(p)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err, time.Since(start)
	case <-time.After(90 * time.Second):
		if hungHook != nil {
			hungHook()
		}
		t.Fatalf("read of %s hung for 90s", p)
		return nil, nil, 0
	}
}

var hungHook func()

// preadAll reads a file with pread(2), as C programs and Python do.
// (os.File.Read would not do: Go registers FUSE files, which support poll,
// with its poller, and on EAGAIN waits for a readiness that never comes.)
func preadAll(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []byte
	buf := make([]byte, 1<<20)
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// TestTransientErrorsAreRetried: 30% of GETs answered 503 SlowDown or 500
// InternalError; every read still gets exact bytes.
func TestTransientErrorsAreRetried(t *testing.T) {
	data := randomBytes(61, 20<<20+17)
	b := newBucket(t, map[string][]byte{"set.mp3": data})
	m, px := faultMount(t, b)
	for _, status := range []int{503, 500} {
		px.SetFaults(proxy.Faults{ErrorRate: 0.3, ErrorStatus: status, GetsOnly: true})
		got, err, _ := readErr(t, filepath.Join(m.Dir, "set.mp3"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("status %d at 30%%: %v, %d bytes, exact %v", status, err, len(got), bytes.Equal(got, data))
		}
	}
	if px.Injected() == 0 {
		t.Fatal("no fault was injected")
	}
	if stats := readStats(t, m.Dir); stats["s3_retries"] < 1 {
		t.Errorf("stats after retried errors: %v", stats)
	}
}

// TestCutBodiesAreResumed: half the GETs are cut after 300 KiB; reads get
// exact bytes and the bytes fetched stay close to the file's size (each
// GET resumes where the cut one stopped).
func TestCutBodiesAreResumed(t *testing.T) {
	data := randomBytes(62, 24<<20)
	b := newBucket(t, map[string][]byte{"w.bin": data})
	m, px := faultMount(t, b)
	px.SetFaults(proxy.Faults{ResetRate: 0.5, ResetAfter: 300 << 10})
	px.Reset()
	got, err, _ := readErr(t, filepath.Join(m.Dir, "w.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through cut bodies: %v, %d bytes, exact %v\n%s", err, len(got), bytes.Equal(got, data), m.Log())
	}
	s := px.Stats()
	if px.Injected() == 0 {
		t.Fatal("no body was cut")
	}
	if s.GetBytes > int64(len(data))*11/10 {
		t.Errorf("fetched %d bytes for %d: cut GETs were restarted, not resumed", s.GetBytes, len(data))
	}
}

// TestStalledBodiesAreResumed: GETs whose body stops for a minute are
// resumed after --request-timeout; the read finishes in seconds.
func TestStalledBodiesAreResumed(t *testing.T) {
	data := randomBytes(63, 8<<20)
	b := newBucket(t, map[string][]byte{"s.bin": data})
	m, px := faultMount(t, b)
	px.SetFaults(proxy.Faults{StallRate: 1, StallAfter: 200 << 10, StallFor: time.Minute, Count: 3})
	got, err, took := readErr(t, filepath.Join(m.Dir, "s.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through stalls: %v, exact %v", err, bytes.Equal(got, data))
	}
	if px.Injected() == 0 {
		t.Fatalf("no stall was injected (%+v)", px.Stats())
	}
	if took > 20*time.Second {
		t.Errorf("read through stalls took %v", took)
	}
}

// TestRetriesRunOut: when every GET fails, reads fail within the retry
// bounds with EIO (EAGAIN when throttled), logged with the request id; the
// mount serves other files meanwhile and the same file once the store
// is back.
func TestRetriesRunOut(t *testing.T) {
	data := randomBytes(64, 3<<20)
	other := []byte("tracklist\n")
	b := newBucket(t, map[string][]byte{"x.bin": data, "other.txt": other})
	m, px := faultMount(t, b)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(m.Log())
		}
	})
	p := filepath.Join(m.Dir, "x.bin")
	hungHook = func() { m.Signal(syscall.SIGQUIT); time.Sleep(time.Second) } // stacks in the log
	t.Cleanup(func() { hungHook = nil })
	for _, tc := range []struct {
		status int
		want   syscall.Errno
	}{{500, syscall.EIO}, {503, syscall.EAGAIN}} {
		px.SetFaults(proxy.Faults{ErrorRate: 1, ErrorStatus: tc.status, GetsOnly: true})
		_, err, took := readErr(t, p)
		if !errors.Is(err, tc.want) {
			t.Errorf("status %d on every GET: %v, want %v", tc.status, err, tc.want)
		}
		if took > 30*time.Second {
			t.Errorf("status %d: the read took %v to fail", tc.status, took)
		}
	}
	waitFor(t, 2*time.Second, "the request id in the log", func() bool { return strings.Contains(m.Log(), "request-id=FAULT") })
	// Metadata still works: other files can be listed and opened.
	if _, err := os.Stat(filepath.Join(m.Dir, "other.txt")); err != nil {
		t.Errorf("stat of another file while GETs fail: %v", err)
	}
	px.SetFaults(proxy.Faults{})
	if got, err := os.ReadFile(filepath.Join(m.Dir, "other.txt")); err != nil || !bytes.Equal(got, other) {
		t.Errorf("other file after the store came back: %v", err)
	}
	if got, err, _ := readErr(t, p); err != nil || !bytes.Equal(got, data) {
		t.Errorf("same file after the store came back: %v", err)
	}
}

// TestStoreGoesAwayAndComesBack: the store's port goes dead during reads.
// A short outage is ridden out; a long one fails reads within the retry
// bounds without hanging or crashing the daemon; once the store is back
// reads work without a remount.
func TestStoreGoesAwayAndComesBack(t *testing.T) {
	data := randomBytes(65, 16<<20)
	b := newBucket(t, map[string][]byte{"a.bin": data, "b.bin": data[:5<<20]})
	// Six retries wait up to 12.75 s in all: a short outage fails a read
	// only if all six jitter draws come out near zero (a few in a million),
	// and a long one still fails in time.
	m, px := faultMount(t, b, "--max-retries", "6")
	if _, err := os.Stat(filepath.Join(m.Dir, "b.bin")); err != nil {
		t.Fatal(err)
	}

	// Short: down for a moment while a slow read runs.
	px.SetBandwidth(8 << 20)
	var wg sync.WaitGroup
	var got []byte
	var rerr error
	wg.Add(1)
	go func() { defer wg.Done(); got, rerr, _ = readErr(t, filepath.Join(m.Dir, "a.bin")) }()
	time.Sleep(500 * time.Millisecond)
	px.SetDown(true)
	time.Sleep(300 * time.Millisecond)
	if err := px.SetDown(false); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if rerr != nil || !bytes.Equal(got, data) {
		t.Fatalf("read across a short outage: %v, exact %v\n%s", rerr, bytes.Equal(got, data), m.Log())
	}

	// Long: down until the reads fail.
	px.SetDown(true)
	start := time.Now()
	_, err, _ := readErr(t, filepath.Join(m.Dir, "b.bin"))
	if err == nil {
		t.Fatal("read with the store down succeeded")
	}
	if d := time.Since(start); d > 45*time.Second {
		t.Errorf("read with the store down took %v to fail", d)
	}
	if err := px.SetDown(false); err != nil {
		t.Fatal(err)
	}
	px.SetBandwidth(0)
	if got, err, _ := readErr(t, filepath.Join(m.Dir, "b.bin")); err != nil || !bytes.Equal(got, data[:5<<20]) {
		t.Fatalf("read after the store came back: %v\n%s", err, m.Log())
	}
}

// TestUnmountWithReadsInFlight: SIGTERM while files are open and being
// read: the readers finish with exact bytes or a clean error, never hang;
// the daemon exits 0 and leaves no mount.
func TestUnmountWithReadsInFlight(t *testing.T) {
	data := randomBytes(66, 8<<20)
	b := newBucket(t, map[string][]byte{"1.bin": data, "2.bin": data, "3.bin": data})
	px := startProxy(t)
	px.SetBandwidth(6 << 20)
	dir := t.TempDir()
	m, err := harness.StartMount(bin, harness.Env(px.URL), dir, "--endpoint", px.URL, "--path-style", "--block-size", "1MiB", b)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, name := range []string{"1.bin", "2.bin", "3.bin"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil && !bytes.Equal(got, data) {
				t.Errorf("%s: wrong bytes", name)
			}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	m.Signal(syscall.SIGTERM)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		m.Kill()
		t.Fatal("readers hung after SIGTERM")
	}
	if err := m.Wait(15 * time.Second); err != nil {
		m.Kill()
		t.Fatalf("exit after SIGTERM with reads in flight: %v\n%s", err, m.Log())
	}
	if ok, _ := harness.IsMounted(dir); ok {
		t.Error("still mounted")
	}
}

// TestCrashedDaemonMount: a daemon killed with SIGKILL leaves a dead mount;
// starting bucketfs on it says what to run, and after that it mounts.
func TestCrashedDaemonMount(t *testing.T) {
	b := newBucket(t, map[string][]byte{"f.txt": []byte("x")})
	dir := t.TempDir()
	m, err := harness.StartMount(bin, harness.Env(endpoint), dir, mountArgs(b)...)
	if err != nil {
		t.Fatal(err)
	}
	m.Signal(syscall.SIGKILL)
	m.Wait(10 * time.Second)
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	out, err := exec.Command(bin, append([]string{"mount"}, mountArgs(b, dir)...)...).CombinedOutput()
	want := "umount -l " + dir
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("mount on a dead mount: %v\n%s\nwant a line naming %q", err, out, want)
	}
	if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount -l: %v %s", err, out)
	}
	m2, err := harness.StartMount(bin, harness.Env(endpoint), dir, mountArgs(b)...)
	if err != nil {
		t.Fatalf("mount after umount -l: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "f.txt")); err != nil || string(got) != "x" {
		t.Errorf("read after remount: %q %v", got, err)
	}
	if err := m2.Stop(); err != nil {
		t.Errorf("exit: %v", err)
	}
}
