package fs

import (
	"context"
	"encoding/json"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// statsXattr names the mount root's attribute holding the daemon's counters.
const statsXattr = "user.bucketfs.stats"

var (
	_ = (gofs.NodeGetxattrer)((*dirNode)(nil))
	_ = (gofs.NodeListxattrer)((*dirNode)(nil))
	_ = (gofs.NodeGetxattrer)((*bucketsNode)(nil))
	_ = (gofs.NodeListxattrer)((*bucketsNode)(nil))
)

// Getxattr implements gofs.NodeGetxattrer.
func (d *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return d.rootXattr(d.IsRoot(), attr, dest)
}

// Listxattr implements gofs.NodeListxattrer.
func (d *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return d.rootXattrList(d.IsRoot(), dest)
}

// Getxattr implements gofs.NodeGetxattrer.
func (b *bucketsNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return b.rootXattr(true, attr, dest)
}

// Listxattr implements gofs.NodeListxattrer.
func (b *bucketsNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return b.rootXattrList(true, dest)
}

// rootXattr answers the stats attribute on the mount root.
func (b *base) rootXattr(isRoot bool, attr string, dest []byte) (uint32, syscall.Errno) {
	if !isRoot || attr != statsXattr || b.m.cfg.Stats == nil {
		return 0, syscall.ENODATA
	}
	val, err := json.Marshal(b.m.cfg.Stats())
	if err != nil {
		return 0, syscall.EIO
	}
	return xattrReply(val, dest)
}

func (b *base) rootXattrList(isRoot bool, dest []byte) (uint32, syscall.Errno) {
	if !isRoot || b.m.cfg.Stats == nil {
		return 0, 0
	}
	return xattrReply([]byte(statsXattr+"\x00"), dest)
}

// xattrReply copies val into dest, or says how big dest must be (a
// zero-length dest asks for the size).
func xattrReply(val, dest []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(val)), 0
	}
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}
