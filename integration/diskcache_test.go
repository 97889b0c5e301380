package integration

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
	"golang.org/x/sys/unix"
)

// daemon is a mount whose end the test controls.
type daemon struct {
	*harness.Mount
	t     *testing.T
	ended bool
}

// stop ends the daemon with SIGTERM and checks it exits cleanly.
func (d *daemon) stop() {
	d.t.Helper()
	if d.ended {
		return
	}
	d.ended = true
	if err := d.Stop(); err != nil {
		d.t.Errorf("unclean exit: %v\n%s", err, d.Log())
	}
	if d.t.Failed() {
		d.t.Logf("bucketfs log:\n%s", d.Log())
	}
}

// kill ends the daemon with SIGKILL, as a crash would.
func (d *daemon) kill() {
	d.ended = true
	d.Kill()
}

// cacheMount mounts bucket through px with a disk cache in cacheDir. The
// daemon is stopped at cleanup unless the test ended it.
func cacheMount(t *testing.T, px *proxy.Proxy, bucket, cacheDir string, extra ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"--endpoint", px.URL, "--path-style", "--log-level", "debug",
		"--cache-dir", cacheDir, "--block-size", "1MiB", "--cache-memory", "64MiB"}, extra...)
	m, err := harness.StartMount(bin, harness.Env(px.URL), dir, append(args, bucket)...)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{Mount: m, t: t}
	t.Cleanup(d.stop)
	return d
}

func startProxy(t *testing.T) *proxy.Proxy {
	t.Helper()
	px, err := proxy.Start(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	return px
}

// readExact reads name in the mount and checks its bytes.
func readExact(t *testing.T, m *daemon, name string, want []byte) {
	t.Helper()
	p := filepath.Join(m.Dir, name)
	dropCache(t, p)
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %s: %d bytes, content differs from the object's %d", name, len(got), len(want))
	}
}

// TestDiskCacheSurvivesRestart: what one daemon read is served from disk by
// the next, after a clean stop and after kill -9, with (almost) no GETs.
func TestDiskCacheSurvivesRestart(t *testing.T) {
	set := randomBytes(51, 24<<20+999)
	notes := []byte("tracklist\n")
	b := newBucket(t, map[string][]byte{"set.mp3": set, "notes.txt": notes})
	px := startProxy(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")

	m := cacheMount(t, px, b, cacheDir)
	readExact(t, m, "set.mp3", set)
	readExact(t, m, "notes.txt", notes)
	if fi, err := os.Stat(cacheDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory: %v %v, want mode 0700", fi, err)
	}
	m.stop()

	px.Reset()
	m = cacheMount(t, px, b, cacheDir)
	readExact(t, m, "set.mp3", set)
	readExact(t, m, "notes.txt", notes)
	if s := px.Stats(); s.Gets != 0 {
		t.Fatalf("after a clean restart: %d GETs (%d bytes), want 0", s.Gets, s.GetBytes)
	}
	// Killed without warning, the daemon leaves a cache the next one uses.
	m.kill()
	px.Reset()
	m = cacheMount(t, px, b, cacheDir)
	readExact(t, m, "set.mp3", set)
	if s := px.Stats(); s.Gets > 1 {
		t.Fatalf("after kill -9 and a restart: %d GETs (%d bytes), want at most 1", s.Gets, s.GetBytes)
	}
}

// TestDiskCacheOverwrite: an object overwritten in the store reads back
// new, both from the running daemon and after a restart over the old
// version's cached blocks.
func TestDiskCacheOverwrite(t *testing.T) {
	v1 := randomBytes(52, 5<<20+1)
	v2 := randomBytes(53, 6<<20+2)
	b := newBucket(t, map[string][]byte{"model.bin": v1})
	px := startProxy(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	m := cacheMount(t, px, b, cacheDir, "--metadata-ttl", "0")
	readExact(t, m, "model.bin", v1)
	putAll(t, b, map[string][]byte{"model.bin": v2})
	readExact(t, m, "model.bin", v2)
	m.stop()
	m = cacheMount(t, px, b, cacheDir, "--metadata-ttl", "0")
	readExact(t, m, "model.bin", v2)
}

// TestDiskCacheCorruptBlock: damaged block files are never served; the
// blocks are fetched again and the damage logged.
func TestDiskCacheCorruptBlock(t *testing.T) {
	data := randomBytes(54, 8<<20)
	b := newBucket(t, map[string][]byte{"w.safetensors": data})
	px := startProxy(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	m := cacheMount(t, px, b, cacheDir)
	readExact(t, m, "w.safetensors", data)
	m.stop()
	damaged := 0
	filepath.WalkDir(filepath.Join(cacheDir, "blocks"), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && damaged < 3 {
			f, _ := os.OpenFile(p, os.O_RDWR, 0)
			f.WriteAt([]byte("garbage!"), 4096)
			f.Close()
			damaged++
		}
		return nil
	})
	if damaged != 3 {
		t.Fatalf("found %d block files to damage", damaged)
	}
	px.Reset()
	m = cacheMount(t, px, b, cacheDir)
	readExact(t, m, "w.safetensors", data)
	if s := px.Stats(); s.Gets < 1 || s.GetBytes < 3<<20 {
		t.Errorf("damaged blocks fetched with %d GETs, %d bytes; want the 3 blocks again", s.Gets, s.GetBytes)
	}
	waitFor(t, 2*time.Second, "the damage in the log", func() bool {
		return strings.Count(m.Log(), "damaged block file dropped") == 3
	})
}

// TestWarmCommand: `bucketfs warm DIR` fetches every file, skipping an
// archived one; reads afterwards make no GET, even after a restart.
func TestWarmCommand(t *testing.T) {
	files := map[string][]byte{
		"sets/a.mp3":        randomBytes(55, 9<<20+5),
		"sets/a.txt":        []byte("a tracklist\n"),
		"sets/2019/b.mp3":   randomBytes(56, 3<<20),
		"sets/2019/old.mp3": randomBytes(57, 1<<20),
	}
	b := newBucket(t, files)
	px := startProxy(t)
	px.Archive(b, "sets/2019/old.mp3", "GLACIER")
	cacheDir := filepath.Join(t.TempDir(), "cache")
	m := cacheMount(t, px, b, cacheDir)

	out, err := exec.Command(bin, "warm", filepath.Join(m.Dir, "sets")).CombinedOutput()
	if err != nil {
		t.Fatalf("warm: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "warmed 3 files") || !strings.Contains(string(out), "archived (skipped) 1") {
		t.Errorf("warm summary:\n%s", out)
	}
	if v, err := xattr(t, filepath.Join(m.Dir, "sets/a.mp3"), "user.bucketfs.cached"); err != nil || v != "9437189" {
		t.Errorf("user.bucketfs.cached = %q, %v; want the whole file", v, err)
	}
	// Warm again: nothing to fetch.
	px.Reset()
	out, err = exec.Command(bin, "warm", filepath.Join(m.Dir, "sets")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "already cached 3") || px.Stats().Gets != 0 {
		t.Errorf("second warm (%d GETs): %v\n%s", px.Stats().Gets, err, out)
	}
	m.stop()

	px.Reset()
	m = cacheMount(t, px, b, cacheDir)
	for _, k := range []string{"sets/a.mp3", "sets/a.txt", "sets/2019/b.mp3"} {
		readExact(t, m, k, files[k])
	}
	if s := px.Stats(); s.Gets != 0 {
		t.Fatalf("reads after warm: %d GETs, want 0", s.Gets)
	}
}

// TestWarmWithoutDiskCache: warm on a mount without --cache-dir says so.
func TestWarmWithoutDiskCache(t *testing.T) {
	b := newBucket(t, map[string][]byte{"x.bin": []byte("x")})
	m, _ := proxiedMount(t, b)
	out, err := exec.Command(bin, "warm", m.Dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no disk cache") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("warm without a disk cache: %v\n%s", err, out)
	}
}

// TestSecondDaemonSameCacheDir: a second daemon pointed at a cache
// directory in use fails at start with one clear line.
func TestSecondDaemonSameCacheDir(t *testing.T) {
	b := newBucket(t, map[string][]byte{"x.bin": []byte("x")})
	px := startProxy(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	m := cacheMount(t, px, b, cacheDir)
	cmd := exec.Command(bin, "mount", "--endpoint", px.URL, "--path-style", "--cache-dir", cacheDir, b, t.TempDir())
	cmd.Env = harness.Env(px.URL)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("second daemon did not exit")
	}
	want := "is used by another bucketfs (pid " + strconv.Itoa(m.Pid()) + ")"
	if err == nil || !strings.Contains(string(out), want) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("second daemon: %v\n%s\nwant one line containing %q", err, out, want)
	}
}

// TestWarmInterrupted: Ctrl-C stops warm at once with a summary; the
// daemon stops fetching for it, keeps what it cached and serves on.
func TestWarmInterrupted(t *testing.T) {
	data := randomBytes(58, 32<<20)
	b := newBucket(t, map[string][]byte{"big.bin": data})
	px := startProxy(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	m := cacheMount(t, px, b, cacheDir)
	px.SetBandwidth(4 << 20) // 8 s for the file
	cmd := exec.Command(bin, "warm", filepath.Join(m.Dir, "big.bin"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(out.String(), "interrupted") {
			t.Fatalf("interrupted warm: %v\n%s", err, out.String())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("warm did not stop on SIGINT:\n%s", out.String())
	}
	// The daemon drops the work: GET bytes stop growing.
	time.Sleep(500 * time.Millisecond)
	before := px.Stats().GetBytes
	time.Sleep(time.Second)
	if after := px.Stats().GetBytes; after > before+(1<<20) {
		t.Errorf("the daemon kept fetching after warm was interrupted: %d more bytes", after-before)
	}
	cached, err := xattr(t, filepath.Join(m.Dir, "big.bin"), "user.bucketfs.cached")
	if err != nil || cached == "0" || cached == strconv.Itoa(len(data)) {
		t.Errorf("cached after the interruption: %q, %v; want part of the file", cached, err)
	}
	px.SetBandwidth(0)
	readExact(t, m, "big.bin", data)
}

// TestRandomRecordsFillDiskCache: a training job reads a file's records in
// a random order each epoch. With a disk cache, the second miss in a block
// fetches the block whole, so epoch 1 fetches little more than the file
// and epoch 2, after a restart, comes from disk with no GET.
func TestRandomRecordsFillDiskCache(t *testing.T) {
	const rec = 128 << 10
	data := randomBytes(57, 8<<20)
	b := newBucket(t, map[string][]byte{"train.bin": data})
	px := startProxy(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	epoch := func(m *daemon, seed uint64) {
		t.Helper()
		p := filepath.Join(m.Dir, "train.bin")
		dropCache(t, p)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// As a record loader would: no kernel read-ahead around records.
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
		buf := make([]byte, rec)
		for _, i := range rand.New(rand.NewPCG(seed, seed)).Perm(len(data) / rec) {
			off := int64(i * rec)
			if n, err := unix.Pread(int(f.Fd()), buf, off); err != nil || n != rec || !bytes.Equal(buf, data[off:off+rec]) {
				t.Fatalf("record %d: %d bytes, %v", i, n, err)
			}
		}
	}

	m := cacheMount(t, px, b, cacheDir)
	epoch(m, 1)
	if s := px.Stats(); s.GetBytes > int64(len(data))*13/10 {
		t.Errorf("epoch 1 fetched %d bytes for a %d-byte file", s.GetBytes, len(data))
	}
	m.stop()

	px.Reset()
	m = cacheMount(t, px, b, cacheDir)
	epoch(m, 2)
	if s := px.Stats(); s.Gets != 0 {
		t.Errorf("epoch 2 after a restart: %d GETs (%d bytes), want 0", s.Gets, s.GetBytes)
	}
}
