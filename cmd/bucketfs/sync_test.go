package main

import (
	"bytes"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeStats plays back a script of counter readings, the last one over
// and over, on a clock that moves only when the waiter sleeps.
type fakeStats struct {
	script []map[string]int64
	err    map[int]error // reading number -> error
	reads  int
	now    time.Time
	slept  time.Duration
	sleeps int
}

func pending(files, bytes int64) map[string]int64 {
	return map[string]int64{statPendingFiles: files, statPendingBytes: bytes, "bytes_read": 7}
}

func (f *fakeStats) waiter(timeout time.Duration) *syncWaiter {
	f.now = time.Unix(1000, 0)
	return &syncWaiter{
		read: func() (map[string]int64, error) {
			n := f.reads
			f.reads++
			if err := f.err[n]; err != nil {
				return nil, err
			}
			return f.script[min(n, len(f.script)-1)], nil
		},
		now:      func() time.Time { return f.now },
		sleep:    func(d time.Duration) { f.now = f.now.Add(d); f.slept += d; f.sleeps++ },
		interval: syncPollInterval,
		timeout:  timeout,
	}
}

// TestSyncWaitsForPending: three files pending drain one by one; sync
// reads the counters every 200ms until none is pending, then prints one
// line with the files and bytes pending at start and the time it took.
func TestSyncWaitsForPending(t *testing.T) {
	f := &fakeStats{script: []map[string]int64{pending(3, 3<<20), pending(2, 2<<20), pending(1, 1<<20), pending(0, 0)}}
	var out, bar bytes.Buffer
	if err := f.waiter(0).wait(&out, &bar, "/mnt/rec"); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "synced: 3 files (3.0 MiB) uploaded in 600ms\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if f.reads != 4 || f.sleeps != 3 || f.slept != 600*time.Millisecond {
		t.Errorf("%d reads, %d sleeps of %v in all; want 4 reads and 3 sleeps of 200ms", f.reads, f.sleeps, f.slept)
	}
}

// TestSyncNothingPending: a mount with nothing pending (a mount without
// write-back always) and a read-only mount (no write counters at all)
// return at once, without sleeping, saying "nothing pending".
func TestSyncNothingPending(t *testing.T) {
	for name, stats := range map[string]map[string]int64{
		"idle":      pending(0, 0),
		"read-only": {"bytes_read": 12},
	} {
		t.Run(name, func(t *testing.T) {
			f := &fakeStats{script: []map[string]int64{stats}}
			var out bytes.Buffer
			if err := f.waiter(time.Second).wait(&out, &bytes.Buffer{}, "/mnt"); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out.String(), "nothing pending") || strings.Count(out.String(), "\n") != 1 {
				t.Errorf("output %q", out.String())
			}
			if f.reads != 1 || f.sleeps != 0 {
				t.Errorf("%d reads, %d sleeps", f.reads, f.sleeps)
			}
		})
	}
}

// TestSyncTimeout: uploads that never finish make sync give up when
// --timeout has passed, exactly then (the last pause is cut to fit), with
// an error naming the timeout and what is still pending.
func TestSyncTimeout(t *testing.T) {
	f := &fakeStats{script: []map[string]int64{pending(1, 10<<20)}}
	f.script = append(f.script, pending(1, 4<<20))
	var out bytes.Buffer
	err := f.waiter(time.Second+50*time.Millisecond).wait(&out, &bytes.Buffer{}, "/mnt/rec")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"timed out after 1.05s", "1 file (4.0 MiB) still pending on /mnt/rec"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if f.slept != time.Second+50*time.Millisecond || f.sleeps != 6 {
		t.Errorf("slept %v in %d pauses, want 1.05s in 6", f.slept, f.sleeps)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q on timeout", out.String())
	}
}

// TestSyncFilesArriveWhileWaiting: files closed while sync waits are
// waited for too and counted in the summary; the bar's total grows with
// them, so the bytes shown never go back.
func TestSyncFilesArriveWhileWaiting(t *testing.T) {
	f := &fakeStats{script: []map[string]int64{pending(1, 10), pending(2, 30), pending(1, 5), pending(0, 0)}}
	var out bytes.Buffer
	if err := f.waiter(0).wait(&out, &bytes.Buffer{}, "/mnt"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "synced: 2 files (30 B) uploaded in ") {
		t.Errorf("output %q", out.String())
	}
}

// TestSyncReadErrors: a path that is not a bucketfs mount's root fails at
// once naming it; a mount that goes away while sync waits fails with the
// error of the read.
func TestSyncReadErrors(t *testing.T) {
	f := &fakeStats{script: []map[string]int64{pending(1, 1)}, err: map[int]error{0: errNotMountRoot}}
	err := f.waiter(0).wait(&bytes.Buffer{}, &bytes.Buffer{}, "/home/me")
	if err == nil || !strings.Contains(err.Error(), "/home/me: not the root of a bucketfs mount") {
		t.Errorf("not a mount: %v", err)
	}
	f = &fakeStats{script: []map[string]int64{pending(1, 1)}, err: map[int]error{2: syscall.ENOTCONN}}
	err = f.waiter(0).wait(&bytes.Buffer{}, &bytes.Buffer{}, "/mnt")
	if !errors.Is(err, syscall.ENOTCONN) || f.reads != 3 {
		t.Errorf("mount gone: %v after %d reads", err, f.reads)
	}
}

// TestReadStatsNotAMount: a plain directory has no stats attribute.
func TestReadStatsNotAMount(t *testing.T) {
	if _, err := readStats(t.TempDir()); !errors.Is(err, errNotMountRoot) {
		t.Errorf("readStats of a plain directory: %v, want errNotMountRoot", err)
	}
}

// TestSyncCommandArgs: the command wants one mountpoint and a
// non-negative timeout, and fails on a directory that is not a mount.
func TestSyncCommandArgs(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"sync"}, "accepts 1 arg"},
		{[]string{"sync", "/a", "/b"}, "accepts 1 arg"},
		{[]string{"sync", "--timeout", "-1s", dir}, "--timeout must not be negative"},
		{[]string{"sync", dir}, "not the root of a bucketfs mount"},
	} {
		_, err := parse(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}
