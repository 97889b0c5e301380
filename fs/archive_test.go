package fs

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestStateOf maps storage class and restore state to what a reader sees.
func TestStateOf(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name   string
		o      store.Object
		forced bool
		want   archiveState
	}{
		{"standard", store.Object{}, false, notArchived},
		{"glacier ir", store.Object{StorageClass: "GLACIER_IR"}, false, notArchived},
		{"minio tier name", store.Object{StorageClass: "WARM-TIER"}, false, notArchived},
		{"glacier", store.Object{StorageClass: "GLACIER"}, false, archivedCold},
		{"deep archive restoring", store.Object{StorageClass: "DEEP_ARCHIVE", Restore: store.RestoreState{Requested: true, Ongoing: true}}, false, restoring},
		{"restored", store.Object{StorageClass: "GLACIER", Restore: store.RestoreState{Requested: true, Expiry: now.Add(time.Hour)}}, false, restored},
		{"restore expired", store.Object{StorageClass: "GLACIER", Restore: store.RestoreState{Requested: true, Expiry: now.Add(-time.Hour)}}, false, archivedCold},
		{"versitygw dateless", store.Object{StorageClass: "GLACIER", Restore: store.RestoreState{Requested: true}}, false, archivedCold},
		{"refused by GET", store.Object{StorageClass: "STANDARD"}, true, archivedCold},
	} {
		if got := stateOf(c.o, c.forced, now); got != c.want {
			t.Errorf("%s: state %d, want %d", c.name, got, c.want)
		}
	}
}

// TestParseRestoreValue covers the values setfattr may send.
func TestParseRestoreValue(t *testing.T) {
	for _, c := range []struct {
		in       string
		days     int32
		tier     string
		wantFail bool
	}{
		{"1", 1, "", false},
		{"7\x00", 7, "", false},
		{" 3 bulk ", 3, "Bulk", false},
		{"2 Expedited", 2, "Expedited", false},
		{"0", 0, "", true},
		{"-1", 0, "", true},
		{"36501", 0, "", true},
		{"x", 0, "", true},
		{"", 0, "", true},
		{"3 Fast", 0, "", true},
		{"3 Bulk extra", 0, "", true},
	} {
		days, tier, err := parseRestoreValue(c.in)
		if (err != nil) != c.wantFail || (!c.wantFail && (days != c.days || tier != c.tier)) {
			t.Errorf("parseRestoreValue(%q) = %d %q %v", c.in, days, tier, err)
		}
	}
}

// TestCheckAccess applies owner, group and other bits, root's override,
// and refuses every write.
func TestCheckAccess(t *testing.T) {
	for _, c := range []struct {
		name string
		ctx  context.Context
		perm uint32
		want uint32
		err  syscall.Errno
	}{
		{"owner reads 0600", as(1000, 1000), 0o600, rOK, 0},
		{"other reads 0600", as(2000, 2000), 0o600, rOK, syscall.EACCES},
		{"group reads 0640", as(2000, 1000), 0o640, rOK, 0},
		{"other reads 0644", as(2000, 2000), 0o644, rOK, 0},
		{"root reads 0000", as(0, 0), 0, rOK, 0},
		{"root searches 0600 dir", as(0, 0), 0o600, xOK, 0},
		{"other searches 0750 dir", as(2000, 2000), 0o750, xOK, syscall.EACCES},
		{"owner reads 0000", as(1000, 1000), 0, rOK, syscall.EACCES},
		{"owner writes 0644", as(1000, 1000), 0o644, wOK, 0},
		{"other writes 0644", as(2000, 2000), 0o644, wOK, syscall.EACCES},
		{"root writes 0444", as(0, 0), 0o444, wOK, 0},
		{"no caller", context.Background(), 0, rOK, 0},
	} {
		if got := checkAccess(c.ctx, osMode(c.perm), 1000, 1000, c.want); got != c.err {
			t.Errorf("%s: %v, want %v", c.name, got, c.err)
		}
	}
}

func osMode(p uint32) os.FileMode { return os.FileMode(p) }

// as is the context of a FUSE request from uid:gid.
func as(uid, gid uint32) context.Context {
	return &fuse.Context{Caller: fuse.Caller{Owner: fuse.Owner{Uid: uid, Gid: gid}}}
}

// TestRestoreNeedsReadPermission sets user.s3.restore as callers of a
// shared mount with files 0640 owned by 1000:1000: another user gets
// EACCES and no restore is sent; the owner, the group and root start one.
func TestRestoreNeedsReadPermission(t *testing.T) {
	for _, c := range []struct {
		name     string
		ctx      context.Context
		want     syscall.Errno
		restores int64
	}{
		{"other user", as(2000, 2000), syscall.EACCES, 0},
		{"owner", as(1000, 5), 0, 1},
		{"group", as(3000, 1000), 0, 1},
		{"root", as(0, 0), 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := store.NewFake()
			f.Seed("b", "old.mp3", []byte("archived set"))
			f.Archive("b", "old.mp3", "GLACIER")
			cfg, _, _ := testConfig(f, "b")
			cfg.UID, cfg.GID, cfg.FileMode = 1000, 1000, 0o640
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel) // ends the restore's watcher
			cfg.Ctx = ctx
			n := testFile(t, cfg, f, "old.mp3")
			if got := n.Setxattr(c.ctx, xattrRestore, []byte("3"), 0); got != c.want {
				t.Errorf("Setxattr = %v, want %v", got, c.want)
			}
			if got := f.Calls("RestoreObject"); got != c.restores {
				t.Errorf("%d RestoreObject calls, want %d", got, c.restores)
			}
		})
	}
}
