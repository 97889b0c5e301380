// Package fs is bucketfs's FUSE node tree (go-fuse v2 fs API).
//
// The tree mirrors a bucket's keys split on "/": common prefixes are
// directories, objects are regular files. In all-buckets mode the root lists
// the account's buckets and each bucket is a directory.
//
// Metadata comes from ListObjectsV2 pages. A directory lists itself once per
// metadata TTL and answers the kernel's LOOKUPs (including the ones
// READDIRPLUS makes for every entry) from that listing, so `ls -l` costs one
// LIST per 1,000 entries and no HEAD per file. A name looked up outside a
// fresh listing costs one HEAD and one LIST in parallel; the answer, found or
// not, is cached (misses for a shorter time).
//
// Reads go through an ObjectReader that Config.NewReader makes for each open
// handle (see reader.go): the handle pins the ETag seen at open, and every
// GET carries If-Match, so a handle never mixes two versions of an object.
//
// The tree is read-only, but the mount is not "ro": bucketfs itself answers
// every change (write, create, remove, rename, setattr) with EROFS, so that
// setting user.s3.restore and user.bucketfs.warm still reaches it, and it
// checks permissions itself instead of the kernel (see access.go).
//
// Lock order: no lock of this package is taken while another of its locks
// is held; bucketsNode.mu, dirNode.mu, fileNode.mu, handle.mu,
// inodeTable.mu, listingCache.mu, restoreWatcher.mu, mountState.loggedMu
// and errLogs are all leaves. Where one call uses two, it releases the
// first before taking the second: a listing or lookup releases dirNode.mu
// before listingCache.stored or touch, and stored releases listingCache.mu
// before it drops other directories' listings (their dirNode.mu);
// fileNode.setMeta and noteRestoring release fileNode.mu before
// restoreWatcher.watch, and the watcher releases its mu before a check
// takes fileNode.mu; a handle's mu and its node's mu are taken one after
// the other in Open and Read; OnForget takes inodeTable.mu, then
// listingCache.mu or restoreWatcher.mu. Since dirNode.mu and
// listingCache.mu, and fileNode.mu and restoreWatcher.mu, are each taken
// in both orders, nesting either pair would risk a deadlock. No lock is
// held while calling go-fuse or the store; held locks call out only to
// Config.Now (fileNode.mu, in state, noteRestoring and xattrs) and
// Config.NewReader (handle.mu, in repin), which therefore must not call
// back into the tree. The one exception is readOrder.mu (ahead.go): taken
// with no other lock held, after dirNode.mu is released, it is held while
// the detector looks up a child (go-fuse's GetChild, which calls nothing
// of ours), takes that child's fileNode.mu and calls Config.Ahead, which
// must not call back into the tree either.
package fs

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/counters"
	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Config is what the node tree needs.
type Config struct {
	// Dependencies
	Store store.Store
	// NewReader opens the read path for a pinned object version; nil means
	// DirectReader (one ranged GET per kernel read).
	NewReader func(v ObjectVersion) ObjectReader
	Log       *logrus.Entry
	// Stats, if set, returns the daemon's counters (the tree's own among
	// them: see Counters.Counters); the mount root shows them as JSON in
	// the extended attribute user.bucketfs.stats.
	Stats func() map[string]int64
	// Counters, if set, receives the tree's own counters.
	Counters *Counters
	// Disk, if set, is the read path's disk cache: files then answer the
	// user.bucketfs.cached attribute and setting user.bucketfs.warm
	// fetches a whole file into it (bucketfs warm).
	Disk DiskCache
	// Ahead, if set, fetches a directory's next small files before they
	// are opened when its files are opened in listing order (ahead.go).
	Ahead FilesAhead
	// ListContent, if set, makes listings ask a Tigris server for small
	// files' content (store.ListInput.WithContent) and gives what comes
	// (checked by the store) to the read path's cache, so those files read
	// with no GET.
	ListContent ContentCache
	// Now returns the current time; nil means time.Now. Tests pass a fake
	// clock to check TTLs without sleeping.
	Now func() time.Time
	// Writer is the write path; nil makes the mount read-only (every
	// change fails with EROFS, as with ReadOnly).
	Writer *write.Manager

	// Constant data
	// Bucket is empty for all-buckets mode.
	Bucket string
	// Prefix is the key prefix of the mount root; empty or ending in "/".
	Prefix      string
	UID, GID    uint32
	FileMode    os.FileMode
	DirMode     os.FileMode
	MetadataTTL time.Duration
	NegativeTTL time.Duration
	// Mountpoint is where the tree is mounted, for messages.
	Mountpoint string
	// AutoRestoreDays, when > 0, makes opening an archived object start a
	// restore for that many days.
	AutoRestoreDays int32
	// RestorePoll is the first interval between HEADs checking a running
	// restore; it doubles up to 16 times that. Zero means one minute.
	RestorePoll time.Duration
	// ListingBudget bounds the bytes of cached directory listings and
	// single-name answers, all directories together; zero means
	// DefaultListingBudget.
	ListingBudget int64
	// RestoreCheckRate caps the HEADs per second checking running
	// restores, for all files together; zero means 50.
	RestoreCheckRate float64
	// Ctx bounds background work (restore watchers); nil means none.
	Ctx context.Context
	// ReadOnly refuses every change with EROFS (--read-only); setting
	// user.s3.restore and user.bucketfs.warm still works.
	ReadOnly bool
	// TigrisRename renames files with Tigris's metadata-only rename
	// (X-Tigris-Rename) instead of copy and delete.
	TigrisRename bool
	// RenameDirLimit is the most keys a directory rename moves
	// server-side; a larger directory fails with EXDEV, so mv copies it.
	// Zero means DefaultRenameDirLimit.
	RenameDirLimit int
}

// DefaultRenameDirLimit is the most keys a directory rename moves.
const DefaultRenameDirLimit = 1000

// Counters are the tree's own counters.
type Counters struct {
	// ArchivedHits counts opens and reads refused because the object is
	// archived and not restored.
	ArchivedHits atomic.Int64
	// WarningsSuppressed counts once-only warnings not logged because
	// the mount already remembers maxLoggedOnce of them.
	WarningsSuppressed atomic.Int64
	// ListingBytes is what the cached directory listings hold now (at
	// most Config.ListingBudget): the daemon adds it to its Go memory
	// limit.
	ListingBytes atomic.Int64
}

// Counters lists the tree's counters.
func (c *Counters) Counters() []counters.Counter {
	return []counters.Counter{
		counters.New("archived_hits", "Opens and reads refused because the object is archived and not restored.", c.ArchivedHits.Load),
		counters.New("warnings_suppressed", "Once-only warnings (bad keys, name clashes) not logged because the mount already remembers as many as it keeps.", c.WarningsSuppressed.Load),
	}
}

// mountState is shared by every node of one mount.
type mountState struct {
	// Dependencies
	// inodes numbers every key the kernel sees.
	inodes *inodeTable
	// restores checks running restores.
	restores *restoreWatcher
	// listings bounds the bytes of cached directory listings.
	listings *listingCache

	// Constant data
	ctx     context.Context
	cfg     Config
	log     *logrus.Entry
	now     func() time.Time
	started time.Time

	// Mutable state
	loggedMu sync.Mutex // protects the following
	// logged remembers messages already logged once (key clashes, bad
	// keys), at most maxLoggedOnce of them.
	logged map[string]bool // GUARDED_BY(loggedMu)
}

// ino returns the inode number of bucket and key (directory keys end in
// "/"; a bucket in all-buckets mode is key "").
func (m *mountState) ino(bucket, key string) uint64 {
	return m.inodes.number(bucket, key)
}

// maxLoggedOnce bounds the messages logOnce remembers: a bucket of a
// million bad keys must not grow the daemon. Past it, warnings are counted
// (Counters.WarningsSuppressed), not logged.
const maxLoggedOnce = 4096

// logOnce logs msg with the key once per mount.
func (m *mountState) logOnce(msg, bucket, key string) {
	k := msg + "\x00" + bucket + "\x00" + key
	m.loggedMu.Lock()
	seen, full := m.logged[k], len(m.logged) >= maxLoggedOnce
	if !seen && !full {
		if m.logged == nil {
			m.logged = map[string]bool{}
		}
		m.logged[k] = true
	}
	m.loggedMu.Unlock()
	switch {
	case seen:
	case full:
		if m.cfg.Counters.WarningsSuppressed.Add(1) == 1 {
			m.log.Warnf("%d distinct warnings logged; further ones are only counted (warnings_suppressed in user.bucketfs.stats)", maxLoggedOnce)
		}
	default:
		m.log.WithFields(logrus.Fields{"bucket": bucket, "key": key}).Warn(msg)
	}
}

// newInode returns the inode under parent for a node standing for bucket and
// key, numbered by the inode table. go-fuse returns the live inode instead
// when one has that number already (the same key: numbers are never
// shared), and ops is then unused.
func (m *mountState) newInode(ctx context.Context, parent *gofs.Inode, ops gofs.InodeEmbedder, mode uint32, bucket, key string) *gofs.Inode {
	ino := m.ino(bucket, key)
	in := parent.NewInode(ctx, ops, gofs.StableAttr{Mode: mode, Ino: ino})
	if in.Operations() == ops {
		m.inodes.acquire(bucket, key, ino)
	}
	return in
}

// NewRoot returns the root node for cfg.
func NewRoot(cfg Config) gofs.InodeEmbedder {
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Counters == nil {
		cfg.Counters = &Counters{}
	}
	if cfg.NewReader == nil {
		st := cfg.Store
		cfg.NewReader = func(v ObjectVersion) ObjectReader { return NewDirectReader(st, v) }
	}
	if cfg.FileMode == 0 {
		cfg.FileMode = 0o644
	}
	if cfg.DirMode == 0 {
		cfg.DirMode = 0o755
	}
	if cfg.RestorePoll == 0 {
		cfg.RestorePoll = time.Minute
	}
	if cfg.ListingBudget == 0 {
		cfg.ListingBudget = DefaultListingBudget
	}
	if cfg.RestoreCheckRate == 0 {
		cfg.RestoreCheckRate = 50
	}
	if cfg.Ctx == nil {
		cfg.Ctx = context.Background()
	}
	m := &mountState{cfg: cfg, log: cfg.Log, now: cfg.Now, started: cfg.Now(), ctx: cfg.Ctx, inodes: newInodeTable()}
	m.restores = newRestoreWatcher(m, cfg.RestoreCheckRate)
	m.listings = newListingCache(cfg.ListingBudget)
	if cfg.Counters != nil {
		m.listings.gauge = &cfg.Counters.ListingBytes
	}
	if cfg.Bucket == "" {
		return &bucketsNode{base: base{m: m}}
	}
	return &dirNode{base: base{m: m}, bucket: cfg.Bucket, prefix: cfg.Prefix}
}

// DefaultListingBudget is the bytes cached directory listings may hold:
// about 300,000 names. The daemon adds what they hold to its Go memory
// limit (Counters.ListingBytes).
const DefaultListingBudget = 64 << 20

// MountOptions holds the go-fuse options bucketfs mounts with.
type MountOptions struct {
	AllowOther bool
	Debug      bool
	// MaxRead is the largest READ the kernel sends. It is also the
	// read-ahead asked for at mount, which the kernel caps at its default
	// (128 KiB) unless SetKernelReadahead raises it.
	MaxRead int
}

// DefaultMaxRead is the MaxRead used when none is given.
const DefaultMaxRead = 1 << 20

// Mount mounts the tree for cfg at dir and returns the running server.
func Mount(dir string, cfg Config, mo MountOptions) (*fuse.Server, error) {
	if mo.MaxRead == 0 {
		mo.MaxRead = DefaultMaxRead
	}
	entryTTL, negTTL := cfg.MetadataTTL, cfg.NegativeTTL
	opts := &gofs.Options{
		EntryTimeout:    &entryTTL,
		AttrTimeout:     &entryTTL,
		NegativeTimeout: &negTTL,
		UID:             cfg.UID,
		GID:             cfg.GID,
		// Mode 0000 is meaningful here (archived objects): go-fuse would
		// otherwise turn it into 0644.
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			FsName:     fsName(cfg),
			Name:       "bucketfs",
			AllowOther: mo.AllowOther,
			Debug:      mo.Debug,
			// The kernel sends reads of up to MaxWrite bytes (it sets
			// max_read and max_pages from it) and reads ahead up to
			// MaxReadAhead: large requests instead of 128 KiB ones.
			MaxWrite:     mo.MaxRead,
			MaxReadAhead: mo.MaxRead,
			// The kernel's read-ahead requests are background requests,
			// at most this many in flight. Each costs the daemon two
			// buffers of MaxRead bytes (go-fuse's request buffer and the
			// reply's) outside the cache's budget: 16 keep that to 32 MiB
			// with 1 MiB reads, and are one or two per reader up to 8
			// readers; more readers share them.
			MaxBackground: 16,
			DirectMount:   true,
			// Not "ro" and no default_permissions: see access.go.
			Options: []string{},
			// Security labels are never stored in S3: go-fuse answers
			// them without calling the tree. (The kernel still sends
			// one, security.capability, before each write: go-fuse does
			// not offer HANDLE_KILLPRIV, which would stop it.)
			IgnoreSecurityLabels: true,
			// Replies come from memory buffers, never from a file
			// descriptor: go-fuse would set up a pipe for each read reply
			// before falling back to writev, and log a line for every
			// reply larger than a pipe (1 MiB reads).
			DisableSplice: true,
			Logger:        fuseLogger(cfg.Log, mo.Debug),
		},
	}
	return gofs.Mount(dir, NewRoot(cfg), opts)
}

// fuseLogger sends go-fuse's messages to the daemon's log: its request
// trace at info when --debug-fuse asks for it, its complaints as warnings.
func fuseLogger(l *logrus.Entry, debug bool) *log.Logger {
	if l == nil {
		l = logrus.NewEntry(logrus.StandardLogger())
	}
	level := logrus.WarnLevel
	if debug {
		level = logrus.InfoLevel
	}
	return log.New(logWriter{l.WithField("component", "fuse"), level}, "", 0)
}

// logWriter writes each line it is given as one log entry.
type logWriter struct {
	l     *logrus.Entry
	level logrus.Level
}

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Log(w.level, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// SetKernelReadahead raises the kernel's read-ahead for the mount at dir
// to bytes (MountOptions.MaxRead). FUSE caps what a filesystem asks for at
// mount time to the kernel default (128 KiB), which makes the kernel cut
// every large read into 128 KiB requests; the mount's backing device
// setting in sysfs is not capped. Needs root; without it the default stays.
func SetKernelReadahead(dir string, bytes int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	bdi := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(bdi, []byte(strconv.Itoa(bytes>>10)), 0)
}

func fsName(cfg Config) string {
	if cfg.Bucket == "" {
		return "bucketfs"
	}
	return "bucketfs:" + cfg.Bucket + "/" + cfg.Prefix
}

// base holds what every node shares.
type base struct {
	gofs.Inode
	m *mountState
}

var _ = (gofs.NodeStatfser)((*base)(nil))

// Statfs reports a large, empty filesystem so df and file managers work and
// disk-usage monitors do not alarm: object stores have no fixed capacity.
func (b *base) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const blocks = 1 << 40 // 4 PiB of 4 KiB blocks
	out.Bsize = 4096
	out.Frsize = 4096
	out.Blocks = blocks
	out.Bfree = blocks
	out.Bavail = blocks
	out.Files = 1 << 32
	out.Ffree = 1 << 32
	out.NameLen = maxNameLen
	return 0
}

// dirAttr fills attributes of a directory.
func (m *mountState) dirAttr(out *fuse.Attr, ino uint64) {
	out.Ino = ino
	out.Mode = syscall.S_IFDIR | uint32(m.cfg.DirMode.Perm())
	out.Nlink = 2
	out.Uid, out.Gid = m.cfg.UID, m.cfg.GID
	t := m.started
	out.SetTimes(&t, &t, &t)
	out.Blksize = blockSizeHint
}

// blockSizeHint is st_blksize: the I/O size programs should prefer.
const blockSizeHint = 1 << 20
