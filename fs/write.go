package fs

import (
	"context"
	"errors"
	"io"
	"maps"
	"strconv"
	"sync"
	"syscall"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Writes. A file opened for writing gets a write.File (its staged
// content) that lives on the fileNode as long as any handle of the file
// is open or a write-back upload of it is pending; every read of the
// file goes through it meanwhile, so readers see what was written and
// stat shows the size it has now. close() commits it (FUSE Flush: the
// kernel ignores Release's result), and so does fsync(); both return
// only once the store acknowledged the object (or, with --write-back,
// once the bytes are safe in the journal), and fail with EIO otherwise.

// writeHandle is one open of a file for writing.
type writeHandle struct {
	// Dependencies
	node *fileNode
	w    *write.File

	// Constant data
	append bool // O_APPEND: every write goes to the end
	read   bool // O_RDWR

	// Mutable state
	mu       sync.Mutex // protects the following
	released bool       // GUARDED_BY(mu)
}

var (
	_ = (gofs.FileReader)((*writeHandle)(nil))
	_ = (gofs.FileWriter)((*writeHandle)(nil))
	_ = (gofs.FileFlusher)((*writeHandle)(nil))
	_ = (gofs.FileFsyncer)((*writeHandle)(nil))
	_ = (gofs.FileReleaser)((*writeHandle)(nil))
	_ = (gofs.FileAllocater)((*writeHandle)(nil))
)

// openWrite opens f for writing (O_WRONLY, O_RDWR or O_TRUNC).
func (f *fileNode) openWrite(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if !f.m.writable() {
		return nil, 0, syscall.EROFS
	}
	want := uint32(wOK)
	if flags&syscall.O_ACCMODE == syscall.O_RDWR || flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		want |= rOK
	}
	o, err := f.fresh(ctx)
	if err != nil {
		return nil, 0, toErrno(f.log(), err)
	}
	if errno := f.checkAccess(ctx, want); errno != 0 {
		return nil, 0, errno
	}
	trunc := flags&syscall.O_TRUNC != 0
	if s, _ := f.state(); !s.readable() && !trunc {
		// Its bytes cannot be read or copied until restored; replacing
		// them (O_TRUNC) needs neither.
		return nil, 0, f.unreadableErrno(ctx, s, o)
	}
	w, errno := f.stage(ctx, trunc)
	if errno != 0 {
		return nil, 0, errno
	}
	if trunc {
		if err := w.Truncate(ctx, 0); err != nil {
			w.Release()
			return nil, 0, f.writeErrno(err, "truncate")
		}
		f.touch(w)
	}
	f.opened(true)
	h := &writeHandle{node: f, w: w, append: flags&syscall.O_APPEND != 0, read: want&rOK != 0}
	// No FOPEN_KEEP_CACHE: the kernel drops pages it holds of an earlier
	// version; from here on it keeps the pages written through it.
	return h, 0, 0
}

// stage returns f's staged content with a reference for the caller,
// making it on first use from the object (nothing of it is fetched until
// read or needed). With fresh, a new file starts empty.
func (f *fileNode) stage(ctx context.Context, empty bool) (*write.File, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.w != nil {
		f.w.Retain()
		return f.w, 0
	}
	o := f.meta
	var base *store.Object
	if !empty && o.ETag != "" {
		base = &o
	}
	meta := maps.Clone(o.Metadata)
	if meta == nil && base != nil && f.headAt.IsZero() {
		// The listing carried no metadata: it is fetched so that a
		// rewrite keeps the object's mtime, mode and owner.
		f.mu.Unlock()
		h, err := f.m.cfg.Store.Head(ctx, f.bucket, f.name())
		f.mu.Lock()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, toErrno(f.log(), err)
		}
		if err == nil && h.ETag == o.ETag {
			meta = h.Metadata
		}
		if f.w != nil {
			f.w.Retain()
			return f.w, 0
		}
	}
	w, err := f.m.cfg.Writer.Open(f.bucket, f.key, write.OpenOptions{Base: base, Metadata: meta})
	if err != nil {
		return nil, f.writeErrno(err, "open")
	}
	w.Retain() // the node's reference; the caller keeps the one Open gave
	f.w = w
	f.keptETag = ""
	w.OnStored(f.landed(w))
	return w, 0
}

// landed returns what to do when a write-back upload of w lands: show
// the stored object, and let the staged content go if no one uses it.
func (f *fileNode) landed(w *write.File) func(store.Object) {
	return func(o store.Object) {
		f.mu.Lock()
		same := f.w == w && !f.unlinked
		f.mu.Unlock()
		if !same {
			return
		}
		f.setMeta(o, f.m.now(), true)
		f.noteInParent(o)
		f.dropStaged()
	}
}

// opened counts a new handle of f.
func (f *fileNode) opened(writer bool) {
	f.mu.Lock()
	f.opens++
	if writer {
		f.writers++
	}
	f.mu.Unlock()
}

// closed counts a handle of f gone; the last one lets the staged content
// go unless a write-back upload of it is pending.
func (f *fileNode) closed(writer bool) {
	f.mu.Lock()
	f.opens--
	if writer {
		f.writers--
	}
	f.mu.Unlock()
	f.dropStaged()
}

// dropStaged lets go of f's staged content when no handle is open and
// nothing of it waits for an upload. Content whose upload failed is
// dropped too: close() reported the failure.
func (f *fileNode) dropStaged() {
	f.mu.Lock()
	w := f.w
	if w == nil || f.opens > 0 {
		f.mu.Unlock()
		return
	}
	if pending, _ := w.Pending(); pending {
		f.mu.Unlock()
		return
	}
	f.w = nil
	f.mu.Unlock()
	w.Release()
}

// committed records the object a commit stored.
func (f *fileNode) committed(o store.Object) {
	if o.ETag == "" {
		return // write-back: not in the store yet; the staged content answers
	}
	f.setMeta(o, f.m.now(), true)
	f.noteInParent(o)
}

// noteInParent records f as o in its directory's cached listing.
func (f *fileNode) noteInParent(o store.Object) {
	name, p := f.Parent()
	if p == nil {
		return
	}
	if d, ok := p.Operations().(*dirNode); ok && d.pfx()+name == f.name() {
		if w := f.writer(); w != nil {
			o.Size = w.Size()
		}
		d.noteFile(name, o)
	}
}

// commit commits f's staged content, for close() and fsync().
func (f *fileNode) commit(ctx context.Context, w *write.File, op string) syscall.Errno {
	// Finish what was begun even when the caller is interrupted: the
	// bytes were written, and a half-done upload helps nobody.
	o, err := w.Commit(context.WithoutCancel(ctx))
	if err != nil {
		return f.writeErrno(err, op)
	}
	f.committed(o)
	return 0
}

// writeErrno turns a write-path error into an errno, logging it with
// what the store said (the request id among it).
func (f *fileNode) writeErrno(err error, op string) syscall.Errno {
	log := f.log().WithField("op", op)
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && (errno == syscall.ENOSPC || errno == syscall.EFBIG || errno == syscall.ENAMETOOLONG || errno == syscall.EBADF || errno == syscall.EINVAL):
		log.WithError(err).Warn("write refused")
		return errno
	case errors.Is(err, store.ErrAccessDenied):
		log.WithError(err).Error("the store refused the write (403): are the credentials read-only? (EACCES)")
		return syscall.EACCES
	case errors.Is(err, store.ErrPreconditionFailed) && f.isExclusiveConflict(err):
		log.WithError(err).Warn("the name was created elsewhere meanwhile (EEXIST)")
		return syscall.EEXIST
	case errors.Is(err, store.ErrPreconditionFailed):
		log.WithError(err).Error("the object changed in the store while the file was open for writing; nothing was stored (ESTALE)")
		return syscall.ESTALE
	case errors.Is(err, store.ErrInvalidObjectState):
		log.WithError(err).Error("the object is archived: restore it first (EACCES)")
		return syscall.EACCES
	}
	log.WithError(err).Error("upload failed after retries; the data was not stored (EIO)")
	return syscall.EIO
}

// isExclusiveConflict reports whether a failed precondition came from a
// create-if-absent (PUT or CompleteMultipartUpload).
func (f *fileNode) isExclusiveConflict(err error) bool {
	var se *store.Error
	return errors.As(err, &se) && (se.Op == "PutObject" || se.Op == "CompleteMultipartUpload")
}

// Write implements gofs.FileWriter.
func (h *writeHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.append {
		off = h.w.Size()
	}
	n, err := h.w.WriteAt(ctx, data, off)
	if n > 0 {
		h.node.touch(h.w)
	}
	if err != nil {
		return uint32(n), h.node.writeErrno(err, "write")
	}
	return uint32(n), 0
}

// touch sets the mtime a changed file is stored with to now; a later
// utimes (cp -p, rsync) overrides it.
func (f *fileNode) touch(w *write.File) {
	w.SetMetadata(map[string]string{metaMtime: formatMtime(f.m.now())})
}

// Read implements gofs.FileReader (O_RDWR).
func (h *writeHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !h.read {
		return nil, syscall.EBADF
	}
	n, err := h.w.ReadAt(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(h.node.log(), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Flush implements gofs.FileFlusher: close() uploads, and fails when the
// upload does.
func (h *writeHandle) Flush(ctx context.Context) syscall.Errno {
	return h.node.commit(ctx, h.w, "close")
}

// Fsync implements gofs.FileFsyncer: the bytes written so far are
// stored; the file stays open for writing.
func (h *writeHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.node.commit(ctx, h.w, "fsync")
}

// Allocate implements gofs.FileAllocater: posix_fallocate grows the file
// with zeros; punching holes and the like are not supported.
func (h *writeHandle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if mode&^uint32(1) != 0 { // FALLOC_FL_KEEP_SIZE is the only flag taken
		return syscall.EOPNOTSUPP
	}
	end := int64(off + size)
	if mode == 0 && end > h.w.Size() {
		if err := h.w.Truncate(ctx, end); err != nil {
			return h.node.writeErrno(err, "fallocate")
		}
		h.node.touch(h.w)
	}
	return 0
}

// Release implements gofs.FileReleaser.
func (h *writeHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	done := h.released
	h.released = true
	h.mu.Unlock()
	if done {
		return 0
	}
	h.w.Release()
	h.node.closed(true)
	return 0
}

// pendingXattr answers user.bucketfs.pending: the bytes of the file
// waiting for a write-back upload, "0" when none.
func (f *fileNode) pendingXattr(dest []byte) (uint32, syscall.Errno) {
	var n int64
	if w := f.writer(); w != nil {
		if pending, size := w.Pending(); pending {
			n = size
		} else if w.Changed() {
			n = w.Size()
		}
	}
	return xattrReply([]byte(strconv.FormatInt(n, 10)), dest)
}
