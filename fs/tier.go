package fs

import (
	"context"
	"errors"
	"strings"
	"syscall"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
)

// xattrPending is a file's attribute giving the bytes that wait to be
// stored: a write-back upload pending, or a file being written.
const xattrPending = "user.bucketfs.pending"

// storageClasses are the classes setting user.s3.storage_class takes.
var storageClasses = map[string]bool{
	"STANDARD": true, "STANDARD_IA": true, "ONEZONE_IA": true, "INTELLIGENT_TIERING": true,
	"GLACIER": true, "GLACIER_IR": true, "DEEP_ARCHIVE": true, "REDUCED_REDUNDANCY": true,
}

// setClass moves the object to another storage class by a server-side
// copy onto itself, keeping its metadata. Only a caller who may write the
// file may (bucketfs tier uses this). An archived object must be
// restored first: S3 cannot copy it.
func (f *fileNode) setClass(ctx context.Context, class string) syscall.Errno {
	class = strings.ToUpper(strings.TrimSpace(class))
	if !storageClasses[class] {
		f.log().WithField("class", class).Warn("unknown storage class for user.s3.storage_class (EINVAL)")
		return syscall.EINVAL
	}
	if !f.m.writable() {
		return syscall.EROFS
	}
	if errno := f.checkAccess(ctx, wOK); errno != 0 {
		f.log().WithField("uid", callerUID(ctx)).Warn("storage class change refused: the caller may not write the file")
		return errno
	}
	if w := f.writer(); w != nil && w.Changed() {
		return syscall.EBUSY // being written: its object is not there yet
	}
	o, err := f.revalidate(ctx)
	if err != nil {
		return toErrno(f.log(), err)
	}
	cur := o.StorageClass
	if cur == "" {
		cur = "STANDARD"
	}
	if cur == class {
		return 0
	}
	if s, _ := f.state(); !s.readable() || (store.Archived(cur) && !o.Restore.Readable(f.m.now())) {
		f.log().WithField("class", class).Warn("storage class change of an archived object: restore it first (EACCES)")
		return syscall.EACCES
	}
	// A copy onto itself must change something S3 compares: the class
	// does, and the metadata is sent again so servers that insist on a
	// REPLACE directive take it too.
	key := f.name()
	n, err := f.m.cfg.Writer.Copy(context.WithoutCancel(ctx), write.CopySpec{SrcBucket: f.bucket, Src: o, Bucket: f.bucket, Key: key, ReplaceMetadata: true, Metadata: o.Metadata, StorageClass: class})
	if err != nil {
		if errors.Is(err, store.ErrInvalidObjectState) {
			return syscall.EACCES
		}
		return f.writeErrno(err, "set storage class")
	}
	f.log().WithField("class", class).Info("storage class changed")
	// What the store says now (an archive tier may show at once or
	// later): the file turns unreadable (mode 0000) as soon as it does.
	if _, err := f.revalidate(ctx); err != nil {
		n.StorageClass = class
		f.setMeta(n, f.m.now(), true)
	}
	f.invalidate()
	return 0
}
