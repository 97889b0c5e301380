package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

type fakeUnmounter struct{ err error }

func (f fakeUnmounter) Unmount() error { return f.err }

// newTestHandler is a signal handler whose mount is busy (Unmount fails)
// with open files open and holders as given, logging to the buffer.
func newTestHandler(open int64, holders func() []string) (*signalHandler, *bytes.Buffer, *[]int, *int) {
	var logged bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logged)
	var exits []int
	detaches := 0
	now := time.Unix(1000, 0)
	h := &signalHandler{
		server:    fakeUnmounter{errors.New("device or resource busy")},
		log:       logrus.NewEntry(l),
		openFiles: func() int64 { return open },
		holders:   holders,
		detach:    func() error { detaches++; return nil },
		exit:      func(code int) { exits = append(exits, code) },
		notify:    func(string) {},
		timeout:   time.Second,
		clock:     func() time.Time { now = now.Add(3 * time.Second); return now },
	}
	return h, &logged, &exits, &detaches
}

// TestSignalSequence: the first signal detaches a busy mount, the second
// logs one line with the open files and their holders, the third exits
// with 128 + the signal's number; none of the first two exits.
func TestSignalSequence(t *testing.T) {
	h, logged, exits, detaches := newTestHandler(2, func() []string {
		return []string{"pid 7 (mpv) /mnt/sets/a.mp3", "pid 9 (bash) working directory"}
	})
	h.handle(syscall.SIGTERM)
	if *detaches != 1 || len(*exits) != 0 {
		t.Fatalf("first signal: %d detaches, exits %v; want 1 detach and no exit", *detaches, *exits)
	}
	logged.Reset()
	h.handle(syscall.SIGINT)
	line := strings.TrimSpace(logged.String())
	if strings.Count(line, "\n") != 0 {
		t.Errorf("second signal logged %d lines, want 1:\n%s", strings.Count(line, "\n")+1, line)
	}
	for _, want := range []string{"still waiting for 2 open files", "pid 7 (mpv) /mnt/sets/a.mp3", "pid 9 (bash) working directory", "open_files=2", "a third signal exits now"} {
		if !strings.Contains(line, want) {
			t.Errorf("second signal's line %q lacks %q", line, want)
		}
	}
	if len(*exits) != 0 || *detaches != 1 {
		t.Fatalf("second signal: exits %v, %d detaches", *exits, *detaches)
	}
	logged.Reset()
	h.handle(syscall.SIGTERM)
	if len(*exits) != 1 || (*exits)[0] != 143 {
		t.Fatalf("third signal (SIGTERM): exits %v, want [143]", *exits)
	}
	if !strings.Contains(logged.String(), "exiting now") {
		t.Errorf("third signal's line: %q", logged.String())
	}
}

// TestSignalThirdSIGINT: a third SIGINT exits 130.
func TestSignalThirdSIGINT(t *testing.T) {
	h, _, exits, _ := newTestHandler(0, func() []string { return nil })
	for range 3 {
		h.handle(os.Interrupt)
	}
	if len(*exits) != 1 || (*exits)[0] != 130 {
		t.Fatalf("exits %v, want [130]", *exits)
	}
}

// TestSignalHoldersScanBounded: a holders scan that does not return in
// time leaves the count in the line and does not hold up the handler.
func TestSignalHoldersScanBounded(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	h, logged, _, _ := newTestHandler(1, func() []string { <-block; return nil })
	h.timeout = 50 * time.Millisecond
	h.handle(syscall.SIGTERM)
	logged.Reset()
	start := time.Now()
	h.handle(syscall.SIGTERM)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second signal took %v", d)
	}
	if !strings.Contains(logged.String(), "still waiting for 1 open file to be closed") || !strings.Contains(logged.String(), "not found in time") {
		t.Errorf("line: %q", logged.String())
	}
}

// fakeUploads is a write path's shutdown as the signal handler sees it.
type fakeUploads struct {
	waiting bool
	files   int
	stops   int
	closes  int
}

func (f *fakeUploads) Waiting() bool         { return f.waiting }
func (f *fakeUploads) StopWaiting()          { f.stops++; f.waiting = false }
func (f *fakeUploads) Pending() (int, int64) { return f.files, int64(f.files) << 20 }
func (f *fakeUploads) Close() int            { f.closes++; return f.files }

// TestSignalStopsUploadWait: once the mount is gone and the daemon waits
// for write-back uploads, a signal stops the wait (logged, with what is
// left) and neither unmounts again nor exits nor counts towards the
// third signal.
func TestSignalStopsUploadWait(t *testing.T) {
	h, logged, exits, detaches := newTestHandler(0, nil)
	up := &fakeUploads{waiting: true, files: 2}
	h.uploads = up
	h.handle(syscall.SIGINT)
	if up.stops != 1 || len(*exits) != 0 || *detaches != 0 || h.count != 0 {
		t.Errorf("%d stops, exits %v, %d detaches, count %d", up.stops, *exits, *detaches, h.count)
	}
	for _, want := range []string{"stopped waiting for write-back uploads", "uploads=2", "next start"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %q: %s", want, logged.String())
		}
	}
}

// TestSignalUploadsWhileBusy: while open files hold the mount, the second
// signal's line also names the write-back uploads to wait for after them,
// and the third closes the write path (without waiting for uploads)
// before exiting, logging how many are left for the next start.
func TestSignalUploadsWhileBusy(t *testing.T) {
	h, logged, exits, _ := newTestHandler(1, func() []string { return nil })
	up := &fakeUploads{files: 3}
	h.uploads = up
	h.handle(syscall.SIGTERM)
	logged.Reset()
	h.handle(syscall.SIGTERM)
	if !strings.Contains(logged.String(), "then for 3 write-back uploads (up to --unmount-wait); a third signal exits now") {
		t.Errorf("second signal's line: %s", logged.String())
	}
	logged.Reset()
	h.handle(syscall.SIGTERM)
	if len(*exits) != 1 || up.stops != 1 || up.closes != 1 {
		t.Errorf("third signal: exits %v, %d stops, %d closes", *exits, up.stops, up.closes)
	}
	if !strings.Contains(logged.String(), "uploads_left=3") {
		t.Errorf("exit line: %s", logged.String())
	}
}

// TestSignalUnmountSucceeds: when the mount was not busy the first signal
// does not detach lazily.
func TestSignalUnmountSucceeds(t *testing.T) {
	h, _, exits, detaches := newTestHandler(0, nil)
	h.server = fakeUnmounter{}
	h.handle(syscall.SIGTERM)
	if *detaches != 0 || len(*exits) != 0 {
		t.Fatalf("%d detaches, exits %v", *detaches, *exits)
	}
}

// TestMountHolders reads a proc tree made by the test: fds whose mnt_id
// is the mount's are named with their process and path (shown under the
// mountpoint when the mount is detached), others are not.
func TestMountHolders(t *testing.T) {
	proc := t.TempDir()
	write := func(path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fd := func(pid, n, mnt, target string) {
		t.Helper()
		write(filepath.Join(proc, pid, "fdinfo", n), "pos:\t0\nflags:\t0100000\nmnt_id:\t"+mnt+"\nino:\t5\n")
		os.MkdirAll(filepath.Join(proc, pid, "fd"), 0o755)
		if err := os.Symlink(target, filepath.Join(proc, pid, "fd", n)); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(proc, "100", "comm"), "mpv\n")
	fd("100", "3", "42", "/sets/a.mp3") // detached: relative to the mount's root
	fd("100", "4", "7", "/etc/passwd")  // another mount
	write(filepath.Join(proc, "200", "comm"), "cat\n")
	fd("200", "0", "42", "/mnt/s3/sets/b.mp3") // not detached yet
	write(filepath.Join(proc, "self-not-a-pid", "comm"), "x\n")

	got := strings.Join(mountHolders(proc, 42, "/mnt/s3"), "; ")
	for _, want := range []string{"pid 100 (mpv) /mnt/s3/sets/a.mp3", "pid 200 (cat) /mnt/s3/sets/b.mp3"} {
		if !strings.Contains(got, want) {
			t.Errorf("holders %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "passwd") || strings.Count(got, "pid ") != 2 {
		t.Errorf("holders %q name files of other mounts", got)
	}
}

// TestMountHoldersCapped: past maxHolders the rest are counted.
func TestMountHoldersCapped(t *testing.T) {
	proc := t.TempDir()
	dir := filepath.Join(proc, "55")
	os.MkdirAll(filepath.Join(dir, "fdinfo"), 0o755)
	os.MkdirAll(filepath.Join(dir, "fd"), 0o755)
	for i := range maxHolders + 3 {
		n := filepath.Join(dir, "fdinfo", string(rune('a'+i)))
		os.WriteFile(n, []byte("mnt_id:\t9\n"), 0o644)
		os.Symlink("/f", filepath.Join(dir, "fd", string(rune('a'+i))))
	}
	got := mountHolders(proc, 9, "/m")
	if len(got) != maxHolders+1 || got[maxHolders] != "and 3 more" {
		t.Errorf("holders = %q", got)
	}
}

// TestMountIDOfOwnMount: mountID finds a mount this test makes (a tmpfs,
// as root) and returns -1 for a directory that is not a mount; a file open
// on it and a working directory inside it carry that mount ID.
func TestMountIDOfOwnMount(t *testing.T) {
	plain, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := mountID(plain); got != -1 {
		t.Errorf("mountID of a plain directory = %d, want -1", got)
	}
	dir := mountTmpfs(t, filepath.Join(plain, "mnt"))
	id := mountID(dir)
	if id <= 0 {
		t.Fatalf("mountID of a tmpfs = %d", id)
	}
	f, err := os.Create(filepath.Join(dir, "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, ok := fdinfoMountID("/proc/self/fdinfo/" + strconv.Itoa(int(f.Fd()))); !ok || got != id {
		t.Errorf("fdinfo mnt_id = %d, %v; want %d", got, ok, id)
	}
	if got := cwdMountID("/proc/self/cwd"); got == id {
		t.Errorf("the test's working directory is on the tmpfs")
	}
	t.Chdir(dir)
	if got := cwdMountID("/proc/self/cwd"); got != id {
		t.Errorf("cwdMountID with the working directory inside = %d, want %d", got, id)
	}
}

// TestMountIDEscapedAndStacked: mountID finds a tmpfs on a directory whose
// name holds a space (escaped as \040 in the mount table), and with a second
// tmpfs stacked on the same directory it returns the one on top, the mount
// that a file created there is on. Needs root.
func TestMountIDEscapedAndStacked(t *testing.T) {
	dir := mountTmpfs(t, filepath.Join(t.TempDir(), "with space"))
	below := mountID(dir)
	if below <= 0 {
		t.Fatalf("mountID of a tmpfs named with a space = %d", below)
	}
	mountTmpfs(t, dir)
	top := mountID(dir)
	if top <= 0 || top == below {
		t.Fatalf("mountID with a second tmpfs stacked = %d, the one below is %d", top, below)
	}
	f, err := os.Create(filepath.Join(dir, "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, ok := fdinfoMountID("/proc/self/fdinfo/" + strconv.Itoa(int(f.Fd()))); !ok || got != top {
		t.Errorf("fdinfo mnt_id of a file on the stacked tmpfs = %d, %v; want %d", got, ok, top)
	}
}
