package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Signals while mounted. The first SIGINT or SIGTERM unmounts; when files
// are open the mount is detached lazily and the daemon serves them until the
// last one is closed, then exits 0. A second signal logs one line naming
// what it waits for (open files, and the processes that hold them or whose
// working directory is inside). A third exits at once with 128 + the
// signal's number, as a shell reports a process the signal ended; reads of
// files still open then fail (ENOTCONN).
//
// Once the mount is gone, the daemon waits up to --unmount-wait for
// pending write-back uploads: a signal then stops the wait at once, and
// what is left is uploaded at the next start. Exiting at once (the third
// signal) closes the write path first, without waiting for uploads, for
// at most timeout.

// uploadWaiter is what the signal handler needs of the write path's
// shutdown (an *uploadDrain).
type uploadWaiter interface {
	// Waiting reports whether the daemon waits for uploads now.
	Waiting() bool
	// StopWaiting ends that wait, or the one to come.
	StopWaiting()
	// Pending is the write-back uploads not finished.
	Pending() (files int, bytes int64)
	// Close closes the write path and returns the uploads left.
	Close() int
}

// unmounter is what the signal handler needs of the mount.
type unmounter interface {
	Unmount() error
}

// signalHandler serves the signals of one mount.
type signalHandler struct {
	// Dependencies
	server    unmounter
	log       *logrus.Entry
	openFiles func() int64     // files open on the mount now
	holders   func() []string  // processes holding the mount, described
	detach    func() error     // lazy unmount
	exit      func(code int)   // os.Exit, or a recorder in tests
	notify    func(string)     // sd_notify
	timeout   time.Duration    // how long a holders scan may take
	clock     func() time.Time // time.Now
	uploads   uploadWaiter     // nil on a read-only mount

	// Mutable state (the handler's goroutine only, so no lock)
	count    int
	detached time.Time
}

// serve handles signals from sigs until the process ends.
func (h *signalHandler) serve(sigs <-chan os.Signal) {
	for sig := range sigs {
		h.handle(sig)
	}
}

func (h *signalHandler) handle(sig os.Signal) {
	log := h.log.WithField("signal", sig.String())
	if h.uploads != nil && h.uploads.Waiting() {
		files, bytes := h.uploads.Pending()
		log.WithFields(logrus.Fields{"uploads": files, "bytes": bytes}).
			Warn("stopped waiting for write-back uploads; what is left is uploaded at the next start")
		h.uploads.StopWaiting()
		return
	}
	h.count++
	switch h.count {
	case 1:
		log.Info("unmounting")
		h.notify("STOPPING=1")
		if err := h.server.Unmount(); err != nil {
			// Busy (files open): detach now; the kernel finishes the
			// unmount when the last file closes.
			if err := h.detach(); err != nil {
				log.WithError(err).Error("lazy unmount failed")
				return
			}
			h.detached = h.clock()
			log.WithField("open_files", h.openFiles()).
				Warn("mount busy: detached it; bucketfs exits when the last open file is closed (signal again to see what holds it, a third time to exit now)")
		}
	case 2:
		msg := h.waitingFor()
		log.WithField("open_files", h.openFiles()).Warn(msg + "; a third signal exits now")
	default:
		code := 128
		if s, ok := sig.(syscall.Signal); ok {
			code += int(s)
		}
		fields := logrus.Fields{"open_files": h.openFiles(), "exit_status": code}
		if h.uploads != nil {
			fields["uploads_left"] = h.closeUploads()
		}
		log.WithFields(fields).
			Error("exiting now, without waiting for open files: their reads fail from here on")
		h.exit(code)
	}
}

// closeUploads closes the write path without waiting for uploads, for at
// most h.timeout: pending write-back uploads stay in the journal, and a
// private staging directory is removed. It returns the uploads left, or -1
// when closing took too long.
func (h *signalHandler) closeUploads() int {
	h.uploads.StopWaiting()
	done := make(chan int, 1)
	go func() { done <- h.uploads.Close() }()
	select {
	case left := <-done:
		return left
	case <-time.After(h.timeout):
		return -1
	}
}

// waitingFor says what the unmount waits for, in one sentence.
func (h *signalHandler) waitingFor() string {
	n := h.openFiles()
	var what string
	if n == 1 {
		what = "1 open file"
	} else {
		what = fmt.Sprintf("%d open files", n)
	}
	since := ""
	if !h.detached.IsZero() {
		since = fmt.Sprintf(" (detached %s ago)", h.clock().Sub(h.detached).Round(time.Second))
	}
	msg := "still waiting for " + what + " to be closed" + since
	// The scan reads /proc; bound it so a stuck process cannot hold up
	// the next signal.
	done := make(chan []string, 1)
	go func() { done <- h.holders() }()
	select {
	case hs := <-done:
		if len(hs) > 0 {
			msg += ", held by " + strings.Join(hs, ", ")
		}
	case <-time.After(h.timeout):
		msg += " (the processes holding them were not found in time)"
	}
	if h.uploads != nil {
		if files, _ := h.uploads.Pending(); files > 0 {
			msg += fmt.Sprintf("; then for %d write-back uploads (up to --unmount-wait)", files)
		}
	}
	return msg
}

// maxHolders caps how many holders the waiting line names.
const maxHolders = 8

// mountHolders describes the processes (other than this one) with files
// open on the mount whose mount ID is mntID, or their working directory
// inside it, reading proc (normally /proc): "pid 123 (cat) /a/b.mp3". Paths
// are relative to the mount's root, shown under mountpoint. It touches no
// file of any mount: fd numbers come from fdinfo's mnt_id, and working
// directories are opened O_PATH, which asks no filesystem.
func mountHolders(proc string, mntID int, mountpoint string) []string {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	self := strconv.Itoa(os.Getpid())
	var out []string
	more := 0
	add := func(s string) {
		if len(out) < maxHolders {
			out = append(out, s)
		} else {
			more++
		}
	}
	for _, e := range ents {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil || pid == self {
			continue
		}
		dir := filepath.Join(proc, pid)
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		who := fmt.Sprintf("pid %s (%s)", pid, strings.TrimSpace(string(comm)))
		fds, _ := os.ReadDir(filepath.Join(dir, "fdinfo"))
		for _, fd := range fds {
			if id, ok := fdinfoMountID(filepath.Join(dir, "fdinfo", fd.Name())); ok && id == mntID {
				target, _ := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
				add(who + " " + underMount(mountpoint, target))
			}
		}
		if cwdMountID(filepath.Join(dir, "cwd")) == mntID {
			add(who + " working directory")
		}
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("and %d more", more))
	}
	return out
}

// underMount shows path (relative to the root of a detached mount) under
// the mountpoint it was detached from.
func underMount(mountpoint, path string) string {
	if path == "" {
		return mountpoint
	}
	if strings.HasPrefix(path, mountpoint+"/") || path == mountpoint {
		return path // not detached yet
	}
	return filepath.Join(mountpoint, path)
}

// fdinfoMountID reads the mnt_id line of a /proc/PID/fdinfo/N file.
func fdinfoMountID(path string) (int, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "mnt_id:"); ok {
			id, err := strconv.Atoi(strings.TrimSpace(v))
			return id, err == nil
		}
	}
	return 0, false
}

// cwdMountID returns the mount ID of the directory the /proc/PID/cwd link
// points to, or -1.
func cwdMountID(link string) int {
	fd, err := unix.Open(link, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	defer unix.Close(fd)
	id, ok := fdinfoMountID(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if !ok {
		return -1
	}
	return id
}

// mountID returns the mount ID (the first field of /proc/self/mountinfo)
// of the mount at dir, or -1.
func mountID(dir string) int {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != dir, false
	})
	if err != nil || len(mounts) == 0 {
		return -1
	}
	// Mounts stacked on one directory: the last one listed is on top.
	return mounts[len(mounts)-1].ID
}
