package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// bucketfs mounts without the kernel's default_permissions and checks
// permissions itself, so that opening an archived file whose restore is
// running can answer EAGAIN rather than the kernel's EACCES for mode 0000.
// It is also why a --read-only mount is not "ro": setting user.s3.restore
// must reach the daemon. On such a mount (or one without a write path)
// every other change is refused with EROFS.

// Permission bits asked for, as in access(2).
const (
	xOK = 1
	wOK = 2
	rOK = 4
)

// checkAccess checks the caller of ctx against perm (owned by uid:gid) for
// the bits in want. Root may read anything and search any directory (as
// CAP_DAC_OVERRIDE allows). Supplementary groups are not known to FUSE: only
// the primary group counts.
func checkAccess(ctx context.Context, perm os.FileMode, uid, gid uint32, want uint32) syscall.Errno {
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return 0
	}
	if caller.Uid == 0 {
		return 0
	}
	bits := uint32(perm.Perm())
	switch {
	case caller.Uid == uid:
		bits >>= 6
	case caller.Gid == gid:
		bits >>= 3
	}
	if bits&want != want {
		return syscall.EACCES
	}
	return 0
}

// callerUID is the uid of ctx's caller, for messages; -1 when unknown.
func callerUID(ctx context.Context) int64 {
	if c, ok := fuse.FromContext(ctx); ok {
		return int64(c.Uid)
	}
	return -1
}

var (
	_ = (gofs.NodeAccesser)((*base)(nil))
	_ = (gofs.NodeMkdirer)((*base)(nil))
	_ = (gofs.NodeMknoder)((*base)(nil))
	_ = (gofs.NodeCreater)((*base)(nil))
	_ = (gofs.NodeUnlinker)((*base)(nil))
	_ = (gofs.NodeRmdirer)((*base)(nil))
	_ = (gofs.NodeRenamer)((*base)(nil))
	_ = (gofs.NodeLinker)((*base)(nil))
	_ = (gofs.NodeSymlinker)((*base)(nil))
	_ = (gofs.NodeSetattrer)((*base)(nil))
	_ = (gofs.NodeOpendirer)((*dirNode)(nil))
	_ = (gofs.NodeOpendirer)((*bucketsNode)(nil))
)

// Access implements gofs.NodeAccesser.
func (b *base) Access(ctx context.Context, mask uint32) syscall.Errno {
	perm, uid, gid := b.m.cfg.DirMode, b.m.cfg.UID, b.m.cfg.GID
	if f, ok := b.EmbeddedInode().Operations().(*fileNode); ok {
		s, o := f.state()
		a := f.m.attrsOf(o)
		perm, uid, gid = a.perm, a.uid, a.gid
		if !s.readable() {
			perm = 0
		}
		// Even root may execute only a file with an execute bit.
		if mask&xOK != 0 && perm&0o111 == 0 {
			return syscall.EACCES
		}
	}
	if _, ok := b.EmbeddedInode().Operations().(*bucketsNode); ok && mask&wOK != 0 {
		return syscall.EROFS // buckets are not made or removed through the mount
	}
	return b.m.checkAccess(ctx, perm, uid, gid, mask)
}

// Opendir implements gofs.NodeOpendirer.
func (d *dirNode) Opendir(ctx context.Context) syscall.Errno {
	return checkAccess(ctx, d.m.cfg.DirMode, d.m.cfg.UID, d.m.cfg.GID, rOK)
}

// Opendir implements gofs.NodeOpendirer.
func (b *bucketsNode) Opendir(ctx context.Context) syscall.Errno {
	return checkAccess(ctx, b.m.cfg.DirMode, b.m.cfg.UID, b.m.cfg.GID, rOK)
}

// The defaults every node inherits: directories and files override what
// they support (dirwrite.go, write.go, setattr.go); the all-buckets root
// refuses every change with EROFS.

func (b *base) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (b *base) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (b *base) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (b *base) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

func (b *base) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

func (b *base) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (b *base) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (b *base) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (b *base) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}
