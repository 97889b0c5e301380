package fs

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
)

// fileNode is one object.
type fileNode struct {
	base

	// Constant data
	bucket string
	key    string

	// Mutable state
	mu     sync.Mutex   // protects the following
	meta   store.Object // GUARDED_BY(mu)
	metaAt time.Time    // GUARDED_BY(mu); when meta was recorded
	// keptETag is the version whose pages the kernel may hold from an
	// earlier open; opening the same version again keeps them.
	keptETag string // GUARDED_BY(mu)
	// headAt is when a HEAD last refreshed meta (listings carry no user
	// metadata, and not always the restore state).
	headAt time.Time // GUARDED_BY(mu)
	// forcedArchived is set when a GET found the object archived though
	// its metadata did not say so.
	forcedArchived bool // GUARDED_BY(mu)
	// expiryTimer drops the kernel's cached mode when a restored copy
	// expires.
	expiryTimer *time.Timer // GUARDED_BY(mu)
}

var (
	_ = (gofs.NodeOnForgetter)((*fileNode)(nil))
	_ = (gofs.NodeGetattrer)((*fileNode)(nil))
	_ = (gofs.NodeOpener)((*fileNode)(nil))
)

// setMeta records attributes the store gave at time now, unless newer ones
// are already known: a cached listing must not undo what a later HEAD saw.
// A listing carries no user metadata and, from many servers, no restore
// state: for the same version those are kept from the last HEAD. When the
// file turns readable or unreadable, the kernel's cached mode is dropped,
// and a running restore is watched.
func (f *fileNode) setMeta(o store.Object, now time.Time, fromHead bool) {
	f.mu.Lock()
	if now.Before(f.metaAt) {
		f.mu.Unlock()
		return
	}
	before := stateOf(f.meta, f.forcedArchived, now)
	if o.ETag != f.meta.ETag {
		f.forcedArchived = false
	} else if !fromHead {
		if o.Metadata == nil {
			o.Metadata = f.meta.Metadata
		}
		if !o.Restore.Requested {
			o.Restore = f.meta.Restore
		}
	}
	if fromHead {
		f.headAt = now
	}
	f.meta = o
	f.metaAt = now
	after := stateOf(f.meta, f.forcedArchived, now)
	if after == restored {
		if f.expiryTimer != nil {
			f.expiryTimer.Stop()
		}
		f.expiryTimer = time.AfterFunc(time.Until(o.Restore.Expiry), f.invalidate)
	}
	f.mu.Unlock()
	if before.readable() != after.readable() {
		f.invalidate()
	}
	if after == restoring {
		f.watchRestore()
	}
}

// OnForget implements gofs.NodeOnForgetter: the kernel no longer holds the
// file, so its inode number may be dropped.
func (f *fileNode) OnForget() {
	f.m.inodes.release(f.bucket, f.key, f.StableAttr().Ino)
	f.m.restores.unwatch(f)
}

// fillAttr fills out from the cached attributes.
func (f *fileNode) fillAttr(out *fuse.Attr) {
	s, o := f.state()
	out.Ino = f.StableAttr().Ino
	out.Mode = syscall.S_IFREG | uint32(f.m.cfg.FileMode.Perm())
	if !s.readable() {
		// Archived and not restored: mode 0000 shows it at a glance.
		out.Mode = syscall.S_IFREG
	}
	out.Nlink = 1
	out.Size = uint64(o.Size)
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = blockSizeHint
	out.Uid, out.Gid = f.m.cfg.UID, f.m.cfg.GID
	t := o.LastModified
	out.SetTimes(&t, &t, &t)
}

// fresh returns attributes no older than the metadata TTL, with a HEAD when
// the cached ones are stale.
func (f *fileNode) fresh(ctx context.Context) (store.Object, error) {
	now := f.m.now()
	f.mu.Lock()
	if now.Sub(f.metaAt) < f.m.cfg.MetadataTTL {
		defer f.mu.Unlock()
		return f.meta, nil
	}
	f.mu.Unlock()
	return f.revalidate(ctx)
}

// revalidate HEADs the object and records what it returned.
func (f *fileNode) revalidate(ctx context.Context) (store.Object, error) {
	o, err := f.m.cfg.Store.Head(ctx, f.bucket, f.key)
	if err != nil {
		return store.Object{}, err
	}
	f.setMeta(*o, f.m.now(), true)
	return *o, nil
}

// Getattr implements gofs.NodeGetattrer.
func (f *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if _, err := f.fresh(ctx); err != nil {
		return toErrno(f.log(), err)
	}
	f.fillAttr(&out.Attr)
	return 0
}

// Open implements gofs.NodeOpener. It pins the object's current ETag.
func (f *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	if _, err := f.fresh(ctx); err != nil {
		return nil, 0, toErrno(f.log(), err)
	}
	if errno := checkAccess(ctx, f.m.cfg.FileMode, f.m.cfg.UID, f.m.cfg.GID, rOK); errno != 0 {
		return nil, 0, errno
	}
	s, o := f.state()
	if !s.readable() {
		return nil, 0, f.unreadableErrno(ctx, s, o)
	}
	h := &handle{node: f}
	h.pin(o)

	var fuseFlags uint32
	f.mu.Lock()
	if f.keptETag == o.ETag {
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
		// The kernel may serve this version's pages without asking: the
		// handle must not move to another version later.
		h.served = true
	}
	f.keptETag = o.ETag
	f.mu.Unlock()
	return h, fuseFlags, 0
}

func (f *fileNode) log() *logrus.Entry {
	return f.m.log.WithFields(logrus.Fields{"bucket": f.bucket, "key": f.key})
}

// handle is one open file: a pinned object version and its read path.
type handle struct {
	// Dependencies
	node *fileNode

	// Mutable state
	mu      sync.Mutex    // protects the following
	version ObjectVersion // GUARDED_BY(mu)
	reader  ObjectReader  // GUARDED_BY(mu); nil once released
	// served is set once a read returned bytes, or by Open (before the
	// handle is shared) when the kernel keeps pages of this version; from
	// then on the version may not change.
	served bool // GUARDED_BY(mu)
}

var (
	_ = (gofs.FileReader)((*handle)(nil))
	_ = (gofs.FileReleaser)((*handle)(nil))
)

// pin makes o the version this handle reads. REQUIRES: no read served yet.
func (h *handle) pin(o store.Object) {
	h.repin(h.version.ETag, o)
}

// repin moves the handle from version etag to o, unless another read has
// moved it already or bytes were served. Readers of the old version may
// still be running; they fail and retry on the new one.
func (h *handle) repin(etag string, o store.Object) {
	v := h.node.version(o)
	h.mu.Lock()
	if h.version.ETag != etag || h.served {
		h.mu.Unlock()
		return
	}
	old := h.reader
	h.version, h.reader = v, h.node.m.cfg.NewReader(v)
	h.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// current returns the pinned version and its reader.
func (h *handle) current() (ObjectVersion, ObjectReader, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version, h.reader, h.served
}

// Read implements gofs.FileReader.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	v, _, _ := h.current()
	res, err := h.readAt(ctx, dest, off)
	if errors.Is(err, store.ErrPreconditionFailed) {
		if _, _, served := h.current(); !served {
			// The ETag pinned at open came from cached metadata and the
			// object has changed since: nothing was read from the old
			// version yet, so move to the new one (once, if reads race).
			o, herr := h.node.revalidate(ctx)
			if herr != nil {
				return nil, toErrno(h.node.log(), herr)
			}
			h.repin(v.ETag, o)
			res, err = h.readAt(ctx, dest, off)
		}
	} else if cur, _, _ := h.current(); err != nil && cur.ETag != v.ETag {
		// Another read moved the handle to a new version while this one
		// ran on the old reader, which is closed now: read again.
		res, err = h.readAt(ctx, dest, off)
	}
	if err != nil {
		switch {
		case errors.Is(err, store.ErrPreconditionFailed):
			h.node.log().Warn("object changed while open; reads on this handle fail with ESTALE, reopen to see the new version")
		case errors.Is(err, store.ErrInvalidObjectState):
			h.node.sawArchived(ctx)
			s, o := h.node.state()
			return nil, h.node.unreadableErrno(ctx, s, o)
		case errors.Is(err, context.Canceled) && ctx.Err() == nil:
			// Cancelled inside bucketfs, not by the caller: EINTR would
			// make the caller (and the kernel) retry at once, forever.
			logLimited(h.node.log(), err, logrus.WarnLevel, "read cancelled inside bucketfs (EIO)")
			return nil, syscall.EIO
		}
		return nil, toErrno(h.node.log(), err)
	}
	return res, 0
}

// readAt reads from the pinned version, clamped to its size.
func (h *handle) readAt(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, error) {
	v, r, _ := h.current()
	if r == nil {
		return nil, syscall.EBADF
	}
	if off >= v.Size {
		return fuse.ReadResultData(nil), nil
	}
	if rem := v.Size - off; int64(len(dest)) > rem {
		dest = dest[:rem]
	}
	var res fuse.ReadResult
	n := 0
	if rr, ok := r.(RefReader); ok {
		data, release, err := rr.ReadRef(ctx, dest, off)
		if err != nil {
			return nil, err
		}
		n, res = len(data), fuse.ReadResultData(data)
		if release != nil {
			res = &refResult{data: data, release: release}
		}
	} else {
		var err error
		if n, err = r.ReadAt(ctx, dest, off); err != nil {
			return nil, err
		}
		res = fuse.ReadResultData(dest[:n])
	}
	if n > 0 {
		h.mu.Lock()
		h.served = true
		h.mu.Unlock()
	}
	return res, nil
}

// refResult sends bytes that live in a read path's buffer (a cached block)
// without copying them, and lets go of the buffer once the kernel has them.
type refResult struct {
	data    []byte
	release func()
}

func (r *refResult) Bytes(buf []byte) ([]byte, fuse.Status) { return r.data, fuse.OK }
func (r *refResult) Size() int                              { return len(r.data) }
func (r *refResult) Done()                                  { r.release() }

// Release implements gofs.FileReleaser.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	r := h.reader
	h.reader = nil
	h.mu.Unlock()
	if r != nil {
		r.Close()
	}
	return 0
}
