package csi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// fsType is what /proc/self/mountinfo says of a bucketfs mount.
const fsType = "fuse.bucketfs"

// mountState is what a target path is.
type mountState int

const (
	notMounted   mountState = iota // no mount at the path
	serving                        // a bucketfs mount that answers
	dead                           // a FUSE mount whose daemon is gone (ENOTCONN)
	unresponsive                   // a mount whose root does not answer in time
	foreign                        // a mount of something else
)

func (s mountState) String() string {
	return [...]string{"not mounted", "serving", "dead", "unresponsive", "another filesystem"}[s]
}

// mountChecker inspects and unmounts targets. Its functions are variables
// so unit tests can stand in for the kernel.
type mountChecker struct {
	// mounts lists the filesystem types mounted at path, bottom first.
	mounts func(path string) ([]string, error)
	// stat probes the mount at path: stat(2), then statfs(2). The kernel
	// answers a stat of a FUSE root from its attribute cache, for as long
	// as the daemon said it may (bucketfs: the metadata TTL), even after
	// the daemon died; statfs always asks the daemon (bucketfs answers it
	// itself, without the store), so a dead one fails it at once with
	// ENOTCONN.
	stat func(path string) error
	// unmount is umount2(2).
	unmount func(path string, flags int) error
	// statTimeout bounds the stat of a mount's root: a daemon that is
	// alive but stuck must not hang the RPC.
	statTimeout time.Duration
}

func newMountChecker() *mountChecker {
	return &mountChecker{
		mounts: func(path string) ([]string, error) {
			ms, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
				return m.Mountpoint != path, false
			})
			if err != nil {
				return nil, err
			}
			types := make([]string, len(ms))
			for i, m := range ms {
				types[i] = m.FSType
			}
			return types, nil
		},
		stat: func(path string) error {
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil {
				return err
			}
			var fs unix.Statfs_t
			return unix.Statfs(path, &fs)
		},
		unmount:     unix.Unmount,
		statTimeout: 5 * time.Second,
	}
}

// check tells what target is: not a mount; a bucketfs mount that serves
// (mountinfo shows fuse.bucketfs on top and a stat and a statfs of its root
// work); dead (they fail with ENOTCONN or ECONNABORTED: the daemon was
// killed or crashed, the kernel still has the mount); unresponsive; or
// another filesystem.
func (c *mountChecker) check(target string) (mountState, error) {
	types, err := c.mounts(filepath.Clean(target))
	if err != nil {
		return notMounted, fmt.Errorf("reading the mount table: %v", err)
	}
	if len(types) == 0 {
		return notMounted, nil
	}
	top := types[len(types)-1]
	errc := make(chan error, 1)
	go func() { errc <- c.stat(target) }()
	select {
	case err = <-errc:
	case <-time.After(c.statTimeout):
		return unresponsive, fmt.Errorf("stat %s did not answer within %s", target, c.statTimeout)
	}
	switch {
	case errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED):
		return dead, nil
	case err != nil:
		return unresponsive, fmt.Errorf("stat %s: %v", target, err)
	case top != fsType:
		return foreign, nil
	}
	return serving, nil
}

// unmountAll removes every mount stacked at target: a plain unmount for a
// mount that serves (the daemon then exits on its own, after its uploads),
// a lazy one (MNT_DETACH, umount -l) for a dead or busy one, which the
// kernel cleans once nothing uses it. A FUSE mount needs no daemon to be
// detached.
func (c *mountChecker) unmountAll(target string, lazy bool) error {
	target = filepath.Clean(target)
	for range 16 {
		types, err := c.mounts(target)
		if err != nil {
			return fmt.Errorf("reading the mount table: %v", err)
		}
		if len(types) == 0 {
			return nil
		}
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		err = c.unmount(target, flags)
		switch {
		case err == nil, errors.Is(err, syscall.EINVAL), errors.Is(err, os.ErrNotExist):
		case errors.Is(err, syscall.EBUSY) && !lazy:
			lazy = true // files still open: detach
		case !lazy:
			lazy = true // a dead mount can fail a plain unmount
		default:
			return fmt.Errorf("unmounting %s: %v", target, err)
		}
	}
	return fmt.Errorf("%s: still mounted after 16 unmounts", target)
}
