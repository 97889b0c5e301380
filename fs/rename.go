package fs

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// Renames: a file is copied server-side and its old name deleted; a
// directory moves each of its keys so. The nodes the kernel holds follow
// their new names (their keys change in place, and the inode table moves
// their numbers), so open files and cached entries stay valid.

// Rename implements gofs.NodeRenamer. A file is copied server-side, then
// the old name deleted (on Tigris with --tigris-rename, renamed in one
// metadata-only request); a directory moves each of its keys so, up to
// --rename-dir-limit keys, and fails with EXDEV beyond (mv then copies).
// Neither is atomic: a failure half-way leaves both names, and is an error.
func (d *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := d.canChange(ctx); errno != 0 {
		return errno
	}
	nd, ok := newParent.(*dirNode)
	if !ok || nd.bucket != d.bucket {
		return syscall.EXDEV
	}
	if errno := nd.canChange(ctx); errno != 0 {
		return errno
	}
	if flags&gofs.RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	e, found, err := d.lookupEntry(ctx, name)
	if err != nil {
		return toErrno(d.log(), err)
	}
	if !found {
		return syscall.ENOENT
	}
	de, dfound, err := nd.lookupEntry(ctx, newName)
	if err != nil {
		return toErrno(nd.log(), err)
	}
	const renameNoReplace = 1
	if dfound && flags&renameNoReplace != 0 {
		return syscall.EEXIST
	}
	if d == nd && name == newName {
		return 0
	}
	if e.dir {
		if dfound && !de.dir {
			return syscall.ENOTDIR
		}
		return d.renameDir(ctx, name, nd, newName, dfound)
	}
	if dfound && de.dir {
		return syscall.EISDIR
	}
	return d.renameFile(ctx, name, e, nd, newName)
}

// renameFile renames one file.
func (d *dirNode) renameFile(ctx context.Context, name string, e entry, nd *dirNode, newName string) syscall.Errno {
	oldKey := d.pfx() + name
	newKey, errno := nd.newName(newName, false)
	if errno != 0 {
		return errno
	}
	f := d.fileChild(name, oldKey)
	src := e.obj
	if f != nil {
		if w := f.writer(); w != nil {
			handled, err := w.RenamePending(d.bucket, newKey)
			if handled {
				if err != nil {
					return f.writeErrno(err, "rename")
				}
				d.movedFile(f, name, nd, newName, store.Object{})
				return 0
			}
			if w.Changed() {
				if errno := f.commit(ctx, w, "rename"); errno != 0 {
					return errno
				}
				// Under --write-back the commit made it pending.
				if handled, err := w.RenamePending(d.bucket, newKey); handled {
					if err != nil {
						return f.writeErrno(err, "rename")
					}
					d.movedFile(f, name, nd, newName, store.Object{})
					return 0
				}
			}
		}
		o, err := f.fresh(ctx)
		if err != nil {
			return toErrno(f.log(), err)
		}
		src = o
		f.mu.Lock()
		if f.headAt.IsZero() {
			src.Metadata = nil
		}
		f.mu.Unlock()
	}
	if src.ETag == "" || src.Metadata == nil {
		// Listings carry no metadata, and the new name is shown with it;
		// the copy is pinned to the version the HEAD saw.
		h, err := d.m.cfg.Store.Head(ctx, d.bucket, oldKey)
		if err != nil {
			return toErrno(d.log(), err)
		}
		src = *h
	}
	o, err := d.m.cfg.Writer.Copy(ctx, write.CopySpec{SrcBucket: d.bucket, Src: src, Bucket: d.bucket, Key: newKey, Rename: d.m.cfg.TigrisRename})
	if err != nil {
		return d.changeErrno(err, "rename", name)
	}
	if err := d.m.cfg.Writer.Delete(ctx, d.bucket, oldKey); err != nil {
		d.log().WithField("name", name).WithError(err).Error("rename: copied, but the old name could not be deleted; both names now exist")
		return d.changeErrno(err, "rename", name)
	}
	o.Metadata = src.Metadata
	if f != nil {
		if w := f.writer(); w != nil {
			w.Rebase(d.bucket, newKey, o)
		}
	}
	d.movedFile(f, name, nd, newName, o)
	return 0
}

// movedFile updates the tree after a file moved from d/name to
// nd/newName, as o (ETag empty: not stored yet).
func (d *dirNode) movedFile(f *fileNode, name string, nd *dirNode, newName string, o store.Object) {
	newKey := nd.pfx() + newName
	if old := nd.fileChild(newName, newKey); old != nil && old != f {
		// The replaced file: nothing of it may be stored any more.
		old.unlink(context.Background())
	}
	if f != nil {
		f.mu.Lock()
		oldIno := f.inoKey
		f.key, f.inoKey = newKey, newKey
		f.mu.Unlock()
		f.m.inodes.rename(d.bucket, oldIno, newKey, f.StableAttr().Ino)
		if o.ETag != "" {
			f.setMeta(o, f.m.now(), true)
		}
		f.mu.Lock()
		o = f.meta
		if f.w != nil {
			o.Size = f.w.Size()
		}
		f.mu.Unlock()
	}
	d.noteGone(name)
	nd.noteFile(newName, o)
}

// renameDir moves every key under d/name/ to nd/newName/.
func (d *dirNode) renameDir(ctx context.Context, name string, nd *dirNode, newName string, replace bool) syscall.Errno {
	oldPrefix := d.pfx() + name + "/"
	newPrefix, errno := nd.newName(newName, true)
	if errno != 0 {
		return errno
	}
	if strings.HasPrefix(newPrefix, oldPrefix) {
		return syscall.EINVAL // into itself
	}
	if replace {
		// POSIX replaces an empty directory only.
		if errno := nd.Rmdir(ctx, newName); errno != 0 {
			return errno
		}
	}
	if len(d.m.cfg.Writer.PendingUnder(d.bucket, oldPrefix)) > 0 {
		return syscall.EBUSY
	}
	if ch := d.GetChild(name); ch != nil {
		if sub, ok := ch.Operations().(*dirNode); ok && !sub.waitUnstaged(ctx, releaseWait) {
			return syscall.EBUSY
		}
	}
	limit := d.m.cfg.RenameDirLimit
	if limit <= 0 {
		limit = DefaultRenameDirLimit
	}
	var keys []store.Object
	token := ""
	for {
		page, err := d.m.cfg.Store.List(ctx, store.ListInput{Bucket: d.bucket, Prefix: oldPrefix, Token: token})
		if err != nil {
			return toErrno(d.log(), err)
		}
		keys = append(keys, page.Objects...)
		if len(keys) > limit {
			d.log().WithField("name", name).Infof("directory has more than %d keys (--rename-dir-limit): EXDEV, so mv copies it", limit)
			return syscall.EXDEV
		}
		if page.NextToken == "" {
			break
		}
		token = page.NextToken
	}
	// Copy every key, then delete the old ones: a failure half-way
	// leaves the old tree whole.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	lim := make(chan struct{}, 8)
	for _, o := range keys {
		lim <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-lim }()
			spec := write.CopySpec{SrcBucket: d.bucket, Src: o, Bucket: d.bucket, Key: newPrefix + strings.TrimPrefix(o.Key, oldPrefix)}
			if _, err := d.m.cfg.Writer.Copy(ctx, spec); err != nil {
				mu.Lock()
				first = cmpOr(first, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return d.changeErrno(first, "rename", name)
	}
	if len(keys) == 0 {
		// A directory only implied by an upload in progress elsewhere, or
		// gone meanwhile: keep the new name as an empty directory.
		if _, err := d.m.cfg.Writer.PutEmpty(ctx, d.bucket, newPrefix, nil, false); err != nil {
			return d.changeErrno(err, "rename", name)
		}
	}
	for _, o := range keys {
		lim <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-lim }()
			if err := d.m.cfg.Writer.Delete(ctx, d.bucket, o.Key); err != nil {
				mu.Lock()
				first = cmpOr(first, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		d.log().WithField("name", name).WithError(first).Error("rename: copied, but some old keys could not be deleted; both names now hold them")
		return d.changeErrno(first, "rename", name)
	}
	if ch := d.GetChild(name); ch != nil {
		if sub, ok := ch.Operations().(*dirNode); ok && sub.pfx() == oldPrefix {
			// The kernel keeps the moved directory's nodes: they stand for
			// the new keys from now on.
			sub.retarget(newPrefix)
		}
	}
	d.noteGone(name)
	nd.noteEntry(entry{name: newName, dir: true, seen: d.m.now()})
	return 0
}

// retarget makes d and every node under it that the kernel holds stand
// for the keys under prefix, after a directory rename moved them there.
func (d *dirNode) retarget(prefix string) {
	d.mu.Lock()
	old := d.prefix
	d.prefix = prefix
	d.entries, d.names, d.lookups, d.listBytes = nil, nil, nil, 0
	d.mu.Unlock()
	d.m.inodes.rename(d.bucket, old, prefix, d.StableAttr().Ino)
	for name, ch := range d.Children() {
		switch n := ch.Operations().(type) {
		case *dirNode:
			n.retarget(prefix + name + "/")
		case *fileNode:
			n.retarget(prefix + name)
		}
	}
}

// retarget makes f stand for key after a directory rename moved it;
// what it knows of its object is refreshed when next asked.
func (f *fileNode) retarget(key string) {
	f.mu.Lock()
	old := f.inoKey
	f.key, f.inoKey = key, key
	f.meta.Key = key
	f.metaAt, f.headAt = time.Time{}, time.Time{}
	f.mu.Unlock()
	f.m.inodes.rename(f.bucket, old, key, f.StableAttr().Ino)
}

// releaseWait is how long a directory rename waits for the files under it
// that have a staged copy to let it go. FUSE sends a handle's RELEASE
// after close(2) has returned, and the staged copy goes only then: `cp x
// d/ && mv d e` would otherwise fail at random with EBUSY. A file still
// open for writing after that makes the rename EBUSY: its handle would
// go on writing under the old name.
const releaseWait = 2 * time.Second

// waitUnstaged reports whether d's subtree has no file with a staged
// copy, waiting up to max for handles closed just before to be released.
func (d *dirNode) waitUnstaged(ctx context.Context, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for d.hasStagedDeep() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// hasStagedDeep is hasStaged for d's whole subtree as the kernel holds it.
func (d *dirNode) hasStagedDeep() bool {
	if d.hasStaged() {
		return true
	}
	for _, ch := range d.Children() {
		if sub, ok := ch.Operations().(*dirNode); ok && sub.hasStagedDeep() {
			return true
		}
	}
	return false
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
