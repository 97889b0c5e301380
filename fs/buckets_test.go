package fs

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestBucketsNode checks the all-buckets root outside a mount: it lists the
// buckets sorted as directories, once per MetadataTTL, answers lookups of
// unknown buckets with ENOENT from that list, and maps a failed ListBuckets
// to an errno.
func TestBucketsNode(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("zulu")
	f.CreateBucket("alpha")
	f.Seed("mike", "k", nil)
	cfg, clock, _ := testConfig(f, "")
	b, ok := NewRoot(cfg).(*bucketsNode)
	if !ok {
		t.Fatalf("NewRoot without a bucket is %T, want *bucketsNode", NewRoot(cfg))
	}

	stream, errno := b.Readdir(context.Background())
	if errno != 0 {
		t.Fatal(errno)
	}
	var names []string
	for stream.HasNext() {
		e, _ := stream.Next()
		if e.Mode != fuse.S_IFDIR || e.Ino != b.m.ino(e.Name, "") {
			t.Errorf("entry %+v, want a directory with ino %d", e, b.m.ino(e.Name, ""))
		}
		names = append(names, e.Name)
	}
	if want := []string{"alpha", "mike", "zulu"}; !slices.Equal(names, want) {
		t.Errorf("Readdir = %q, want %q", names, want)
	}

	f.CreateBucket("new")
	clock.Advance(cfg.MetadataTTL - time.Nanosecond)
	if _, errno := b.Lookup(context.Background(), "new", &fuse.EntryOut{}); errno != syscall.ENOENT {
		t.Errorf("Lookup of a bucket created after the listing, within the TTL: %v, want ENOENT", errno)
	}
	if got := f.Calls("ListBuckets"); got != 1 {
		t.Errorf("%d ListBuckets calls within the TTL, want 1", got)
	}
	clock.Advance(time.Nanosecond)
	_, sorted, errno := b.buckets(context.Background())
	if errno != 0 || !slices.Contains(sorted, "new") {
		t.Errorf("buckets after the TTL = %q, %v; want it to include new", sorted, errno)
	}
	if got := f.Calls("ListBuckets"); got != 2 {
		t.Errorf("%d ListBuckets calls after the TTL, want 2", got)
	}

	var attr fuse.AttrOut
	if errno := b.Getattr(context.Background(), nil, &attr); errno != 0 || attr.Mode != syscall.S_IFDIR|0o755 || attr.Ino != 1 {
		t.Errorf("root attributes %+v, %v", attr.Attr, errno)
	}

	f.SetFailure(func(op, _, _ string) error {
		return &store.Error{Op: op, Status: 403, Code: "AccessDenied", Kind: store.ErrAccessDenied}
	})
	clock.Advance(cfg.MetadataTTL)
	if _, errno := b.Readdir(context.Background()); errno != syscall.EACCES {
		t.Errorf("Readdir with ListBuckets denied: %v, want EACCES", errno)
	}
}

// TestNewRootDefaults checks the defaults NewRoot fills in: modes 0644 and
// 0755, a direct reader, and the wall clock.
func TestNewRootDefaults(t *testing.T) {
	f := store.NewFake()
	d := NewRoot(Config{Store: f, Bucket: "b", Prefix: "p/"}).(*dirNode)
	cfg := d.m.cfg
	if cfg.FileMode != 0o644 || cfg.DirMode != 0o755 {
		t.Errorf("modes %o %o, want 644 755", cfg.FileMode, cfg.DirMode)
	}
	if d.bucket != "b" || d.prefix != "p/" {
		t.Errorf("root is %s/%s, want b/p/", d.bucket, d.prefix)
	}
	if _, ok := cfg.NewReader(ObjectVersion{}).(*DirectReader); !ok {
		t.Error("the default reader is not a DirectReader")
	}
	if since := time.Since(cfg.Now()); since < -time.Minute || since > time.Minute {
		t.Errorf("default clock is off by %v", since)
	}
	if cfg.Log == nil || d.m.log == nil {
		t.Error("no default logger")
	}
	if got := fsName(cfg); got != "bucketfs:b/p/" {
		t.Errorf("fsName = %q", got)
	}
	if got := fsName(Config{}); got != "bucketfs" {
		t.Errorf("fsName of all buckets = %q", got)
	}
}
