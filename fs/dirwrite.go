package fs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"syscall"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Changes to directories: create, mkdir, unlink, rmdir, rename. Each is
// done in the store before it returns (a new file's object is made when
// it is closed), and the directory's cached listing is updated in place so
// the change shows at once without listing again.

var (
	_ = (gofs.NodeCreater)((*dirNode)(nil))
	_ = (gofs.NodeMkdirer)((*dirNode)(nil))
	_ = (gofs.NodeUnlinker)((*dirNode)(nil))
	_ = (gofs.NodeRmdirer)((*dirNode)(nil))
	_ = (gofs.NodeRenamer)((*dirNode)(nil))
	_ = (gofs.NodeSymlinker)((*dirNode)(nil))
	_ = (gofs.NodeLinker)((*dirNode)(nil))
	_ = (gofs.NodeMknoder)((*dirNode)(nil))
)

// canChange checks that the caller may add or remove names in d.
func (d *dirNode) canChange(ctx context.Context) syscall.Errno {
	if !d.m.writable() {
		return syscall.EROFS
	}
	return d.m.checkAccess(ctx, d.m.cfg.DirMode, d.m.cfg.UID, d.m.cfg.GID, wOK|xOK)
}

// newName checks a name about to be made in d and returns its key.
func (d *dirNode) newName(name string, dir bool) (string, syscall.Errno) {
	if len(name) > maxNameLen {
		return "", syscall.ENAMETOOLONG
	}
	if !validName(name) {
		return "", syscall.EINVAL
	}
	key := d.pfx() + name
	if dir {
		key += "/"
	}
	if len(key) > store.MaxKeyLen {
		return "", syscall.ENAMETOOLONG
	}
	return key, 0
}

// Create implements gofs.NodeCreater: a new file, stored when closed.
// With O_EXCL, the store is asked to create it only if absent.
func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := d.canChange(ctx); errno != 0 {
		return nil, nil, 0, errno
	}
	key, errno := d.newName(name, false)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	now := d.m.now()
	meta := map[string]string{metaMtime: formatMtime(now)}
	if perm := mode & 0o7777; perm != uint32(d.m.cfg.FileMode.Perm()) {
		meta[metaMode] = fmt.Sprintf("%o", syscall.S_IFREG|perm)
	}
	if c, ok := fuse.FromContext(ctx); ok && c.Uid != d.m.cfg.UID {
		meta[metaUID] = fmt.Sprint(c.Uid)
		meta[metaGID] = fmt.Sprint(c.Gid)
	}
	w, err := d.m.cfg.Writer.Open(d.bucket, key, write.OpenOptions{Exclusive: flags&syscall.O_EXCL != 0, Metadata: meta})
	if err != nil {
		return nil, nil, 0, toErrno(d.log(), err)
	}
	o := store.Object{Key: key, LastModified: now, Metadata: maps.Clone(meta)}
	child := &fileNode{base: base{m: d.m}, bucket: d.bucket, key: key, inoKey: key}
	ino := d.m.newInode(ctx, &d.Inode, child, fuse.S_IFREG, d.bucket, key)
	f, ok := ino.Operations().(*fileNode)
	if !ok {
		w.Release()
		return nil, nil, 0, syscall.EIO
	}
	w.OnStored(f.landed(w))
	f.mu.Lock()
	old := f.w
	w.Retain() // the node's reference
	f.w, f.key, f.unlinked = w, key, false
	f.meta, f.metaAt, f.headAt, f.keptETag = o, now, now, ""
	f.opens++
	f.writers++
	f.mu.Unlock()
	if old != nil {
		old.Remove()
		old.Release()
	}
	d.noteFile(name, o)
	f.fillAttr(&out.Attr)
	h := &writeHandle{node: f, w: w, append: flags&syscall.O_APPEND != 0, read: flags&syscall.O_ACCMODE == syscall.O_RDWR}
	return ino, h, 0, 0
}

// Mkdir implements gofs.NodeMkdirer: a "dir/" marker object, so an empty
// directory persists.
func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := d.canChange(ctx); errno != 0 {
		return nil, errno
	}
	key, errno := d.newName(name, true)
	if errno != 0 {
		return nil, errno
	}
	meta := map[string]string{metaMtime: formatMtime(d.m.now())}
	if _, err := d.m.cfg.Writer.PutEmpty(ctx, d.bucket, key, meta, false); err != nil {
		return nil, d.changeErrno(err, "mkdir", name)
	}
	e := entry{name: name, dir: true, seen: d.m.now()}
	d.noteEntry(e)
	ch := d.childInode(ctx, e, out)
	if sub, ok := ch.Operations().(*dirNode); ok {
		sub.madeNow()
	}
	return ch, 0
}

// madeNow records that d was just made (by Mkdir): it is empty, and its
// names are what this mount adds to it.
func (d *dirNode) madeNow() {
	now := d.m.now()
	d.mu.Lock()
	d.entries, d.names, d.listedAt, d.lookups, d.listBytes = map[string]entry{}, nil, now, nil, 0
	d.madeHere = true
	d.mtime = now
	bytes := d.cachedBytesLocked()
	d.mu.Unlock()
	d.m.listings.stored(d, bytes)
}

// Unlink implements gofs.NodeUnlinker. A file still open keeps what was
// read of it; writes to it go nowhere.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := d.canChange(ctx); errno != 0 {
		return errno
	}
	e, found, err := d.lookupEntry(ctx, name)
	if err != nil {
		return toErrno(d.log(), err)
	}
	if !found {
		return syscall.ENOENT
	}
	if e.dir {
		return syscall.EISDIR
	}
	key := d.pfx() + name
	stored := true
	if f := d.fileChild(name, key); f != nil {
		f.mu.Lock()
		stored = f.meta.ETag != ""
		f.mu.Unlock()
		if errno := f.unlink(ctx); errno != 0 {
			return errno
		}
	} else if w := d.m.cfg.Writer.Acquire(d.bucket, key); w != nil {
		w.Remove()
		w.Wait(context.WithoutCancel(ctx))
		w.Release()
	}
	if err := d.m.cfg.Writer.Delete(ctx, d.bucket, key); err != nil {
		if stored {
			return d.changeErrno(err, "unlink", name)
		}
		// A file only the mount had (a write-back upload that had not
		// landed, now called off): it is gone; the delete only made sure.
		d.log().WithField("name", name).WithError(err).Warn("unlink of a file not yet stored: the delete that makes sure failed; if its upload had landed just before, the object stays")
	}
	d.noteGone(name)
	return 0
}

// fileChild returns the live node of name in d if it stands for key.
func (d *dirNode) fileChild(name, key string) *fileNode {
	ch := d.GetChild(name)
	if ch == nil {
		return nil
	}
	f, ok := ch.Operations().(*fileNode)
	if !ok || f.name() != key {
		return nil
	}
	return f
}

// unlink drops f's staged content: nothing more of it is stored, and a
// pending write-back upload is called off (and waited for, so it cannot
// land after the delete that follows).
func (f *fileNode) unlink(ctx context.Context) syscall.Errno {
	f.mu.Lock()
	w := f.w
	f.unlinked = true
	f.mu.Unlock()
	if w != nil {
		w.Remove()
		if err := w.Wait(context.WithoutCancel(ctx)); err != nil {
			return toErrno(f.log(), err)
		}
	}
	return 0
}

// Rmdir implements gofs.NodeRmdirer: ENOTEMPTY unless nothing is under
// the directory, in the store or waiting to be stored.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := d.canChange(ctx); errno != 0 {
		return errno
	}
	prefix := d.pfx() + name + "/"
	page, err := d.m.cfg.Store.List(ctx, store.ListInput{Bucket: d.bucket, Prefix: prefix, Delimiter: "/", MaxKeys: 2})
	if err != nil {
		return toErrno(d.log(), err)
	}
	if len(page.Prefixes) > 0 || len(page.Skipped) > 0 || slices.ContainsFunc(page.Objects, func(o store.Object) bool { return o.Key != prefix }) {
		return syscall.ENOTEMPTY
	}
	if len(d.m.cfg.Writer.PendingIn(d.bucket, prefix)) > 0 {
		return syscall.ENOTEMPTY
	}
	if ch := d.GetChild(name); ch != nil {
		if sub, ok := ch.Operations().(*dirNode); ok && sub.hasStaged() {
			return syscall.ENOTEMPTY
		}
	}
	if err := d.m.cfg.Writer.Delete(ctx, d.bucket, prefix); err != nil {
		return d.changeErrno(err, "rmdir", name)
	}
	d.noteGone(name)
	return 0
}

// hasStaged reports whether a file of d is being written or waits for
// its upload (it is then not in the store yet).
func (d *dirNode) hasStaged() bool {
	for _, ch := range d.Children() {
		if f, ok := ch.Operations().(*fileNode); ok {
			f.mu.Lock()
			staged := f.w != nil && !f.unlinked
			f.mu.Unlock()
			if staged {
				return true
			}
		}
	}
	return false
}

// Symlink implements gofs.NodeSymlinker. S3 has no links, and the
// conventions other tools use to fake them (rclone's .rclonelink files,
// geesefs's metadata) are not understood by each other; bucketfs refuses
// rather than store something only it would read.
func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !d.m.writable() {
		return nil, syscall.EROFS
	}
	d.m.logOnce("symbolic links are not supported (EPERM): object stores have none", d.bucket, d.pfx()+name)
	return nil, syscall.EPERM
}

// Link implements gofs.NodeLinker: hard links are not supported.
func (d *dirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !d.m.writable() {
		return nil, syscall.EROFS
	}
	d.m.logOnce("hard links are not supported (EPERM): object stores have none", d.bucket, d.pfx()+name)
	return nil, syscall.EPERM
}

// Mknod implements gofs.NodeMknoder: only regular files and directories
// exist here.
func (d *dirNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !d.m.writable() {
		return nil, syscall.EROFS
	}
	return nil, syscall.EPERM
}

// changeErrno maps a failed change to an errno, logging it.
func (d *dirNode) changeErrno(err error, op, name string) syscall.Errno {
	log := d.log().WithField("op", op).WithField("name", name)
	switch {
	case errors.Is(err, syscall.ENAMETOOLONG):
		return syscall.ENAMETOOLONG
	case errors.Is(err, store.ErrAccessDenied):
		log.WithError(err).Error("the store refused the change (403): are the credentials read-only? (EACCES)")
		return syscall.EACCES
	case errors.Is(err, store.ErrNotFound):
		return syscall.ENOENT
	}
	return toErrno(log, err)
}

// noteFile records in d's cache that name is the file o.
func (d *dirNode) noteFile(name string, o store.Object) {
	d.noteEntry(entry{name: name, obj: o, seen: d.m.now()})
}

// maxPatchedListing is the largest listing patched in place after a
// change; a larger one is dropped and listed again when next read, since
// patching copies it (readers may hold the old one).
const maxPatchedListing = 4096

// noteEntry records e in d's cached listing and single-name answers.
func (d *dirNode) noteEntry(e entry) {
	now := d.m.now()
	if e.seen.IsZero() {
		e.seen = now
	}
	d.mu.Lock()
	if d.entries != nil {
		if len(d.entries) > maxPatchedListing {
			d.entries, d.names, d.listBytes = nil, nil, 0
		} else {
			entries := maps.Clone(d.entries)
			_, had := entries[e.name]
			entries[e.name] = e
			names := d.names
			if !had {
				i := sort.SearchStrings(names, e.name)
				names = slices.Insert(slices.Clone(names), i, e.name)
			}
			d.entries, d.names = entries, names
		}
	}
	if d.lookups == nil {
		d.lookups = map[string]lookupResult{}
	}
	d.lookups[e.name] = lookupResult{e: e, found: true, at: now}
	d.mu.Unlock()
}

// noteGone records in d's cache that name no longer exists.
func (d *dirNode) noteGone(name string) {
	now := d.m.now()
	d.mu.Lock()
	if d.entries != nil {
		if len(d.entries) > maxPatchedListing {
			d.entries, d.names, d.listBytes = nil, nil, 0
		} else if _, had := d.entries[name]; had {
			entries := maps.Clone(d.entries)
			delete(entries, name)
			i := sort.SearchStrings(d.names, name)
			d.entries, d.names = entries, slices.Delete(slices.Clone(d.names), i, i+1)
		}
	}
	if d.lookups == nil {
		d.lookups = map[string]lookupResult{}
	}
	d.lookups[name] = lookupResult{e: entry{name: name}, found: false, at: now}
	d.mu.Unlock()
}

// mergeStaged adds to a listing fresh from the store the files of d that
// the mount holds and the store does not have yet: being written, or
// waiting for a write-back upload.
func (d *dirNode) mergeStaged(entries map[string]entry) {
	for name, ch := range d.Children() {
		f, ok := ch.Operations().(*fileNode)
		if !ok {
			continue
		}
		f.mu.Lock()
		w, key, gone, o := f.w, f.key, f.unlinked, f.meta
		f.mu.Unlock()
		if w == nil || gone || key != d.pfx()+name {
			continue
		}
		if _, listed := entries[name]; !listed || w.Changed() {
			o.Size = w.Size()
			entries[name] = entry{name: name, obj: o}
		}
	}
	if d.m.cfg.Writer == nil {
		return
	}
	for name, w := range d.m.cfg.Writer.PendingIn(d.bucket, d.pfx()) {
		if _, listed := entries[name]; !listed {
			_, size := w.Pending()
			entries[name] = entry{name: name, obj: store.Object{Key: d.pfx() + name, Size: size, LastModified: d.m.now(), Metadata: w.Metadata()}}
		}
	}
}
