package cache

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bucketfs/bucketfs/counters"
	"github.com/jonboulle/clockwork"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The disk tier keeps blocks in files under a cache directory, across
// restarts of the daemon and reboots of the machine:
//
//	DIR/CACHEDIR.TAG         marks DIR as a cache (backup tools skip it)
//	DIR/BUCKETFS-CACHE       marks DIR as bucketfs's, with its format version
//	DIR/lock                 flock()ed by the daemon using DIR; holds its pid
//	DIR/blocks/ab/cdef...    one file per block, named by the SHA-256 of its key
//	DIR/tmp/                 blocks being written; emptied at start
//
// A block file is one 4 KiB page holding a header and the block's key,
// then the block's bytes (page-aligned, so reads copy whole pages). The
// header holds a CRC-32C of key and bytes, checked on every read: a torn
// or damaged file is deleted and reported as a miss, never served. Reads
// go through the kernel's page cache: on the machines measured, its
// read-ahead got more from the disk than O_DIRECT reads of whole blocks.
// Files are written under tmp/ (with O_DIRECT) and renamed into place
// without an fsync: a crash or a power cut can leave a renamed file whose
// bytes never reached the disk (empty, short or stale), and a stray
// temporary file. The checksum turns the first into a miss (the file is
// dropped and the block fetched again), never into wrong bytes; tmp/ is
// emptied at the next start.
//
// The index (sizes and recency, for eviction) lives in memory. At start it
// is rebuilt from the directory in the background, ordered by each file's
// modification time, which reads refresh; the cache serves lookups at once,
// since a block's file name follows from its key.

// DiskConfig configures a disk tier.
type DiskConfig struct {
	Dir string
	// MaxBytes bounds the bytes of block files.
	MaxBytes int64
	// MinFree is how many bytes of the filesystem holding Dir must stay
	// free; blocks are evicted (or not written) to keep them free.
	MinFree int64
	// MinFreePercent is MinFree as a percentage of the filesystem's size;
	// the larger of the two applies.
	MinFreePercent float64
	// QueueBlocks bounds blocks waiting to be written; 0 means 16. When
	// the queue is full new blocks are not written (reads never wait for
	// the disk).
	QueueBlocks int
	Log         *logrus.Entry
	// Clock stamps recency; nil means the wall clock.
	Clock clockwork.Clock
}

// DiskStats are the disk tier's counters.
type DiskStats struct {
	Hits       atomic.Int64 // blocks read from disk
	Misses     atomic.Int64 // lookups that found no block file
	Writes     atomic.Int64 // block files written
	WriteBytes atomic.Int64
	Dropped    atomic.Int64 // blocks not written: gone from memory before a writer was free, or no room
	Evictions  atomic.Int64 // block files deleted to stay inside the limits
	Corrupt    atomic.Int64 // block files that failed their checksum
	Bytes      atomic.Int64 // bytes of block files now
	Files      atomic.Int64 // block files now
}

// Disk is the disk tier. It is safe for concurrent use. A Cache opens it
// (Config.Disk) and is the only way in from outside the package.
//
// Lock order: sendMu -> mu.
type Disk struct {
	// Constant data
	dir      string
	maxBytes int64
	minFree  int64
	log      *logrus.Entry
	lock     *os.File
	// space returns the bytes available to us and the filesystem's size;
	// tests replace it.
	space func() (avail, total int64, err error)
	clock clockwork.Clock
	// memory looks a block up in the memory tier without counting a
	// lookup: blocks left out of a full write queue are written from it.
	memory func(Key) (*Block, bool)
	// scanned is closed once the index has been rebuilt.
	scanned chan struct{}

	// Mutable state
	mu       sync.Mutex               // protects the following
	entries  map[string]*diskEntry    // GUARDED_BY(mu)
	lru      list.List                // GUARDED_BY(mu); of *diskEntry, most recent first
	used     int64                    // GUARDED_BY(mu); bytes of entries and of files being written
	writing  map[string]chan struct{} // GUARDED_BY(mu); names being written; closed when done
	deferred map[Key]struct{}         // GUARDED_BY(mu); blocks left out of a full queue
	scanning bool                     // GUARDED_BY(mu)
	closed   bool                     // GUARDED_BY(mu)

	queue chan pendingWrite
	wg    sync.WaitGroup
	// sendMu orders Enqueue's sends against Close closing the queue.
	sendMu sync.RWMutex

	Stats DiskStats
}

// ErrCacheInUse is returned by New when another process holds the
// cache directory.
var ErrCacheInUse = errors.New("cache directory in use")

// openDisk opens (creating it if needed) the disk tier in cfg.Dir and takes
// its lock; memory is the memory tier's lookup (nil: blocks left out of a
// full queue are dropped). It starts rebuilding the index in the
// background and returns without waiting for it.
func openDisk(cfg DiskConfig, memory func(Key) (*Block, bool)) (*Disk, error) {
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("cache size must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	stale, err := prepareDir(dir)
	if err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	if stale != "" {
		cfg.Log.WithFields(logrus.Fields{"dir": dir, "was": stale}).
			Warn("disk cache: the directory holds blocks of another format; starting it afresh")
		err := os.RemoveAll(filepath.Join(dir, "blocks"))
		if err == nil {
			err = markFormat(dir)
		}
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("cache directory %s: %v", dir, err)
		}
	}
	d := &Disk{
		dir: dir, maxBytes: cfg.MaxBytes, log: cfg.Log, lock: lock, clock: cfg.Clock, memory: memory,
		entries: map[string]*diskEntry{}, writing: map[string]chan struct{}{}, deferred: map[Key]struct{}{},
	}
	d.space = d.statfs
	_, total, err := d.space()
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("cache directory %s: %v", dir, err)
	}
	d.minFree = max(cfg.MinFree, int64(float64(total)*cfg.MinFreePercent/100))
	// Only this process may write here now: leftovers are from a crash.
	if err := os.RemoveAll(filepath.Join(dir, "tmp")); err != nil {
		lock.Close()
		return nil, err
	}
	for _, sub := range []string{"tmp", "blocks"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			lock.Close()
			return nil, err
		}
	}
	d.queue = make(chan pendingWrite, cfg.QueueLen())
	d.scanning = true
	d.scanned = make(chan struct{})
	d.wg.Add(3)
	go d.scan()
	for range 2 {
		go d.writer()
	}
	return d, nil
}

// prepareDir creates dir with mode 0700, or checks that an existing dir is
// empty or a bucketfs cache, and makes it 0700. A directory is a bucketfs
// cache when it holds bucketfs's format file, or (from releases before the
// format file) exactly the CACHEDIR.TAG bucketfs wrote: a tag another tool
// wrote (cargo, ccache) does not make a directory ours. It reports a cache
// of another format as stale: the caller, once it holds the lock, empties
// bucketfs's own blocks/ and tmp/ and calls markFormat.
func prepareDir(dir string) (stale string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating cache directory: %v", err)
	}
	format, ferr := os.ReadFile(filepath.Join(dir, formatFile))
	tag, _ := os.ReadFile(filepath.Join(dir, "CACHEDIR.TAG"))
	switch {
	case ferr == nil && string(format) == formatLine:
	case ferr == nil && strings.HasPrefix(string(format), "bucketfs block cache"):
		stale = strings.TrimSpace(string(format))
	case ferr != nil && string(tag) == cacheDirTag:
		stale = "a bucketfs cache without a format file"
	default:
		names, err := readDirNames(dir)
		if err != nil {
			return "", fmt.Errorf("cache directory %s: %v", dir, err)
		}
		if len(names) > 0 {
			return "", fmt.Errorf("cache directory %s is not empty and is not a bucketfs cache; give an empty or new directory", dir)
		}
		if err := markFormat(dir); err != nil {
			return "", err
		}
	}
	// Cached blocks are object data: only the daemon's user may read them.
	return stale, os.Chmod(dir, 0o700)
}

// markFormat writes the files that make dir a bucketfs cache of this format.
func markFormat(dir string) error {
	// The tag first, the format file last, each renamed into place: a
	// crash leaves either no format file (an empty directory but for the
	// tag, taken as an earlier format) or a whole one.
	for _, f := range [][2]string{{"CACHEDIR.TAG", cacheDirTag}, {formatFile, formatLine}} {
		tmp := filepath.Join(dir, "."+f[0]+".tmp")
		err := os.WriteFile(tmp, []byte(f[1]), 0o600)
		if err == nil {
			err = os.Rename(tmp, filepath.Join(dir, f[0]))
		}
		if err != nil {
			return fmt.Errorf("cache directory %s: %v", dir, err)
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// lockDir takes an exclusive lock on dir's lock file and writes our pid in
// it. The kernel drops the lock when the process dies, however it dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache directory %s: %v", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := "another bucketfs"
			if p := strings.TrimSpace(string(pid)); p != "" {
				who += " (pid " + p + ")"
			}
			return nil, fmt.Errorf("%w: %s is used by %s; give each mount its own --cache-dir", ErrCacheInUse, dir, who)
		}
		return nil, fmt.Errorf("locking cache directory %s: %v", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func (d *Disk) statfs() (int64, int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(d.dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// Dir returns the cache directory.
func (d *Disk) Dir() string { return d.dir }

// Close writes the blocks still queued (and those left out of a full queue
// that are still in memory), stops the tier and releases the directory's
// lock. The memory tier must still be open.
func (d *Disk) Close() {
	d.sendMu.Lock()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.sendMu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	close(d.queue)
	d.sendMu.Unlock()
	d.wg.Wait()
	d.lock.Close()
}

// counters lists the disk tier's counters.
func (d *Disk) counters() []counters.Counter {
	s := &d.Stats
	return []counters.Counter{
		counters.New("disk_hits", "Blocks read from the disk cache.", s.Hits.Load),
		counters.New("disk_misses", "Disk cache lookups that found no block file.", s.Misses.Load),
		counters.New("disk_writes", "Block files written to the disk cache.", s.Writes.Load),
		counters.New("disk_write_bytes", "Bytes of blocks written to the disk cache.", s.WriteBytes.Load),
		counters.New("disk_dropped", "Blocks not written to the disk cache (write queue full or no room).", s.Dropped.Load),
		counters.New("disk_evictions", "Block files deleted to stay inside the disk cache's limits.", s.Evictions.Load),
		counters.New("disk_corrupt", "Block files that failed their checksum and were dropped.", s.Corrupt.Load),
		counters.Gauge("disk_bytes", "Bytes of block files in the disk cache.", s.Bytes.Load),
		counters.Gauge("disk_files", "Block files in the disk cache.", s.Files.Load),
	}
}

// QueueLen is how many blocks may wait to be written: QueueBlocks, or 16.
func (c *DiskConfig) QueueLen() int {
	if c.QueueBlocks <= 0 {
		return 16
	}
	return c.QueueBlocks
}
