package fs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// Archived objects (GLACIER, DEEP_ARCHIVE) cannot be read until a restore
// completes. The tree shows them with their real size and mode 0000 while
// unreadable; opening one fails with EACCES (no restore) or EAGAIN (restore
// running), with one warning per object naming the command that restores
// it. Extended attributes show the storage class and restore state, and
// setting user.s3.restore starts a restore. A GET answered with 403
// InvalidObjectState is taken as authoritative: an object archived after it
// was listed turns archived at once.

// Extended attribute names.
const (
	xattrClass   = "user.s3.storage_class"
	xattrRestore = "user.s3.restore"
	xattrETag    = "user.s3.etag"
	xattrMeta    = "user.meta."
)

// archiveState is what a file's archive tier means for reading it.
type archiveState int

const (
	notArchived  archiveState = iota // readable directly
	archivedCold                     // archived, no restore: EACCES
	restoring                        // restore running: EAGAIN
	restored                         // restored copy readable until its expiry
)

// stateOf derives the archive state of o at now. forced marks an object a
// GET found archived although its metadata did not say so.
func stateOf(o store.Object, forced bool, now time.Time) archiveState {
	if !store.Archived(o.StorageClass) && !forced {
		return notArchived
	}
	switch {
	case o.Restore.Ongoing:
		return restoring
	case o.Restore.Readable(now):
		return restored
	}
	return archivedCold
}

// readable reports whether a file in state s can be opened.
func (s archiveState) readable() bool { return s == notArchived || s == restored }

// restoreXattr is the user.s3.restore value for state s ("" when absent).
func restoreXattr(s archiveState, o store.Object) string {
	switch s {
	case archivedCold:
		return "archived"
	case restoring:
		return "ongoing"
	case restored:
		return "restored until " + o.Restore.Expiry.UTC().Format(time.RFC3339)
	}
	return ""
}

// state returns the file's current archive state and attributes.
func (f *fileNode) state() (archiveState, store.Object) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return stateOf(f.meta, f.forcedArchived, f.m.now()), f.meta
}

// path is the file's path under the mountpoint, for messages.
func (f *fileNode) path() string {
	rel := strings.TrimPrefix(f.name(), f.m.cfg.Prefix)
	if f.m.cfg.Bucket == "" {
		rel = f.bucket + "/" + f.name()
	}
	return filepath.Join(f.m.cfg.Mountpoint, rel)
}

// unreadableErrno answers an open of a file that is archived and not
// restored, starting a restore first with --auto-restore.
func (f *fileNode) unreadableErrno(ctx context.Context, s archiveState, o store.Object) syscall.Errno {
	f.m.cfg.Counters.ArchivedHits.Add(1)
	p := f.path()
	cmd := fmt.Sprintf("setfattr -n %s -v 1 %s  (or: bucketfs restore %s)", xattrRestore, shellQuote(p), shellQuote(p))
	if s == archivedCold && f.m.cfg.AutoRestoreDays > 0 {
		if err := f.startRestore(ctx, f.m.cfg.AutoRestoreDays, ""); err == nil || errors.Is(err, store.ErrRestoreInProgress) {
			f.m.logOnce(fmt.Sprintf("archived object: restore started (--auto-restore); %s reads fail with EAGAIN until it completes", p), f.bucket, f.name())
			return syscall.EAGAIN
		} else {
			f.log().WithError(err).Warn("auto-restore failed")
		}
	}
	if s == restoring {
		f.m.logOnce(fmt.Sprintf("archived object %s is being restored (%s); reads fail with EAGAIN until the restore completes", p, o.StorageClass), f.bucket, f.name()+"\x00restoring")
		return syscall.EAGAIN
	}
	f.m.logOnce(fmt.Sprintf("archived object %s (%s) cannot be read until restored; restore it with: %s", p, classOrArchived(o), cmd), f.bucket, f.name()+"\x00archived")
	return syscall.EACCES
}

func classOrArchived(o store.Object) string {
	if o.StorageClass != "" {
		return o.StorageClass
	}
	return "archive tier"
}

// shellQuote quotes s for a shell command line.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// startRestore asks the store to restore the object and records that a
// restore runs (or was extended).
func (f *fileNode) startRestore(ctx context.Context, days int32, tier string) error {
	out, err := f.m.cfg.Store.Restore(ctx, store.RestoreInput{Bucket: f.bucket, Key: f.name(), Days: days, Tier: tier})
	switch {
	case errors.Is(err, store.ErrRestoreInProgress):
		f.noteRestoring()
		return err
	case err != nil:
		return err
	case out == store.RestoreStarted:
		f.log().WithField("days", days).Info("restore started")
		f.noteRestoring()
	default:
		f.log().WithField("days", days).Info("restore extended")
		// The new expiry comes with the next HEAD.
		if _, err := f.revalidate(ctx); err != nil {
			f.log().WithError(err).Debug("refreshing after restore")
		}
	}
	return nil
}

// noteRestoring records a running restore and watches it.
func (f *fileNode) noteRestoring() {
	f.mu.Lock()
	f.meta.Restore = store.RestoreState{Requested: true, Ongoing: true}
	f.metaAt = f.m.now()
	f.mu.Unlock()
	f.watchRestore()
}

// watchRestore has the mount's restore watcher check the running restore
// until it completes, then make the file readable without a remount.
func (f *fileNode) watchRestore() { f.m.restores.watch(f) }

// sawArchived handles a GET answered 403 InvalidObjectState: the object
// was archived after it was listed. Its attributes are refreshed and it
// turns unreadable at once.
func (f *fileNode) sawArchived(ctx context.Context) {
	o, err := f.revalidate(ctx)
	f.mu.Lock()
	if err != nil || !store.Archived(o.StorageClass) {
		f.forcedArchived = true
	}
	f.mu.Unlock()
	f.invalidate()
}

// invalidate drops the kernel's cached attributes and pages of the file,
// so a changed mode shows at once. The kernel may hold locks while it
// waits for this daemon, so it is sent from another goroutine.
func (f *fileNode) invalidate() {
	if f.StableAttr().Ino == 0 {
		return // not in the tree yet: the kernel has nothing cached
	}
	go f.NotifyContent(0, 0)
}

// Xattrs of files.

var (
	_ = (gofs.NodeGetxattrer)((*fileNode)(nil))
	_ = (gofs.NodeListxattrer)((*fileNode)(nil))
	_ = (gofs.NodeSetxattrer)((*fileNode)(nil))
	_ = (gofs.NodeRemovexattrer)((*fileNode)(nil))
)

// xattrs returns the file's extended attributes, with a HEAD when the
// object's own metadata has not been fetched within the metadata TTL.
func (f *fileNode) xattrs(ctx context.Context) (map[string]string, []string, error) {
	f.mu.Lock()
	headed := f.headAt.After(f.m.now().Add(-f.m.cfg.MetadataTTL)) || f.w != nil
	f.mu.Unlock()
	if !headed {
		if _, err := f.revalidate(ctx); err != nil {
			return nil, nil, err
		}
	}
	s, o := f.state()
	vals := map[string]string{}
	names := []string{xattrClass, xattrETag}
	class := o.StorageClass
	if class == "" {
		class = "STANDARD"
	}
	vals[xattrClass] = class
	vals[xattrETag] = strings.Trim(o.ETag, `"`)
	if r := restoreXattr(s, o); r != "" {
		vals[xattrRestore] = r
		names = append(names, xattrRestore)
	}
	for k, v := range o.Metadata {
		vals[xattrMeta+k] = v
		names = append(names, xattrMeta+k)
	}
	if f.m.cfg.Disk != nil {
		names = append(names, xattrCached)
	}
	if f.m.writable() {
		names = append(names, xattrPending)
	}
	return vals, names, nil
}

// Getxattr implements gofs.NodeGetxattrer.
func (f *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, "user.") {
		return 0, syscall.ENODATA
	}
	if attr == xattrCached {
		return f.cachedXattr(dest)
	}
	if attr == xattrPending {
		return f.pendingXattr(dest)
	}
	vals, _, err := f.xattrs(ctx)
	if err != nil {
		return 0, toErrno(f.log(), err)
	}
	v, ok := vals[attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	return xattrReply([]byte(v), dest)
}

// Listxattr implements gofs.NodeListxattrer.
func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	_, names, err := f.xattrs(ctx)
	if err != nil {
		return 0, toErrno(f.log(), err)
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(0)
	}
	return xattrReply([]byte(b.String()), dest)
}

// Setxattr implements gofs.NodeSetxattrer: setting user.s3.restore to a
// number of days (optionally followed by a tier: "3 Bulk") restores the
// object; setting user.bucketfs.warm fetches it into the disk cache. Every
// other attribute is read-only.
//
// A restore is billed to the bucket's owner, and on an allow_other mount
// any local user reaches this: only a caller who may read the file (by the
// mode it has once restored, its owner and group) or root may start one.
// Others get EACCES and nothing is sent. Warming checks the same.
func (f *fileNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if attr == xattrWarm {
		return f.warm(ctx)
	}
	if attr == xattrClass {
		return f.setClass(ctx, strings.TrimRight(string(data), "\x00\n"))
	}
	if attr != xattrRestore {
		return syscall.EROFS
	}
	if errno := f.checkAccess(ctx, rOK); errno != 0 {
		f.log().WithField("uid", callerUID(ctx)).Warn("restore refused: the caller may not read the file")
		return errno
	}
	days, tier, err := parseRestoreValue(string(data))
	if err != nil {
		f.log().WithError(err).Warn("bad user.s3.restore value")
		return syscall.EINVAL
	}
	// A restore once asked for is seen through: an interrupted caller
	// (a signal) must not leave it sent but unrecorded.
	err = f.startRestore(context.WithoutCancel(ctx), days, tier)
	switch {
	case err == nil, errors.Is(err, store.ErrRestoreInProgress):
		f.invalidate()
		return 0
	case errors.Is(err, store.ErrInvalidObjectState):
		f.log().Warn("restore asked for an object that is not archived")
		return syscall.EINVAL
	}
	return toErrno(f.log(), err)
}

// Removexattr implements gofs.NodeRemovexattrer.
func (f *fileNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EROFS
}

// parseRestoreValue reads "<days>" or "<days> <tier>".
func parseRestoreValue(v string) (int32, string, error) {
	fields := strings.Fields(strings.TrimRight(v, "\x00"))
	if len(fields) == 0 || len(fields) > 2 {
		return 0, "", fmt.Errorf("want DAYS or DAYS TIER, got %q", v)
	}
	days, err := strconv.ParseInt(fields[0], 10, 32)
	if err != nil || days < 1 || days > 36500 {
		return 0, "", fmt.Errorf("days must be a number from 1 to 36500, got %q", fields[0])
	}
	tier := ""
	if len(fields) == 2 {
		switch t := strings.ToLower(fields[1]); t {
		case "standard", "bulk", "expedited":
			tier = strings.ToUpper(t[:1]) + t[1:]
		default:
			return 0, "", fmt.Errorf("tier must be Standard, Bulk or Expedited, got %q", fields[1])
		}
	}
	return int32(days), tier, nil
}
