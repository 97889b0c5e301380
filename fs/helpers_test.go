package fs

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// fakeClock is a Config.Now that moves only when a test advances it, so TTL
// logic is tested without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testLog returns a logger that keeps its entries in a hook instead of
// printing them.
func testLog() (*logrus.Entry, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	return logrus.NewEntry(l), hook
}

// logged returns the entries of hook whose message contains msg.
func logged(hook *logtest.Hook, msg string) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, msg) {
			out = append(out, e)
		}
	}
	return out
}

// Messages the tree logs, matched by tests.
const (
	msgClash  = "object and directory share a name"
	msgBadKey = "skipping key that cannot be a file name"
)

// testConfig is a bucket mount of st with a fake clock and a captured log.
func testConfig(st store.Store, bucket string) (Config, *fakeClock, *logtest.Hook) {
	clock := newFakeClock()
	log, hook := testLog()
	return Config{
		Store:       st,
		Log:         log,
		Now:         clock.Now,
		Bucket:      bucket,
		MetadataTTL: time.Minute,
		NegativeTTL: 10 * time.Second,
	}, clock, hook
}

// testDir returns the root directory node of cfg, outside any mount: its
// listing and lookup logic can be called directly.
func testDir(t *testing.T, cfg Config) *dirNode {
	t.Helper()
	d, ok := NewRoot(cfg).(*dirNode)
	if !ok {
		t.Fatalf("NewRoot(%+v) is not a *dirNode", cfg)
	}
	return d
}

// testMount mounts the tree of cfg on a fresh directory with options close
// to Mount's, except that the kernel caches no entries or attributes: every
// lookup and stat reaches the tree, so the tree's own caching is what the
// test observes. Unlike Mount, it mounts "ro" with default_permissions, so
// the kernel refuses changes and checks modes itself: a test of bucketfs's
// own EROFS answers needs realMount. Debug output is on with -v and
// BUCKETFS_FUSE_DEBUG=1.
func testMount(t *testing.T, cfg Config) string {
	t.Helper()
	skipWithoutFUSE(t)
	dir := t.TempDir()
	var zero time.Duration
	opts := &gofs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		UID:             cfg.UID,
		GID:             cfg.GID,
		MountOptions: fuse.MountOptions{
			FsName:               fsName(cfg),
			Name:                 "bucketfs",
			Debug:                testing.Verbose() && os.Getenv("BUCKETFS_FUSE_DEBUG") == "1",
			MaxWrite:             1 << 20,
			MaxReadAhead:         1 << 20,
			MaxBackground:        64,
			DirectMount:          true,
			DirectMountStrict:    true,
			Options:              []string{"ro", "default_permissions"},
			IgnoreSecurityLabels: true,
			PanicHandler: func(v any) fuse.Status {
				t.Errorf("panic in FUSE handler: %v", v)
				return fuse.EIO
			},
		},
	}
	server, err := gofs.Mount(dir, NewRoot(cfg), opts)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() { unmount(t, server, dir) })
	return dir
}

// realMount mounts the tree of cfg with Mount, the options bucketfs runs
// with: the kernel caches entries and attributes for MetadataTTL.
func realMount(t *testing.T, cfg Config) string {
	t.Helper()
	skipWithoutFUSE(t)
	dir := t.TempDir()
	server, err := Mount(dir, cfg, MountOptions{Debug: testing.Verbose() && os.Getenv("BUCKETFS_FUSE_DEBUG") == "1"})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() { unmount(t, server, dir) })
	return dir
}

// skipWithoutFUSE skips a test that mounts when FUSE is unusable here, or
// fails it when CI is set: there a missing FUSE hides tests, not a machine.
func skipWithoutFUSE(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := os.Stat("/dev/fuse"); err != nil {
		why = "no /dev/fuse"
	} else if os.Geteuid() != 0 {
		why = "in-process mounts need root (DirectMount)"
	}
	switch {
	case why == "":
	case os.Getenv("CI") != "":
		t.Fatalf("%s (CI is set: a missing prerequisite fails)", why)
	default:
		t.Skip(why)
	}
}

// unmount unmounts, retrying briefly while the kernel still holds the mount
// busy (a process killed a moment ago), and waits for the server to stop.
func unmount(t *testing.T, server *fuse.Server, dir string) {
	t.Helper()
	var err error
	for range 50 {
		if err = server.Unmount(); err == nil {
			server.Wait()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("unmount %s: %v", dir, err)
}

// calls snapshots the fake's request counters.
type calls struct{ list, head, get, buckets int64 }

func callsOf(f *store.Fake) calls {
	return calls{
		list:    f.Calls("ListObjectsV2"),
		head:    f.Calls("HeadObject"),
		get:     f.Calls("GetObject"),
		buckets: f.Calls("ListBuckets"),
	}
}

func (c calls) sub(o calls) calls {
	return calls{list: c.list - o.list, head: c.head - o.head, get: c.get - o.get, buckets: c.buckets - o.buckets}
}

// newInoChecker returns a check that fails the test when a path's inode
// number is reserved (0 or 1), changes between calls, or is another
// checked path's number.
func newInoChecker() func(t *testing.T, path string, ino uint64) {
	var mu sync.Mutex
	byPath := map[string]uint64{}
	byIno := map[uint64]string{}
	return func(t *testing.T, path string, ino uint64) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if ino <= 1 {
			t.Errorf("%s has inode %d, a reserved number", path, ino)
		}
		if prev, ok := byPath[path]; ok && prev != ino {
			t.Errorf("%s has inode %d, earlier %d", path, ino, prev)
		}
		if other, ok := byIno[ino]; ok && other != path {
			t.Errorf("%s has inode %d, the number of %s", path, ino, other)
		}
		byPath[path], byIno[ino] = ino, path
	}
}
