package fs

import (
	"context"
	"errors"
	"strconv"
	"syscall"

	"github.com/bucketfs/bucketfs/store"
)

// Attributes of files on a mount with a disk cache.
const (
	// xattrCached is how many bytes of the file's current version the
	// disk cache holds.
	xattrCached = "user.bucketfs.cached"
	// xattrWarm, when set (to any value), fetches the whole file into the
	// disk cache; the call returns when it is there. Interrupting the
	// calling program stops it.
	xattrWarm = "user.bucketfs.warm"
)

// version is the file's object version with attributes o.
func (f *fileNode) version(o store.Object) ObjectVersion {
	return ObjectVersion{Bucket: f.bucket, Key: f.name(), ETag: o.ETag, Size: o.Size}
}

// cachedXattr answers user.bucketfs.cached without asking the store: it
// describes the version the tree knows now.
func (f *fileNode) cachedXattr(dest []byte) (uint32, syscall.Errno) {
	if f.m.cfg.Disk == nil {
		return 0, syscall.ENODATA
	}
	_, o := f.state()
	v := f.version(o)
	return xattrReply([]byte(strconv.FormatInt(f.m.cfg.Disk.CachedBytes(v), 10)), dest)
}

// warm fetches the file's current version into the disk cache. An
// archived file is refused like an open would be (EACCES, or EAGAIN while
// a restore runs) but no restore is started.
func (f *fileNode) warm(ctx context.Context) syscall.Errno {
	if f.m.cfg.Disk == nil {
		return syscall.ENOTSUP
	}
	if errno := f.checkAccess(ctx, rOK); errno != 0 {
		return errno
	}
	if _, err := f.fresh(ctx); err != nil {
		return toErrno(f.log(), err)
	}
	s, o := f.state()
	switch s {
	case archivedCold:
		return syscall.EACCES
	case restoring:
		return syscall.EAGAIN
	}
	err := f.m.cfg.Disk.Warm(ctx, f.version(o))
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		return syscall.EINTR
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	return toErrno(f.log(), err)
}
