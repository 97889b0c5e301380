package fs

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
)

// fileNode is one object.
type fileNode struct {
	base

	// Constant data
	bucket string

	// Mutable state
	mu sync.Mutex // protects the following
	// inoKey is the key the inode table numbers this node by.
	inoKey string // GUARDED_BY(mu)
	// key changes when the file is renamed; read it with name().
	key    string       // GUARDED_BY(mu)
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
	// w holds the file's staged content while it is open for writing, a
	// handle that saw it is open, or its write-back upload is pending;
	// every read of the file goes through it then (write.go).
	w *write.File // GUARDED_BY(mu)
	// opens counts open handles, writers those open for writing.
	opens, writers int // GUARDED_BY(mu)
	// unlinked is set once the file was removed through the mount.
	unlinked bool // GUARDED_BY(mu)
}

// name returns the file's key.
func (f *fileNode) name() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.key
}

// writer returns the file's staged content, if it has one.
func (f *fileNode) writer() *write.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w
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
	f.mu.Lock()
	k := f.inoKey
	f.mu.Unlock()
	f.m.inodes.release(f.bucket, k, f.StableAttr().Ino)
	f.m.restores.unwatch(f)
}

// fillAttr fills out from the cached attributes: mode, owner and mtime
// from the object's metadata where it has them (metaattr.go), the size of
// the staged content while there is one.
func (f *fileNode) fillAttr(out *fuse.Attr) {
	s, o := f.state()
	a := f.m.attrsOf(o)
	out.Ino = f.StableAttr().Ino
	out.Mode = syscall.S_IFREG | uint32(a.perm.Perm())
	if !s.readable() {
		// Archived and not restored: mode 0000 shows it at a glance.
		out.Mode = syscall.S_IFREG
	}
	out.Nlink = 1
	out.Size = uint64(o.Size)
	if w := f.writer(); w != nil {
		out.Size = uint64(w.Size())
	}
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = blockSizeHint
	out.Uid, out.Gid = a.uid, a.gid
	t := a.mtime
	out.SetTimes(&t, &t, &t)
}

// fresh returns attributes no older than the metadata TTL, with a HEAD when
// the cached ones are stale.
func (f *fileNode) fresh(ctx context.Context) (store.Object, error) {
	now := f.m.now()
	f.mu.Lock()
	if f.w != nil || f.unlinked || now.Sub(f.metaAt) < f.m.cfg.MetadataTTL {
		// A file with staged content is what the mount holds, not what
		// the store has (yet).
		defer f.mu.Unlock()
		return f.meta, nil
	}
	f.mu.Unlock()
	return f.revalidate(ctx)
}

// revalidate HEADs the object and records what it returned.
func (f *fileNode) revalidate(ctx context.Context) (store.Object, error) {
	o, err := f.m.cfg.Store.Head(ctx, f.bucket, f.name())
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

// Open implements gofs.NodeOpener. A read-only open pins the object's
// current ETag; an open for writing stages the file (write.go).
func (f *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return f.openWrite(ctx, flags)
	}
	if _, err := f.fresh(ctx); err != nil {
		return nil, 0, toErrno(f.log(), err)
	}
	if errno := f.checkAccess(ctx, rOK); errno != 0 {
		return nil, 0, errno
	}
	if f.writer() != nil {
		// Being written: reads see the staged bytes, never a cached page.
		h := &handle{node: f}
		f.opened(false)
		return h, 0, 0
	}
	s, o := f.state()
	if !s.readable() {
		return nil, 0, f.unreadableErrno(ctx, s, o)
	}
	h := &handle{node: f}
	h.pin(o)

	var fuseFlags uint32
	f.mu.Lock()
	f.opens++
	if f.keptETag == o.ETag && o.ETag != "" {
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
		// The kernel may serve this version's pages without asking: the
		// handle must not move to another version later.
		h.served = true
	}
	f.keptETag = o.ETag
	f.mu.Unlock()
	f.noteOpenInDir()
	return h, fuseFlags, 0
}

func (f *fileNode) log() *logrus.Entry {
	return f.m.log.WithFields(logrus.Fields{"bucket": f.bucket, "key": f.name()})
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
	// released is set by Release: a late pin must not make a reader.
	released bool // GUARDED_BY(mu)
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
	if h.version.ETag != etag || h.served || h.released {
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
	if w := h.node.writer(); w != nil {
		// Staged content (being written, or a write-back upload pending)
		// is what the file holds.
		n, err := w.ReadAt(ctx, dest, off)
		if err == io.EOF {
			err = nil
		}
		if err != nil {
			return nil, err
		}
		return fuse.ReadResultData(dest[:n]), nil
	}
	v, r, _ := h.current()
	if r == nil {
		if h.version.ETag == "" && h.version.Key == "" {
			// Opened while the file was being written and written since:
			// read the version it was stored as.
			o, err := h.node.fresh(ctx)
			if err != nil {
				return nil, err
			}
			h.pin(o)
			v, r, _ = h.current()
		}
		if r == nil {
			return nil, syscall.EBADF
		}
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
	h.released = true
	h.mu.Unlock()
	if r != nil {
		r.Close()
	}
	h.node.closed(false)
	return 0
}
