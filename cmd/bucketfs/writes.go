package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The write path's wiring: its options from the flags, the free-space
// floor of its staging disk, the Tigris rename switch, and its shutdown.

// privateMinFree is the free space the write path leaves on the
// filesystem of its private staging directory (no --cache-dir): 1 GiB,
// or a tenth of a filesystem smaller than 10 GiB (a small /tmp on tmpfs
// keeps nine tenths for staging rather than refusing every write).
const privateMinFree = 1 << 30

// writeDir is where the write path keeps staging files and, with
// --write-back, its journal: DIR/writes under --cache-dir (next to the
// block cache, whose lock keeps a second daemon out of both), else empty,
// which makes the write path use a private temporary directory.
func writeDir(o *mountOptions) string {
	if o.CacheDir == "" {
		return ""
	}
	return filepath.Join(o.CacheDir, "writes")
}

// journalDir names the write-back journal, for messages.
func journalDir(o *mountOptions) string {
	return filepath.Join(writeDir(o), "journal")
}

// writeOptions are the write path's options from the mount's flags.
// statfs reports a filesystem's size in bytes (fsTotal, or a stub in
// tests).
func writeOptions(o *mountOptions, st store.Store, log *logrus.Logger, statfs func(dir string) (int64, error)) write.Options {
	return write.Options{
		Store:        st,
		Log:          log.WithField("component", "write"),
		Dir:          writeDir(o),
		WriteBack:    o.WriteBack,
		PartSize:     o.WritePartSize,
		MaxUploads:   o.MaxUploads,
		MinFree:      writeMinFree(o, statfs),
		StorageClass: o.StorageClass,
	}
}

// writeMinFree is the staging disk's floor: with --cache-dir, the disk
// cache's own (--cache-min-free: the larger of the size and the
// percentage of the cache filesystem, computed as the cache computes it),
// so staging files and cached blocks share one floor; without it,
// privateMinFree on the temporary directory's filesystem. A filesystem
// whose size cannot be read gets the absolute part alone.
func writeMinFree(o *mountOptions, statfs func(dir string) (int64, error)) int64 {
	if o.CacheDir == "" {
		total, err := statfs(os.TempDir())
		if err != nil {
			return privateMinFree
		}
		return min(privateMinFree, total/10)
	}
	total, err := statfs(o.CacheDir)
	if err != nil {
		return o.CacheMinFree
	}
	return max(o.CacheMinFree, int64(float64(total)*o.CacheMinFreePercent/100))
}

// fsTotal returns the size in bytes of the filesystem holding dir.
func fsTotal(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * st.Bsize, nil
}

// resolveTigrisRename turns --tigris-rename into on or off. For auto it
// asks the store, which knows Tigris by its endpoint or, behind a custom
// domain, by the Server header of an answer: so it is asked after the
// start-up check has made a request.
func resolveTigrisRename(mode string, tigris func() bool) bool {
	switch mode {
	case "on":
		return true
	case "off":
		return false
	}
	return tigris()
}

// writeCloser is what the shutdown needs of the write path (a
// *write.Manager).
type writeCloser interface {
	Close(ctx context.Context) (left int)
	Pending() (files int, bytes int64)
}

// uploadDrain closes the write path when the daemon stops. Unmounting
// waits up to --unmount-wait for the pending write-back uploads, and a
// signal during that wait ends it at once (the signal handler calls
// StopWaiting). What is left stays in the journal and is uploaded at the
// next start, which a warning line says with the journal's directory.
//
// Under systemd, whose stop timeout (TimeoutStopSec) may be shorter than
// --unmount-wait, the wait asks for more time (EXTEND_TIMEOUT_USEC) rather
// than be killed half-way: nothing would be lost (the journal holds it),
// but the warning line would be.
type uploadDrain struct {
	// Dependencies
	w      writeCloser
	log    *logrus.Entry
	notify func(state string) // sd_notify

	// Constant data
	wait    time.Duration
	journal string // journal directory, for the warning; "" without write-back

	// Mutable state
	waiting   atomic.Bool   // Close is waiting for uploads
	stop      chan struct{} // closed by StopWaiting
	stopOnce  sync.Once
	closeOnce sync.Once
	left      int // written once under closeOnce
}

func newUploadDrain(w writeCloser, log *logrus.Entry, notify func(string), wait time.Duration, journal string) *uploadDrain {
	return &uploadDrain{w: w, log: log, notify: notify, wait: wait, journal: journal, stop: make(chan struct{})}
}

// stopSlack is the time beyond --unmount-wait asked of systemd for the
// rest of the shutdown.
const stopSlack = 15 * time.Second

// Close closes the write path once, waiting for pending uploads as
// configured; later calls wait for the first and return its result. It
// returns how many uploads were left for the next start.
func (d *uploadDrain) Close() int {
	d.closeOnce.Do(func() {
		files, bytes := d.w.Pending()
		ctx, cancel := context.WithTimeout(context.Background(), d.wait)
		defer cancel()
		if files > 0 && d.wait > 0 {
			d.notify(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", (d.wait + stopSlack).Microseconds()))
		}
		if files > 0 {
			d.log.WithFields(logrus.Fields{"uploads": files, "bytes": bytes, "unmount_wait": d.wait}).
				Info("waiting for pending write-back uploads (a signal stops waiting; what is left goes at the next start)")
		}
		go func() {
			select {
			case <-d.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		d.waiting.Store(true)
		d.left = d.w.Close(ctx)
		d.waiting.Store(false)
		if d.left > 0 {
			d.log.WithFields(logrus.Fields{"uploads_left": d.left, "journal": d.journal}).
				Warn("write-back uploads not finished; they are uploaded at the next start with this --cache-dir")
		} else if files > 0 {
			d.log.Info("all write-back uploads finished")
		}
	})
	return d.left
}

// Waiting reports whether Close is waiting for uploads now.
func (d *uploadDrain) Waiting() bool { return d.waiting.Load() }

// StopWaiting makes Close, running or to come, stop waiting for uploads.
func (d *uploadDrain) StopWaiting() { d.stopOnce.Do(func() { close(d.stop) }) }

// Pending is the write-back uploads not finished.
func (d *uploadDrain) Pending() (int, int64) { return d.w.Pending() }
