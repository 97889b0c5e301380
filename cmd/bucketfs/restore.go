package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// The restore command works through the mount: it reads each file's
// user.s3.restore attribute and sets it to start a restore, so it needs no
// credentials or connection of its own and acts on exactly what the mount
// shows.
const restoreAttr = "user.s3.restore"

func newRestoreCmd() *cobra.Command {
	var (
		days   int32
		tier   string
		status bool
	)
	c := &cobra.Command{
		Use:   "restore [--days N] [--tier T] [--status] PATH...",
		Short: "Restore archived files (GLACIER, DEEP_ARCHIVE) under PATHs inside a bucketfs mount",
		Long: `Start restores of the archived files named, or of every archived file under
the directories named (recursively). Files already being restored, already
restored, or not archived are counted and left alone. With --status, list the
archived files under PATHs with their state and expiry instead.

A restore takes about an hour on Tigris and hours on AWS; the mount makes the
file readable when it completes, without a remount.`,
		Example: `  bucketfs restore --days 3 /mnt/sets/2019
  bucketfs restore --status /mnt/sets`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if days < 1 || days > 36500 {
				return fmt.Errorf("--days must be from 1 to 36500")
			}
			switch strings.ToLower(tier) {
			case "", "standard", "bulk", "expedited":
			default:
				return fmt.Errorf("--tier must be Standard, Bulk or Expedited, not %q", tier)
			}
			files, err := collectFiles(args)
			if err != nil {
				return err
			}
			if status {
				return restoreStatus(c.OutOrStdout(), files)
			}
			value := strconv.Itoa(int(days))
			if tier != "" {
				value += " " + tier
			}
			return restoreFiles(c.OutOrStdout(), c.ErrOrStderr(), files, value)
		},
	}
	c.Flags().Int32Var(&days, "days", 1, "how many days the restored copy stays readable")
	c.Flags().StringVar(&tier, "tier", "", "retrieval tier: Standard, Bulk or Expedited (AWS; Tigris ignores it)")
	c.Flags().BoolVar(&status, "status", false, "list archived files with their restore state instead of restoring")
	return c
}

// collectFiles expands PATHs into regular files, walking directories.
func collectFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, errors.Unwrap(err))
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walking %s: %v", p, err)
		}
	}
	return files, nil
}

// getRestoreAttr returns a file's user.s3.restore value; "" when the file
// needs no restore.
func getRestoreAttr(path string) (string, error) {
	buf := make([]byte, 256)
	n, err := getxattr(path, restoreAttr, buf)
	switch {
	case errors.Is(err, unix.ENODATA):
		return "", nil
	case errors.Is(err, unix.ENOTSUP):
		return "", fmt.Errorf("not on a bucketfs mount")
	case err != nil:
		return "", err
	}
	return string(buf[:n]), nil
}

// restoreFiles starts restores and prints a summary.
func restoreFiles(out, progress io.Writer, files []string, value string) error {
	bar := progressbar.NewOptions(len(files),
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("restoring"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionClearOnFinish(),
	)
	var started, running, restored, notArchived int
	var failed []string
	for _, f := range files {
		state, err := getRestoreAttr(f)
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", f, err))
		case state == "":
			notArchived++
		case state == "ongoing":
			running++
		case strings.HasPrefix(state, "restored"):
			restored++
		default:
			if err := setxattr(f, restoreAttr, []byte(value)); err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", f, err))
			} else {
				started++
			}
		}
		bar.Add(1)
	}
	bar.Finish()
	fmt.Fprintf(out, "started %d, already running %d, already restored %d, not archived %d, failed %d\n",
		started, running, restored, notArchived, len(failed))
	for _, f := range failed {
		fmt.Fprintln(out, "failed:", f)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d files failed", len(failed), len(files))
	}
	return nil
}

// restoreStatus lists archived files with their state.
func restoreStatus(out io.Writer, files []string) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tEXPIRY\tPATH")
	failed := 0
	for _, f := range files {
		state, err := getRestoreAttr(f)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bucketfs: %s: %v\n", f, err)
			failed++
			continue
		}
		if state == "" {
			continue
		}
		expiry := "-"
		if rest, ok := strings.CutPrefix(state, "restored until "); ok {
			state, expiry = "restored", rest
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", state, expiry, f)
	}
	tw.Flush()
	if failed > 0 {
		return syscall.EIO
	}
	return nil
}

// getxattr and setxattr call the system calls again when a signal the
// process handles (the Go runtime's own among them) interrupts them: the
// kernel then answers EINTR for a request to a FUSE mount, and the x/sys
// wrappers do not retry.
func getxattr(path, attr string, buf []byte) (int, error) {
	for {
		n, err := unix.Getxattr(path, attr, buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func setxattr(path, attr string, value []byte) error {
	for {
		if err := unix.Setxattr(path, attr, value, 0); err != unix.EINTR {
			return err
		}
	}
}
