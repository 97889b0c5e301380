package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// The tier command, like restore, works through the mount: setting a
// file's user.s3.storage_class attribute makes the daemon copy the object
// onto itself in that class, server-side; the call returns when the copy
// is done. Reading the attribute first skips files already in the class,
// which cost nothing.
const classAttr = "user.s3.storage_class"

func newTierCmd() *cobra.Command {
	var (
		class string
		jobs  int
	)
	c := &cobra.Command{
		Use:   "tier --class CLASS [--jobs N] PATH...",
		Short: "Move files (or whole directories) of a bucketfs mount to another storage class",
		Long: `Move the files named, and every file under the directories named, to the
storage class CLASS (` + strings.Join(storageClasses, ", ") + `;
each server offers some). The object store copies each object onto itself
in the new class, without the data passing through this machine. Files
already in CLASS are counted and left alone.

A file whose object is archived (GLACIER, DEEP_ARCHIVE) must be restored
before it can move (bucketfs restore). Files the caller may not write fail
with "not yours to change". The exit status is non-zero when any file
failed.`,
		Example: `  bucketfs tier --class GLACIER /mnt/sets/2019
  bucketfs tier --class STANDARD_IA --jobs 8 /mnt/sets/2023 /mnt/sets/2024/old.mp3`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if class == "" {
				return fmt.Errorf("--class is required: one of %s", strings.Join(storageClasses, ", "))
			}
			cls, err := parseStorageClass("--class", class)
			if err != nil {
				return err
			}
			if jobs < 1 || jobs > 64 {
				return fmt.Errorf("--jobs must be from 1 to 64")
			}
			files, err := collectFiles(args)
			if err != nil {
				return err
			}
			return tierFiles(c.OutOrStdout(), progressOut(c.ErrOrStderr()), files, cls, jobs, osClassAttr)
		},
	}
	c.Flags().StringVar(&class, "class", "", "storage class to move the files to")
	c.Flags().IntVar(&jobs, "jobs", 4, "files moved at once")
	return c
}

// classXattr reads and sets a file's storage class; tests inject one.
type classXattr struct {
	get func(path string) (string, error)
	set func(path, class string) error
}

// osClassAttr is the real user.s3.storage_class attribute.
var osClassAttr = classXattr{
	get: func(path string) (string, error) {
		buf := make([]byte, 64)
		n, err := getxattr(path, classAttr, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	},
	set: func(path, class string) error { return setxattr(path, classAttr, []byte(class)) },
}

// tierResult is what became of one file.
type tierResult struct {
	path    string
	already bool
	err     error
}

// tierFiles moves files to class, jobs at a time, with a progress bar of
// files done, then prints a summary and one line per failed file.
func tierFiles(out, progress io.Writer, files []string, class string, jobs int, x classXattr) error {
	if len(files) == 0 {
		fmt.Fprintf(out, "0 moved to %s, 0 already there, 0 failed\n", class)
		return nil
	}
	// A path outside any bucketfs mount fails every file alike: say so once.
	if _, err := x.get(files[0]); isNotBucketfs(err) {
		return fmt.Errorf("%s: %v", files[0], errNotBucketfs)
	}
	bar := progressbar.NewOptions(len(files),
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("moving to "+class),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
	)
	work := make(chan string)
	results := make(chan tierResult)
	var wg sync.WaitGroup
	for range min(jobs, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				results <- tierOne(f, class, x)
			}
		}()
	}
	go func() {
		for _, f := range files {
			work <- f
		}
		close(work)
		wg.Wait()
		close(results)
	}()
	// Only this goroutine tallies: no lock.
	var moved, already int
	var failed []string
	for r := range results {
		switch {
		case r.err != nil:
			failed = append(failed, fmt.Sprintf("%s: %s", r.path, describeTierErr(r.err)))
		case r.already:
			already++
		default:
			moved++
		}
		bar.Add(1)
	}
	bar.Finish()
	slices.Sort(failed)
	fmt.Fprintf(out, "%d moved to %s, %d already there, %d failed\n", moved, class, already, len(failed))
	for _, f := range failed {
		fmt.Fprintln(out, "failed:", f)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d files failed", len(failed), len(files))
	}
	return nil
}

// tierOne moves one file unless it is in class already.
func tierOne(path, class string, x classXattr) tierResult {
	cur, err := x.get(path)
	if err != nil {
		return tierResult{path: path, err: err}
	}
	if strings.EqualFold(strings.TrimSpace(cur), class) {
		return tierResult{path: path, already: true}
	}
	err = x.set(path, class)
	if errors.Is(err, unix.EACCES) {
		// The class read before may be older than the store's: the
		// failed change looked again, so ask once more.
		if now, gerr := x.get(path); gerr == nil {
			cur = now
		}
		if archivedClass(cur) {
			err = errArchived
		}
	}
	return tierResult{path: path, err: err}
}

// errArchived is a file in an archive tier, which S3 cannot copy until
// it is restored.
var errArchived = errors.New("archived: restore it first (bucketfs restore)")

// archivedClass reports whether class is an archive tier whose objects
// must be restored before they are read or copied.
func archivedClass(class string) bool {
	switch strings.ToUpper(strings.TrimSpace(class)) {
	case "GLACIER", "DEEP_ARCHIVE":
		return true
	}
	return false
}

func isNotBucketfs(err error) bool {
	return errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP)
}

// describeTierErr says why a file could not move, in a few words.
func describeTierErr(err error) string {
	switch {
	case errors.Is(err, errArchived):
		return err.Error()
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return "not yours to change"
	case errors.Is(err, unix.EROFS):
		return "the mount is read-only"
	case isNotBucketfs(err):
		return errNotBucketfs.Error()
	case errors.Is(err, unix.EAGAIN):
		return "try again later (a restore running, or the store throttling)"
	case errors.Is(err, unix.ENOENT):
		return "gone"
	}
	return err.Error()
}
