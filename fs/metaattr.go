package fs

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// Attributes that S3 does not have are kept in an object's user metadata,
// under the names rclone uses, so trees written by either tool show the
// same times and modes:
//
//	x-amz-meta-mtime  seconds since the epoch with nine decimals ("1700000000.123456789")
//	x-amz-meta-mode   st_mode in octal, file type included ("100644")
//	x-amz-meta-uid, x-amz-meta-gid  decimal
//
// A file without them shows the object's LastModified, the mount's
// --file-mode and its --uid/--gid.
const (
	metaMtime = "mtime"
	metaMode  = "mode"
	metaUID   = "uid"
	metaGID   = "gid"
)

// fileAttrs are the attributes a file shows.
type fileAttrs struct {
	perm     os.FileMode
	uid, gid uint32
	mtime    time.Time
}

// attrsOf derives a file's attributes from o and its metadata.
func (m *mountState) attrsOf(o store.Object) fileAttrs {
	a := fileAttrs{perm: m.cfg.FileMode.Perm(), uid: m.cfg.UID, gid: m.cfg.GID, mtime: o.LastModified}
	if t, ok := parseMtime(o.Metadata[metaMtime]); ok {
		a.mtime = t
	}
	if v, err := strconv.ParseUint(strings.TrimSpace(o.Metadata[metaMode]), 8, 32); err == nil {
		a.perm = os.FileMode(v & 0o777)
	}
	if v, err := strconv.ParseUint(strings.TrimSpace(o.Metadata[metaUID]), 10, 32); err == nil {
		a.uid = uint32(v)
	}
	if v, err := strconv.ParseUint(strings.TrimSpace(o.Metadata[metaGID]), 10, 32); err == nil {
		a.gid = uint32(v)
	}
	return a
}

// formatMtime renders t as rclone does.
func formatMtime(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// parseMtime reads "SECONDS[.FRACTION]" without the rounding of a float.
func parseMtime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	secs, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ns int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		frac += strings.Repeat("0", 9-len(frac))
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil || ns < 0 {
			return time.Time{}, false
		}
	}
	if sec < 0 && ns > 0 {
		sec, ns = sec-1, 1e9-ns
	}
	return time.Unix(sec, ns), true
}

// checkAccess checks the caller of ctx against the file's own mode and
// owner (its metadata's, else the mount's).
func (f *fileNode) checkAccess(ctx context.Context, want uint32) syscall.Errno {
	_, o := f.state()
	a := f.m.attrsOf(o)
	return f.m.checkAccess(ctx, a.perm, a.uid, a.gid, want)
}

// checkAccess is checkAccess for this mount: changes fail with EROFS
// when it is read-only.
func (m *mountState) checkAccess(ctx context.Context, perm os.FileMode, uid, gid uint32, want uint32) syscall.Errno {
	if want&wOK != 0 && !m.writable() {
		return syscall.EROFS
	}
	return checkAccess(ctx, perm, uid, gid, want)
}

// writable reports whether the mount takes changes.
func (m *mountState) writable() bool {
	return m.cfg.Writer != nil && !m.cfg.ReadOnly
}
