package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// The warm command, like restore, works through the mount. Setting the
// user.bucketfs.warm attribute of a file makes the daemon fetch the whole
// file into its disk cache; the setxattr call returns when the file is
// there, and interrupting it (Ctrl-C) makes the kernel interrupt the
// request, which stops the daemon's work on it. Progress is read from each
// file's user.bucketfs.cached attribute. No data passes through the
// kernel's page cache or this process, and no credentials are needed.
const (
	warmAttr   = "user.bucketfs.warm"
	cachedAttr = "user.bucketfs.cached"
)

func newWarmCmd() *cobra.Command {
	var jobs int
	c := &cobra.Command{
		Use:   "warm [--jobs N] PATH...",
		Short: "Fetch files (or whole directories) of a bucketfs mount into its disk cache",
		Long: `Fetch the files named, and every file under the directories named, into the
disk cache (--cache-dir) of the bucketfs mount they live in, so later reads
make no requests to the object store, even after the daemon restarts.

Files already cached are counted and cost nothing; archived files (GLACIER,
DEEP_ARCHIVE) are skipped and counted. Interrupting it is safe: what was
fetched stays cached and the rest is left for the next run.`,
		Example: `  bucketfs warm /mnt/sets/2024
  bucketfs warm --jobs 8 /mnt/data/train`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if jobs < 1 || jobs > 64 {
				return fmt.Errorf("--jobs must be from 1 to 64")
			}
			files, err := collectFiles(args)
			if err != nil {
				return err
			}
			return warmFiles(c.OutOrStdout(), c.ErrOrStderr(), files, jobs)
		},
	}
	c.Flags().IntVar(&jobs, "jobs", 4, "files fetched at once")
	return c
}

// warmFile is one file to warm.
type warmFile struct {
	path   string
	size   int64
	cached int64 // bytes in the cache when last looked
}

// cachedBytes reads a file's user.bucketfs.cached attribute.
func cachedBytes(path string) (int64, error) {
	buf := make([]byte, 32)
	n, err := getxattr(path, cachedAttr, buf)
	switch {
	case errors.Is(err, unix.ENODATA):
		return 0, errNoDiskCache
	case errors.Is(err, unix.ENOTSUP):
		return 0, errNotBucketfs
	case err != nil:
		return 0, err
	}
	return strconv.ParseInt(string(buf[:n]), 10, 64)
}

var (
	errNoDiskCache = errors.New("the mount has no disk cache (mount it with --cache-dir)")
	errNotBucketfs = errors.New("not on a bucketfs mount")
)

// warmFiles warms files, jobs at a time, with a progress bar in bytes.
func warmFiles(out, progress io.Writer, paths []string, jobs int) error {
	var (
		todo                   []*warmFile
		total, already         int64
		archived, alreadyFiles int
		failed                 []string
	)
	for _, p := range paths {
		state, err := getRestoreAttr(p)
		if err == nil && state != "" && !strings.HasPrefix(state, "restored") {
			archived++
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", p, errors.Unwrap(err)))
			continue
		}
		got, err := cachedBytes(p)
		if errors.Is(err, errNoDiskCache) || errors.Is(err, errNotBucketfs) {
			return fmt.Errorf("%s: %v", p, err)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		if got >= fi.Size() {
			alreadyFiles++
			already += fi.Size()
			continue
		}
		todo = append(todo, &warmFile{path: p, size: fi.Size(), cached: got})
		total += fi.Size()
		already += got
	}

	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription(fmt.Sprintf("warming %d files", len(todo))),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	// Mutable state, shared by the workers and report. Once the workers
	// start, mu also guards archived and failed.
	var (
		mu      sync.Mutex             // protects the following
		active  = map[*warmFile]bool{} // GUARDED_BY(mu); files being warmed now
		doneB   int64                  // GUARDED_BY(mu); bytes of files finished
		warmed  int                    // GUARDED_BY(mu)
		fetched int64                  // GUARDED_BY(mu)
	)
	// report sets the bar to the bytes cached so far: finished files plus
	// what the daemon holds of the files under way.
	report := func() {
		mu.Lock()
		n := doneB
		bar.Describe(fmt.Sprintf("warming %d/%d files", warmed+len(failed), len(todo)))
		var running []*warmFile
		for f := range active {
			running = append(running, f)
		}
		mu.Unlock()
		for _, f := range running {
			if got, err := cachedBytes(f.path); err == nil {
				n += min(got, f.size)
			}
		}
		bar.Set64(min(n, total))
	}

	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(interrupted)
	work := make(chan *warmFile)
	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				mu.Lock()
				active[f] = true
				mu.Unlock()
				err := setxattr(f.path, warmAttr, []byte("1"))
				mu.Lock()
				delete(active, f)
				switch {
				case err == nil:
					warmed++
					fetched += f.size - f.cached
					doneB += f.size
				case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EAGAIN):
					archived++ // archived since we looked
				default:
					failed = append(failed, fmt.Sprintf("%s: %v", f.path, err))
				}
				mu.Unlock()
			}
		}()
	}
	// The feeder stops when told; only this goroutine reads signals.
	finished, stopFeeding := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for _, f := range todo {
			select {
			case work <- f:
			case <-stopFeeding:
				return
			}
		}
	}()
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	stopped := false
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-ticker.C:
			report()
		case <-interrupted:
			stopped = true
			close(stopFeeding)
			break wait
		}
	}
	if !stopped {
		close(work)
		allDone := make(chan struct{})
		go func() { wg.Wait(); close(allDone) }()
	drain:
		for {
			select {
			case <-allDone:
				break drain
			case <-ticker.C:
				report()
			case <-interrupted:
				stopped = true
				break drain
			}
		}
	}
	report()
	bar.Finish()

	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(out, "warmed %d files (%s fetched), already cached %d, archived (skipped) %d, failed %d\n",
		warmed, humanize.IBytes(uint64(fetched)), alreadyFiles, archived, len(failed))
	for _, f := range failed {
		fmt.Fprintln(out, "failed:", f)
	}
	if stopped {
		// Files under way stop when this process exits: the kernel
		// interrupts their requests and the daemon drops the work.
		fmt.Fprintf(out, "interrupted: %d files not finished; run the same command again to go on\n", len(todo)-warmed-len(failed))
		return errors.New("interrupted")
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d files failed", len(failed), len(paths))
	}
	return nil
}
