package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	"github.com/sirupsen/logrus"
)

// TestWriteOptions: the write path gets the mount's flags, the store it
// is given (the metered one, in runMount), and its directory under
// --cache-dir, or none (a private temporary directory) without it.
func TestWriteOptions(t *testing.T) {
	o, err := parse(t, "mount", "--cache-dir", "/var/cache/b", "--write-back", "--storage-class", "glacier_ir",
		"--write-part-size", "32MiB", "--max-uploads", "5", "bkt", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewFake()
	wo := writeOptions(o, st, logrus.New(), func(string) (int64, error) { return 100 << 30, nil })
	if wo.Store != st || wo.Dir != "/var/cache/b/writes" || !wo.WriteBack || wo.PartSize != 32<<20 ||
		wo.MaxUploads != 5 || wo.StorageClass != "GLACIER_IR" || wo.MinFree != 5<<30 || wo.Log == nil {
		t.Errorf("write options %+v", wo)
	}
	if got := journalDir(o); got != "/var/cache/b/writes/journal" {
		t.Errorf("journal dir %q", got)
	}
	o, err = parse(t, "mount", "bkt", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	wo = writeOptions(o, st, logrus.New(), func(string) (int64, error) { return 100 << 30, nil })
	if wo.Dir != "" || wo.WriteBack || wo.PartSize != write.DefaultPartSize || wo.MaxUploads != 8 || wo.StorageClass != "" {
		t.Errorf("default write options %+v", wo)
	}
}

// TestWriteMinFree: with --cache-dir the staging floor is the disk
// cache's (the larger of --cache-min-free's size and percentage of the
// cache filesystem); without it, 1 GiB of the temporary directory's
// filesystem, or a tenth of one smaller than 10 GiB; a filesystem whose
// size cannot be read keeps the absolute part.
func TestWriteMinFree(t *testing.T) {
	size := func(total int64) func(string) (int64, error) {
		return func(string) (int64, error) { return total, nil }
	}
	broken := func(string) (int64, error) { return 0, errors.New("statfs failed") }
	cache := func(minFree int64, pct float64) *mountOptions {
		return &mountOptions{CacheDir: "/c", CacheMinFree: minFree, CacheMinFreePercent: pct}
	}
	for _, tt := range []struct {
		name   string
		o      *mountOptions
		statfs func(string) (int64, error)
		want   int64
	}{
		{"cache: 5% of 1 TiB", cache(0, 5), size(1 << 40), (1 << 40) / 20},
		{"cache: a size", cache(20<<30, 0), size(1 << 40), 20 << 30},
		{"cache: 0", cache(0, 0), size(1 << 40), 0},
		{"cache: statfs fails, percentage", cache(0, 5), broken, 0},
		{"cache: statfs fails, size", cache(3<<30, 0), broken, 3 << 30},
		{"temp: large", &mountOptions{CacheMinFreePercent: 5}, size(100 << 30), 1 << 30},
		{"temp: small tmpfs", &mountOptions{}, size(4 << 30), (4 << 30) / 10},
		{"temp: statfs fails", &mountOptions{}, broken, 1 << 30},
	} {
		if got := writeMinFree(tt.o, tt.statfs); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	if total, err := fsTotal(t.TempDir()); err != nil || total <= 0 {
		t.Errorf("fsTotal of a temp dir: %d, %v", total, err)
	}
}

// TestResolveTigrisRename: on and off are taken as given, without asking
// the store; auto asks it.
func TestResolveTigrisRename(t *testing.T) {
	asked := 0
	store := func(is bool) func() bool { return func() bool { asked++; return is } }
	if !resolveTigrisRename("on", store(false)) || resolveTigrisRename("off", store(true)) || asked != 0 {
		t.Errorf("on/off: asked the store %d times", asked)
	}
	if !resolveTigrisRename("auto", store(true)) || resolveTigrisRename("auto", store(false)) || asked != 2 {
		t.Errorf("auto: asked %d times", asked)
	}
}

// fakeWrites is a write path whose pending uploads finish when finish is
// closed (never, when nil).
type fakeWrites struct {
	files  int
	finish chan struct{}
	closes int
}

func (f *fakeWrites) Pending() (int, int64) { return f.files, int64(f.files) << 20 }

func (f *fakeWrites) Close(ctx context.Context) int {
	f.closes++
	if f.files == 0 {
		return 0
	}
	select {
	case <-f.finish:
		f.files = 0
	case <-ctx.Done():
	}
	return f.files
}

func testDrain(w writeCloser, wait time.Duration) (*uploadDrain, *bytes.Buffer) {
	d, logged, _ := testDrainNotes(w, wait)
	return d, logged
}

func testDrainNotes(w writeCloser, wait time.Duration) (*uploadDrain, *bytes.Buffer, *[]string) {
	var logged bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logged)
	var notes []string
	notify := func(s string) { notes = append(notes, s) }
	return newUploadDrain(w, logrus.NewEntry(l), notify, wait, "/var/cache/b/writes/journal"), &logged, &notes
}

// TestUploadDrainWaitBounded: uploads that do not finish within
// --unmount-wait are left for the next start, with a warning naming how
// many and the journal's directory; a second Close returns the same count
// without closing again.
func TestUploadDrainWaitBounded(t *testing.T) {
	w := &fakeWrites{files: 2}
	d, logged, notes := testDrainNotes(w, 20*time.Millisecond)
	if left := d.Close(); left != 2 {
		t.Errorf("left %d, want 2", left)
	}
	// systemd is asked for the wait and some slack: 20ms + 15s.
	if !slices.Equal(*notes, []string{"EXTEND_TIMEOUT_USEC=15020000"}) {
		t.Errorf("sd_notify %q", *notes)
	}
	for _, want := range []string{"level=warning", "uploads_left=2", "journal=/var/cache/b/writes/journal", "next start"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logged.String())
		}
	}
	if left := d.Close(); left != 2 || w.closes != 1 {
		t.Errorf("second Close: left %d, %d closes of the write path", left, w.closes)
	}
}

// TestUploadDrainNothingPending: with nothing pending Close neither
// waits, nor asks systemd for time, nor logs.
func TestUploadDrainNothingPending(t *testing.T) {
	w := &fakeWrites{}
	d, logged, notes := testDrainNotes(w, time.Hour)
	if left := d.Close(); left != 0 || len(*notes) != 0 || logged.Len() != 0 {
		t.Errorf("left %d, sd_notify %q, log %q", left, *notes, logged.String())
	}
}

// TestUploadDrainFinishes: uploads that finish within the wait leave
// nothing and log no warning.
func TestUploadDrainFinishes(t *testing.T) {
	w := &fakeWrites{files: 3, finish: make(chan struct{})}
	close(w.finish)
	d, logged := testDrain(w, time.Hour)
	if left := d.Close(); left != 0 {
		t.Errorf("left %d", left)
	}
	if strings.Contains(logged.String(), "level=warning") || !strings.Contains(logged.String(), "all write-back uploads finished") {
		t.Errorf("log:\n%s", logged.String())
	}
}

// TestUploadDrainStopWaiting: a signal during the wait (StopWaiting)
// ends it at once however long --unmount-wait is.
func TestUploadDrainStopWaiting(t *testing.T) {
	w := &fakeWrites{files: 1}
	d, _ := testDrain(w, time.Hour)
	done := make(chan int)
	go func() { done <- d.Close() }()
	deadline := time.Now().Add(5 * time.Second)
	for !d.Waiting() {
		if time.Now().After(deadline) {
			t.Fatal("Close never waited")
		}
		time.Sleep(time.Millisecond)
	}
	d.StopWaiting()
	d.StopWaiting() // a second signal: no panic
	select {
	case left := <-done:
		if left != 1 {
			t.Errorf("left %d, want 1", left)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting after StopWaiting")
	}
	if d.Waiting() {
		t.Error("still Waiting after Close returned")
	}
}

// TestUploadDrainRealManager: the drain closes a real write path (with
// write-back, in a cache directory) and removes nothing of its journal.
func TestUploadDrainRealManager(t *testing.T) {
	o, err := parse(t, "mount", "--cache-dir", t.TempDir(), "--write-back", "bkt", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	wm, err := write.New(writeOptions(o, store.NewFake(), logrus.New(), fsTotal))
	if err != nil {
		t.Fatal(err)
	}
	if found, err := wm.Start(context.Background()); err != nil || found != 0 {
		t.Fatalf("Start: %d, %v", found, err)
	}
	d, _ := testDrain(wm, time.Second)
	if left := d.Close(); left != 0 {
		t.Errorf("left %d", left)
	}
	if _, err := os.Stat(filepath.Join(o.CacheDir, "writes", "journal")); err != nil {
		t.Errorf("journal directory: %v", err)
	}
}
