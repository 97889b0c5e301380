package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// bucketsNode is the root in all-buckets mode: one directory per bucket.
type bucketsNode struct {
	base

	// Mutable state
	mu       sync.Mutex      // protects the following
	names    map[string]bool // GUARDED_BY(mu); the bucket names listed
	sorted   []string        // GUARDED_BY(mu); the same names, in the order listed
	listedAt time.Time       // GUARDED_BY(mu)
}

var (
	_ = (gofs.NodeLookuper)((*bucketsNode)(nil))
	_ = (gofs.NodeReaddirer)((*bucketsNode)(nil))
	_ = (gofs.NodeGetattrer)((*bucketsNode)(nil))
)

// Getattr implements gofs.NodeGetattrer.
func (b *bucketsNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	b.m.dirAttr(&out.Attr, 1)
	return 0
}

// buckets returns the bucket names, listing them once per metadata TTL.
func (b *bucketsNode) buckets(ctx context.Context) (map[string]bool, []string, syscall.Errno) {
	now := b.m.now()
	b.mu.Lock()
	if b.names != nil && now.Sub(b.listedAt) < b.m.cfg.MetadataTTL {
		defer b.mu.Unlock()
		return b.names, b.sorted, 0
	}
	b.mu.Unlock()
	list, err := b.m.cfg.Store.ListBuckets(ctx)
	if err != nil {
		return nil, nil, toErrno(b.m.log, err)
	}
	names := map[string]bool{}
	var sorted []string
	for _, bk := range list {
		if !validName(bk.Name) {
			continue
		}
		names[bk.Name] = true
		sorted = append(sorted, bk.Name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.names, b.sorted, b.listedAt = names, sorted, now
	return names, sorted, 0
}

// Readdir implements gofs.NodeReaddirer.
func (b *bucketsNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	_, sorted, errno := b.buckets(ctx)
	if errno != 0 {
		return nil, errno
	}
	out := make([]fuse.DirEntry, 0, len(sorted))
	for _, n := range sorted {
		out = append(out, fuse.DirEntry{Name: n, Mode: fuse.S_IFDIR, Ino: b.m.ino(n, "")})
	}
	return gofs.NewListDirStream(out), 0
}

// Lookup implements gofs.NodeLookuper.
func (b *bucketsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := checkAccess(ctx, b.m.cfg.DirMode, b.m.cfg.UID, b.m.cfg.GID, xOK); errno != 0 {
		return nil, errno
	}
	names, _, errno := b.buckets(ctx)
	if errno != 0 {
		return nil, errno
	}
	if !names[name] {
		return nil, syscall.ENOENT
	}
	ch := b.GetChild(name)
	if ch == nil {
		ch = b.m.newInode(ctx, &b.Inode, &dirNode{base: base{m: b.m}, bucket: name}, fuse.S_IFDIR, name, "")
	}
	b.m.dirAttr(&out.Attr, ch.StableAttr().Ino)
	return ch, 0
}
