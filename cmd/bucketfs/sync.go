package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// The sync command, like restore and warm, works through the mount: it
// reads the root's user.bucketfs.stats attribute (the daemon's counters as
// JSON) until the write path's write_pending_files gauge is 0. It needs no
// socket and no credentials, and it never changes anything: uploads go on
// in the daemon whether sync runs or not.
const (
	statsAttr          = "user.bucketfs.stats"
	statPendingFiles   = "write_pending_files"
	statPendingBytes   = "write_pending_bytes"
	syncPollInterval   = 200 * time.Millisecond
	maxStatsAttrLength = 1 << 20
)

func newSyncCmd() *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "sync [--timeout D] MOUNTPOINT",
		Short: "Wait until a bucketfs mount has no pending write-back uploads",
		Long: `Wait until every file closed on the bucketfs mount at MOUNTPOINT is in the
object store. With --write-back, closing a file returns once its bytes are
on local disk and the upload goes on in the background: sync waits for those
uploads (a progress bar on a terminal shows the bytes sent of those pending
when it started), then prints one line. Files written while it waits are
waited for too.

A mount without --write-back uploads a file before close returns, so sync
returns at once with "nothing pending". With --timeout, sync gives up after
that long with a non-zero exit; the uploads go on.`,
		Example: `  cp -r /data/takes /mnt/rec/ && bucketfs sync /mnt/rec
  bucketfs sync --timeout 10m /mnt/rec`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if timeout < 0 {
				return fmt.Errorf("--timeout must not be negative")
			}
			mnt := args[0]
			w := &syncWaiter{
				read:     func() (map[string]int64, error) { return readStats(mnt) },
				interval: syncPollInterval,
				timeout:  timeout,
				now:      time.Now,
				sleep:    time.Sleep,
			}
			return w.wait(c.OutOrStdout(), progressOut(c.ErrOrStderr()), mnt)
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 0, "give up (non-zero exit) after this long; 0: wait as long as it takes")
	return c
}

// readStats reads the counters of the bucketfs mount whose root is mnt.
func readStats(mnt string) (map[string]int64, error) {
	buf := make([]byte, 16<<10)
	for {
		n, err := getxattr(mnt, statsAttr, buf)
		switch {
		case errors.Is(err, unix.ERANGE) && len(buf) < maxStatsAttrLength:
			buf = make([]byte, 4*len(buf)) // the counters grew
			continue
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, errNotMountRoot
		case err != nil:
			return nil, err
		}
		var stats map[string]int64
		if err := json.Unmarshal(buf[:n], &stats); err != nil {
			return nil, fmt.Errorf("%s: %v", statsAttr, err)
		}
		return stats, nil
	}
}

var errNotMountRoot = errors.New("not the root of a bucketfs mount (it has no " + statsAttr + " attribute)")

// syncWaiter waits for a mount's write-back uploads.
type syncWaiter struct {
	// Dependencies
	read  func() (map[string]int64, error) // the mount's counters
	now   func() time.Time
	sleep func(time.Duration)

	// Constant data
	interval time.Duration // between reads of the counters
	timeout  time.Duration // 0: no limit
}

// wait polls the counters until nothing is pending, drawing a bar of the
// bytes uploaded on progress, then prints one line on out. It fails when
// the counters cannot be read or when the timeout passes.
func (w *syncWaiter) wait(out, progress io.Writer, mnt string) error {
	start := w.now()
	stats, err := w.read()
	if err != nil {
		return fmt.Errorf("%s: %w", mnt, err)
	}
	files, hasFiles := stats[statPendingFiles]
	bytes, hasBytes := stats[statPendingBytes]
	if !hasFiles || !hasBytes {
		fmt.Fprintln(out, "nothing pending: the mount writes nothing (--read-only)")
		return nil
	}
	if files == 0 {
		fmt.Fprintln(out, "nothing pending")
		return nil
	}
	// total is the pending bytes at start plus those that arrived since;
	// done only grows, so the bar never goes back.
	startFiles, total, done := files, bytes, int64(0)
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("uploading "+nFiles(files)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(syncPollInterval),
		progressbar.OptionClearOnFinish(),
	)
	for {
		elapsed := w.now().Sub(start)
		if w.timeout > 0 && elapsed >= w.timeout {
			bar.Exit()
			return fmt.Errorf("timed out after %s: %s (%s) still pending on %s; they go on uploading in the background",
				w.timeout, nFiles(files), humanize.IBytes(uint64(bytes)), mnt)
		}
		pause := w.interval
		if w.timeout > 0 {
			pause = min(pause, w.timeout-elapsed)
		}
		w.sleep(pause)
		prevFiles := files
		if stats, err = w.read(); err != nil {
			bar.Exit()
			return fmt.Errorf("%s: %w", mnt, err)
		}
		files, bytes = stats[statPendingFiles], stats[statPendingBytes]
		if files > prevFiles {
			startFiles += files - prevFiles // written while we wait
		}
		done = max(done, total-bytes)
		if bytes > total-done {
			total = done + bytes
			bar.ChangeMax64(total)
		}
		bar.Describe("uploading " + nFiles(files))
		bar.Set64(done)
		if files == 0 {
			bar.Finish()
			fmt.Fprintf(out, "synced: %s (%s) uploaded in %s\n",
				nFiles(startFiles), humanize.IBytes(uint64(total)), w.now().Sub(start).Round(100*time.Millisecond))
			return nil
		}
	}
}

// nFiles is "1 file", "2 files".
func nFiles(n int64) string {
	if n == 1 {
		return "1 file"
	}
	return fmt.Sprintf("%d files", n)
}
