package cache

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
// Files are written under tmp/ (with O_DIRECT) and renamed into place, so
// a crash leaves at worst a stray temporary file, removed at the next
// start.
//
// The index (sizes and recency, for eviction) lives in memory. At start it
// is rebuilt from the directory in the background, ordered by each file's
// modification time, which reads refresh; the cache serves lookups at once,
// since a block's file name follows from its key.

const (
	diskMagic     = "BFSBLK03"
	diskHeaderLen = 24 // magic, key length, data length, CRC-32C
	// diskPage is where a block's bytes start; header and key fit before.
	diskPage = 4096
	// formatFile holds formatLine; a directory without it is not ours,
	// whatever else it holds.
	formatFile = "BUCKETFS-CACHE"
	// formatLine names the layout. Format 3 keys blocks by their byte
	// range; a directory of another format is emptied of bucketfs's own
	// files and started afresh.
	formatLine  = "bucketfs block cache, format 3\n"
	cacheDirTag = "Signature: 8a477f597d28d172789f06886806bc55\n" +
		"# This directory is a bucketfs block cache. Its files can be deleted\n" +
		"# while no bucketfs uses it; see https://bford.info/cachedir/\n"
	// touchEvery is how stale a file's mtime may get before a read
	// refreshes it, so recency survives restarts at little cost.
	touchEvery = time.Hour
	// maxHits caps an entry's hit count: how many times eviction passes
	// over a block read often before it may go.
	maxHits = 3
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// writerNice is the CPU priority of the threads writing blocks to disk
// (see writer).
const writerNice = 10

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

// Disk is the disk tier. It is safe for concurrent use.
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

	// Mutable state
	mu       sync.Mutex // protects the following
	entries  map[string]*diskEntry
	lru      list.List // of *diskEntry, most recent first
	used     int64
	writing  map[string]chan struct{} // names being written; closed when done
	deferred map[Key]struct{}         // blocks left out of a full queue
	memory   func(Key) (*Block, bool) // the memory tier, to write them from
	scanning bool
	closed   bool

	queue chan pendingWrite
	wg    sync.WaitGroup
	// sendMu orders Store's sends against Close closing the queue.
	sendMu sync.RWMutex

	Stats DiskStats
}

type diskEntry struct {
	name  string
	size  int64
	mtime time.Time
	hits  uint8
	elem  *list.Element
}

type pendingWrite struct {
	key Key
	blk *Block
}

// ErrCacheInUse is returned by OpenDisk when another process holds the
// cache directory.
var ErrCacheInUse = errors.New("cache directory in use")

// OpenDisk opens (creating it if needed) the disk tier in cfg.Dir and takes
// its lock. It starts rebuilding the index in the background and returns
// without waiting for it.
func OpenDisk(cfg DiskConfig) (*Disk, error) {
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("cache size must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
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
		dir: dir, maxBytes: cfg.MaxBytes, log: cfg.Log, lock: lock,
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
	q := cfg.QueueBlocks
	if q <= 0 {
		q = 16
	}
	d.queue = make(chan pendingWrite, q)
	d.scanning = true
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

// Used returns the bytes of block files the index knows of.
func (d *Disk) Used() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used
}

// fileName is where block k lives, relative to blocks/.
func fileName(k Key) string {
	sum := sha256.Sum256([]byte(k.String()))
	h := hex.EncodeToString(sum[:])
	return h[:2] + "/" + h[2:]
}

func (d *Disk) path(name string) string { return filepath.Join(d.dir, "blocks", name) }

// Has reports whether block k has a file, without reading it.
func (d *Disk) Has(k Key) bool {
	name := fileName(k)
	d.mu.Lock()
	_, ok := d.entries[name]
	scanning := d.scanning
	d.mu.Unlock()
	if ok || !scanning {
		return ok
	}
	_, err := os.Stat(d.path(name))
	return err == nil
}

// Read fills buf with block k, whose size is len(buf), and reports whether
// it could: false when the block has no file or its file is damaged (the
// file is then deleted and the damage logged).
func (d *Disk) Read(k Key, buf []byte) bool {
	name := fileName(k)
	keyStr := k.String()
	f, err := os.Open(d.path(name))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.log.WithError(err).Warn("disk cache: cannot open block file")
		}
		d.forget(name)
		d.Stats.Misses.Add(1)
		return false
	}
	defer f.Close()
	if reason := readBlockFile(f, keyStr, buf); reason != "" {
		d.Stats.Corrupt.Add(1)
		d.log.WithFields(logrus.Fields{"bucket": k.Bucket, "key": k.Object, "block": k.Index, "file": d.path(name), "problem": reason}).
			Warn("disk cache: damaged block file dropped; fetching the block again")
		d.remove(name)
		d.Stats.Misses.Add(1)
		return false
	}
	d.Stats.Hits.Add(1)
	d.touch(name, f)
	return true
}

// headPool holds buffers for block file headers.
var headPool = sync.Pool{New: func() any { return make([]byte, diskPage) }}

// readBlockFile reads a block file holding key into buf and checks it. It
// returns what is wrong with the file, or "".
func readBlockFile(f *os.File, key string, buf []byte) string {
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	if fi.Size() != int64(diskPage+len(buf)) {
		return fmt.Sprintf("%d bytes long, want %d", fi.Size(), diskPage+len(buf))
	}
	head := headPool.Get().([]byte)
	defer headPool.Put(head)
	if n, err := f.ReadAt(head, 0); n < diskPage {
		return fmt.Sprintf("short header (%v)", err)
	}
	if string(head[:8]) != diskMagic {
		return "bad magic"
	}
	klen := binary.LittleEndian.Uint32(head[8:])
	dlen := binary.LittleEndian.Uint32(head[12:])
	sum := binary.LittleEndian.Uint32(head[16:])
	if int(klen) != len(key) || string(head[diskHeaderLen:diskHeaderLen+len(key)]) != key {
		return "holds another key"
	}
	if int(dlen) != len(buf) {
		return fmt.Sprintf("holds %d bytes, want %d", dlen, len(buf))
	}
	if n, err := f.ReadAt(buf, diskPage); n < len(buf) {
		return fmt.Sprintf("short data (%v)", err)
	}
	crc := crc32.Update(crc32.Checksum([]byte(key), crcTable), crcTable, buf)
	if crc != sum {
		return "checksum mismatch"
	}
	return ""
}

// touch records a hit on name for eviction, and refreshes the file's mtime
// when stale so the order survives a restart.
func (d *Disk) touch(name string, f *os.File) {
	now := time.Now()
	d.mu.Lock()
	e := d.entries[name]
	stale := false
	if e != nil {
		e.hits = min(e.hits+1, maxHits)
		d.lru.MoveToFront(e.elem)
		if now.Sub(e.mtime) > touchEvery {
			e.mtime, stale = now, true
		}
	}
	d.mu.Unlock()
	if stale {
		os.Chtimes(f.Name(), time.Time{}, now)
	}
}

// Store queues block k for writing and returns at once; it takes its own
// reference to blk. When the queue is full the block is left out, but its
// key is remembered: once the writers are idle, or when the tier closes,
// it is written from the memory tier if it is still there.
// REQUIRES: the caller holds a reference to blk.
func (d *Disk) Store(k Key, blk *Block) {
	if d.Has(k) {
		return
	}
	d.sendMu.RLock()
	defer d.sendMu.RUnlock()
	if d.isClosed() {
		return
	}
	blk.Ref()
	select {
	case d.queue <- pendingWrite{key: k, blk: blk}:
	default:
		blk.Release()
		d.mu.Lock()
		if len(d.deferred) < maxDeferred {
			d.deferred[k] = struct{}{}
		} else {
			d.Stats.Dropped.Add(1)
		}
		d.mu.Unlock()
	}
}

// maxDeferred bounds the keys of blocks left out of a full queue.
const maxDeferred = 4096

// SetMemory gives the tier the memory tier's lookup, from which blocks
// left out of a full write queue are written later.
func (d *Disk) SetMemory(get func(Key) (*Block, bool)) {
	d.mu.Lock()
	d.memory = get
	d.mu.Unlock()
}

// writeDeferred writes one block left out of the queue, if any is left and
// still in memory. It reports whether there was a key to try.
func (d *Disk) writeDeferred() bool {
	d.mu.Lock()
	var k Key
	found := false
	for k = range d.deferred {
		found = true
		break
	}
	if found {
		delete(d.deferred, k)
	}
	get := d.memory
	d.mu.Unlock()
	if !found {
		return false
	}
	if get == nil {
		d.Stats.Dropped.Add(1)
		return true
	}
	blk, ok := get(k)
	if !ok {
		d.Stats.Dropped.Add(1) // gone from memory before there was time
		return true
	}
	d.writeBlock(k, blk)
	return true
}

// writeBlock writes blk as block k, logs a failure and drops the caller's
// reference to blk.
func (d *Disk) writeBlock(k Key, blk *Block) {
	if err := d.Write(k, blk.Bytes()); err != nil {
		d.log.WithError(err).Warn("disk cache: writing a block failed")
	}
	blk.Release()
}

func (d *Disk) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// writer writes queued blocks. It runs on its own thread at a lower CPU
// priority, so writing to the cache yields to the reads it serves; whole
// blocks go to the disk with O_DIRECT (see writeFile).
func (d *Disk) writer() {
	defer d.wg.Done()
	runtime.LockOSThread() // the thread ends with the goroutine
	tid := unix.Gettid()
	unix.Setpriority(unix.PRIO_PROCESS, tid, writerNice)
	for {
		var w pendingWrite
		var ok bool
		select {
		case w, ok = <-d.queue:
		default:
			// Idle: catch up with blocks left out of a full queue.
			if d.writeDeferred() {
				continue
			}
			w, ok = <-d.queue
		}
		if !ok {
			for d.writeDeferred() {
			}
			return
		}
		d.writeBlock(w.key, w.blk)
	}
}

// Write writes block k now, unless it is already on disk. When another
// write of k is under way it waits for that one. It returns an error only
// when the disk failed; a block left out for want of room is counted in
// Stats.Dropped.
func (d *Disk) Write(k Key, data []byte) error {
	name := fileName(k)
	if diskHeaderLen+len(k.String()) > diskPage {
		d.Stats.Dropped.Add(1) // a key of several KiB: not worth a format
		return nil
	}
	size := int64(diskPage + len(data))
	d.mu.Lock()
	if _, ok := d.entries[name]; ok {
		d.mu.Unlock()
		return nil
	}
	if ch, ok := d.writing[name]; ok {
		d.mu.Unlock()
		<-ch
		return nil
	}
	if !d.makeRoomLocked(size) {
		d.mu.Unlock()
		d.Stats.Dropped.Add(1)
		return nil
	}
	done := make(chan struct{})
	d.writing[name] = done
	d.used += size // reserved while writing
	d.mu.Unlock()

	err := d.writeFile(name, k.String(), data)

	d.mu.Lock()
	delete(d.writing, name)
	close(done)
	d.used -= size
	if err == nil {
		d.addLocked(name, size, time.Now(), true)
	}
	d.mu.Unlock()
	if err == nil {
		d.Stats.Writes.Add(1)
		d.Stats.WriteBytes.Add(int64(len(data)))
	}
	return err
}

func (d *Disk) writeFile(name, key string, data []byte) error {
	f, err := os.CreateTemp(filepath.Join(d.dir, "tmp"), "block-")
	if err != nil {
		return err
	}
	head := alignedPage()
	copy(head, diskMagic)
	binary.LittleEndian.PutUint32(head[8:], uint32(len(key)))
	binary.LittleEndian.PutUint32(head[12:], uint32(len(data)))
	copy(head[diskHeaderLen:], key)
	crc := crc32.Update(crc32.Checksum([]byte(key), crcTable), crcTable, data)
	binary.LittleEndian.PutUint32(head[16:], crc)
	// Whole pages from page-aligned buffers go straight to the disk
	// (O_DIRECT): no copy into the page cache and no writeback to pay for
	// while the read that fetched them goes on.
	direct := aligned(data) && setDirect(f, true) == nil
	_, err = f.Write(head)
	if err == nil {
		_, err = f.Write(data)
	}
	if direct && err != nil {
		setDirect(f, false)
		if _, serr := f.Seek(0, 0); serr == nil {
			if _, err = f.Write(head); err == nil {
				_, err = f.Write(data)
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	final := d.path(name)
	if err == nil {
		err = os.Rename(f.Name(), final)
		if errors.Is(err, os.ErrNotExist) {
			if err = os.MkdirAll(filepath.Dir(final), 0o700); err == nil {
				err = os.Rename(f.Name(), final)
			}
		}
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// alignedPage returns a zeroed page-aligned buffer of one page.
func alignedPage() []byte {
	b := make([]byte, 2*diskPage)
	off := int(uintptr(unsafe.Pointer(&b[0])) % diskPage)
	if off != 0 {
		off = diskPage - off
	}
	return b[off : off+diskPage : off+diskPage]
}

// aligned reports whether buf can be written with O_DIRECT.
func aligned(buf []byte) bool {
	return len(buf) > 0 && len(buf)%diskPage == 0 && uintptr(unsafe.Pointer(&buf[0]))%diskPage == 0
}

// setDirect turns O_DIRECT on or off for f.
func setDirect(f *os.File, on bool) error {
	fd := int(f.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.O_DIRECT
	} else {
		flags &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags)
	return err
}

// addLocked enters a block file in the index. A file just written or read
// goes first in line; files found by the scan go behind everything known.
// REQUIRES: d.mu held.
func (d *Disk) addLocked(name string, size int64, mtime time.Time, recent bool) {
	if _, ok := d.entries[name]; ok {
		return
	}
	e := &diskEntry{name: name, size: size, mtime: mtime}
	if recent {
		e.elem = d.lru.PushFront(e)
	} else {
		e.elem = d.lru.PushBack(e)
	}
	d.entries[name] = e
	d.used += size
	d.Stats.Bytes.Store(d.used)
	d.Stats.Files.Store(int64(len(d.entries)))
}

// makeRoomLocked evicts until size more bytes fit under the size limit and
// the free-space floor. It reports false when they cannot.
// REQUIRES: d.mu held.
func (d *Disk) makeRoomLocked(size int64) bool {
	if size > d.maxBytes {
		return false
	}
	avail, _, err := d.space()
	if err != nil {
		d.log.WithError(err).Warn("disk cache: cannot read free space")
		return false
	}
	for d.used+size > d.maxBytes || avail-size < d.minFree {
		freed, ok := d.evictOneLocked()
		if !ok {
			return false
		}
		avail += freed
	}
	return true
}

// evictOneLocked deletes the block file that has gone longest without a
// read, passing over (and aging) blocks that were read often: recency with
// a little frequency, so one long stream does not flush the blocks read
// again and again. REQUIRES: d.mu held.
func (d *Disk) evictOneLocked() (int64, bool) {
	for {
		back := d.lru.Back()
		if back == nil {
			return 0, false
		}
		e := back.Value.(*diskEntry)
		if e.hits > 0 {
			e.hits--
			d.lru.MoveToFront(back)
			continue
		}
		d.dropLocked(e)
		if err := os.Remove(d.path(e.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.WithError(err).Warn("disk cache: cannot delete a block file")
		}
		d.Stats.Evictions.Add(1)
		return e.size, true
	}
}

func (d *Disk) dropLocked(e *diskEntry) {
	d.lru.Remove(e.elem)
	delete(d.entries, e.name)
	d.used -= e.size
	d.Stats.Bytes.Store(d.used)
	d.Stats.Files.Store(int64(len(d.entries)))
}

// forget drops name from the index (its file is gone).
func (d *Disk) forget(name string) {
	d.mu.Lock()
	if e := d.entries[name]; e != nil {
		d.dropLocked(e)
	}
	d.mu.Unlock()
}

// remove deletes name's file and drops it from the index.
func (d *Disk) remove(name string) {
	d.forget(name)
	os.Remove(d.path(name))
}

// scan rebuilds the index from the block files on disk, oldest last, then
// trims the cache to its limits (which may have shrunk since the last run).
func (d *Disk) scan() {
	defer d.wg.Done()
	start := time.Now()
	type found struct {
		name  string
		size  int64
		mtime time.Time
	}
	var files []found
	root := filepath.Join(d.dir, "blocks")
	subs, err := readDirNames(root)
	if err != nil {
		d.log.WithError(err).Warn("disk cache: cannot list block files")
	}
	for _, sub := range subs {
		if d.isClosed() {
			break
		}
		names, err := readDirNames(filepath.Join(root, sub))
		if err != nil {
			continue
		}
		for _, n := range names {
			name := sub + "/" + n
			fi, err := os.Lstat(d.path(name))
			if err != nil || !fi.Mode().IsRegular() || fi.Size() < diskPage {
				os.Remove(d.path(name))
				continue
			}
			files = append(files, found{name, fi.Size(), fi.ModTime()})
		}
	}
	// Most recent first, so PushBack leaves the oldest last.
	slices.SortFunc(files, func(a, b found) int { return b.mtime.Compare(a.mtime) })
	d.mu.Lock()
	for _, f := range files {
		d.addLocked(f.name, f.size, f.mtime, false)
	}
	d.scanning = false
	trimmed := 0
	if avail, _, err := d.space(); err == nil {
		for d.used > d.maxBytes || avail < d.minFree {
			freed, ok := d.evictOneLocked()
			if !ok {
				break
			}
			avail += freed
			trimmed++
		}
	}
	used, n := d.used, len(d.entries)
	d.mu.Unlock()
	d.log.WithFields(logrus.Fields{"files": n, "bytes": used, "evicted": trimmed, "took": time.Since(start).Round(time.Millisecond).String()}).
		Info("disk cache index loaded")
}

// WaitScan blocks until the index has been rebuilt (for tests and tools).
func (d *Disk) WaitScan() {
	for {
		d.mu.Lock()
		s := d.scanning
		d.mu.Unlock()
		if !s {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

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
