package fs

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var (
	_ = (gofs.NodeSetattrer)((*fileNode)(nil))
	_ = (gofs.NodeSetattrer)((*dirNode)(nil))
)

// Setattr implements gofs.NodeSetattrer: truncate, utimes, chmod and
// chown. The size changes the staged content; the rest is metadata
// (metaattr.go). A file open for writing stores them when it is closed;
// any other file at once, by a server-side copy that replaces its
// metadata (no bytes are uploaded).
func (f *fileNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !f.m.writable() {
		return syscall.EROFS
	}
	_, o := f.state()
	a := f.m.attrsOf(o)
	caller, _ := fuse.FromContext(ctx)
	root := caller == nil || caller.Uid == 0
	owner := root || caller.Uid == a.uid
	kv := map[string]string{}
	if m, ok := in.GetMode(); ok {
		if !owner {
			return syscall.EPERM
		}
		kv[metaMode] = fmt.Sprintf("%o", syscall.S_IFREG|(m&0o7777))
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		if !root && (uok && uid != a.uid || !owner) {
			return syscall.EPERM
		}
		if uok {
			kv[metaUID] = fmt.Sprint(uid)
		}
		if gok {
			kv[metaGID] = fmt.Sprint(gid)
		}
	}
	if mt, ok := in.GetMTime(); ok {
		now := in.Valid&fuse.FATTR_MTIME_NOW != 0
		if !owner && !(now && f.checkAccess(ctx, wOK) == 0) {
			return syscall.EPERM
		}
		if now {
			mt = f.m.now()
		}
		kv[metaMtime] = formatMtime(mt)
	}
	size, hasSize := in.GetSize()
	if hasSize {
		if errno := f.checkAccess(ctx, wOK); errno != 0 && !isWriteHandle(fh) {
			return errno
		}
		if _, ok := kv[metaMtime]; !ok {
			kv[metaMtime] = formatMtime(f.m.now())
		}
	}
	if len(kv) == 0 && !hasSize {
		// atime or ctime only: nothing S3 keeps.
		f.fillAttr(&out.Attr)
		return 0
	}
	if errno := f.changeStaged(ctx, kv, size, hasSize, isWriteHandle(fh)); errno != 0 {
		return errno
	}
	f.fillAttr(&out.Attr)
	return 0
}

func isWriteHandle(fh gofs.FileHandle) bool {
	_, ok := fh.(*writeHandle)
	return ok
}

// changeStaged applies a size and metadata change: to the staged content
// when the file has some, else through a short-lived one. A change made
// through a file open for writing (ftruncate, futimens) is stored when it
// is closed; any other (truncate, utimes, chmod by path) is committed now,
// since no close() would report its failure (and the kernel may not yet
// have released a writer that closed just before).
func (f *fileNode) changeStaged(ctx context.Context, kv map[string]string, size uint64, hasSize, viaHandle bool) syscall.Errno {
	f.mu.Lock()
	w := f.w
	if w != nil {
		w.Retain()
	}
	f.mu.Unlock()
	if w == nil {
		if !hasSize {
			return f.setMetadata(ctx, kv)
		}
		var errno syscall.Errno
		if w, errno = f.stage(ctx, size == 0); errno != 0 {
			return errno
		}
	}
	defer func() {
		w.Release()
		f.dropStaged()
	}()
	if hasSize {
		if err := w.Truncate(ctx, int64(size)); err != nil {
			return f.writeErrno(err, "truncate")
		}
	}
	w.SetMetadata(kv)
	if viaHandle {
		return 0
	}
	return f.commit(ctx, w, "setattr")
}

// setMetadata replaces some of an unopened file's metadata by a
// server-side copy onto itself.
func (f *fileNode) setMetadata(ctx context.Context, kv map[string]string) syscall.Errno {
	o, err := f.withMetadata(ctx)
	if err != nil {
		return toErrno(f.log(), err)
	}
	meta := maps.Clone(o.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	same := true
	for k, v := range kv {
		if meta[k] != v {
			same = false
		}
		meta[k] = v
	}
	if same {
		return 0
	}
	key := f.name()
	n, err := f.m.cfg.Writer.Copy(ctx, write.CopySpec{SrcBucket: f.bucket, Src: o, Bucket: f.bucket, Key: key, ReplaceMetadata: true, Metadata: meta, StorageClass: o.StorageClass})
	if err != nil {
		return f.writeErrno(err, "setattr")
	}
	f.setMeta(n, f.m.now(), true)
	f.noteInParent(n)
	return 0
}

// withMetadata returns the object's attributes with its user metadata,
// HEADing it when a listing gave them.
func (f *fileNode) withMetadata(ctx context.Context) (store.Object, error) {
	f.mu.Lock()
	o, headed := f.meta, !f.headAt.IsZero() && f.m.now().Sub(f.metaAt) < f.m.cfg.MetadataTTL
	f.mu.Unlock()
	if headed {
		return o, nil
	}
	return f.revalidate(ctx)
}

// Setattr implements gofs.NodeSetattrer for directories: their mtime is
// kept in the metadata of the "dir/" marker (made if missing); mode and
// owner are the mount's.
func (d *dirNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !d.m.writable() {
		return syscall.EROFS
	}
	if mt, ok := in.GetMTime(); ok && d.pfx() != d.m.cfg.Prefix {
		if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
			mt = d.m.now()
		}
		meta := map[string]string{metaMtime: formatMtime(mt)}
		if _, err := d.m.cfg.Writer.PutEmpty(ctx, d.bucket, d.pfx(), meta, false); err != nil {
			return d.changeErrno(err, "setattr", strings.TrimSuffix(d.pfx(), "/"))
		}
		d.setMtime(mt)
	}
	d.fillAttr(&out.Attr)
	return 0
}

// setMtime records the directory's mtime.
func (d *dirNode) setMtime(t time.Time) {
	d.mu.Lock()
	d.mtime = t
	d.mu.Unlock()
}

// fillAttr fills a directory's attributes: the mount's, with the mtime
// its marker holds when known.
func (d *dirNode) fillAttr(out *fuse.Attr) {
	d.m.dirAttr(out, d.StableAttr().Ino)
	d.mu.Lock()
	t := d.mtime
	d.mu.Unlock()
	if !t.IsZero() {
		out.SetTimes(&t, &t, &t)
	}
}
