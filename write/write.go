// Package write is bucketfs's write path: it stages what is written to a
// file on local disk and turns it into whole objects in the store.
//
// A File is one object being written. Its bytes live in a sparse staging
// file; which of them are there (written, or fetched from the object the
// file started from) is kept as a set of ranges, so a file opened on an
// existing object costs nothing until it is read or changed, and reads see
// what was written (read your writes) with the rest served from the
// original object.
//
// Parts. An object is cut into parts at fixed offsets (layout.go) that do
// not depend on its final size. While a file is written in order, each
// part the writer has moved past goes up at once as a part of a multipart
// upload, several at a time, so closing a large recording only sends its
// last part. Commit (close or fsync) sends what is left: a file of one
// part as one PUT, anything larger as a multipart upload where parts that
// changed since they went up are sent again, parts never touched of the
// original object are copied server-side (UploadPartCopy), and the rest
// are uploaded from the staging file. Only CompleteMultipartUpload makes
// the object visible: the bucket never holds a partial object, and a
// failed upload is aborted.
//
// Durability. Without write-back, Commit returns only once the store
// acknowledged the object, and its error otherwise. With write-back
// (journal.go), Commit returns once the staging file and a journal record
// are fsynced in the cache directory; an uploader then retries without
// end, across restarts of the daemon, except after a failed precondition
// (the original object changed, or an O_EXCL name was taken), which is
// final. O_EXCL creates use If-None-Match, or on a server without it a
// HEAD just before the write.
//
// Lock order: File.createMu (held across the CreateMultipartUpload
// request) -> File.mu -> {Manager.pmu, journal.mu}; Manager.mu is a leaf.
// The pending set (pmu) changes under the File.mu of the file it lists,
// together with the file's entry, and readers copy it before looking at
// the files. A record is written under its File's mu, so the records of
// one entry reach the disk in the order they were made. No lock is held
// across a store request except createMu.
//
// What a commit sends is exactly what the file holds: bytes come from the
// staging file, parts that went up while writing count only when their
// content has not changed since (partGen), and every byte taken from the
// original object is read or copied under its ETag (If-Match,
// x-amz-copy-source-if-match), so a changed original fails the commit
// with ErrPreconditionFailed instead of mixing versions.
package write

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/counters"
	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// Options configure a Manager.
type Options struct {
	// Dependencies
	Store store.Store
	Log   *logrus.Entry
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	// Dir holds staging files (Dir/staging) and, with WriteBack, the
	// journal (Dir/journal). Empty means a private directory the Manager
	// creates and Close removes.
	Dir string
	// WriteBack makes Commit return once the bytes are fsynced locally,
	// the upload going on in the background. REQUIRES: Dir set.
	WriteBack bool
	// PartSize is the size of the first 1,000 parts; later parts grow
	// (layout.go). Zero means DefaultPartSize.
	PartSize int64
	// MaxUploads bounds the part uploads and copies in flight for the
	// whole mount; zero means 8.
	MaxUploads int
	// MinFree is the free space the staging disk keeps: a write that
	// would go below it fails with ENOSPC.
	MinFree int64
	// StorageClass is the class of new objects; empty means the bucket's
	// default.
	StorageClass string
	// RetryDelay is the first wait before a write-back upload is tried
	// again; it doubles up to MaxRetryDelay. Zero means one second.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
}

// DefaultPartSize is the first parts' size.
const DefaultPartSize = 8 << 20

// perFileUploads bounds the parts of one file in flight.
const perFileUploads = 4

// Manager is the write path of one mount.
type Manager struct {
	// Dependencies
	st  store.Store
	log *logrus.Entry
	now func() time.Time

	// Constant data
	dir, stagingDir string
	private         bool // dir was made by New and goes at Close
	writeBack       bool
	lay             layout
	minFree         int64
	class           string
	retryDelay      time.Duration
	maxRetryDelay   time.Duration
	sem             chan struct{} // part uploads in flight, whole mount
	journal         *journal      // nil without write-back
	// copyLimit is the largest object one CopyObject copies; larger ones
	// are copied in parts of copyPart bytes (tests lower both).
	copyLimit, copyPart int64

	// Mutable state
	seq           atomic.Uint64   // names staging files
	noIfNoneMatch atomic.Bool     // the server refused If-None-Match once
	bg            sync.WaitGroup  // uploaders; Add under mu, never once closing
	ctx           context.Context // background work; cancelled by Close
	cancel        context.CancelFunc

	mu sync.Mutex // protects the following; a leaf
	// closing is set by Close: no uploader starts after it (bg.Add must
	// not race bg.Wait); new entries stay in the journal.
	closing bool // GUARDED_BY(mu)

	pmu sync.Mutex // protects the following; taken under File.mu
	// pending are the files with a write-back entry.
	// INVARIANT: f is in pending iff f.wb != nil (both change under f.mu).
	pending map[*File]struct{} // GUARDED_BY(pmu)

	// Counters (atomics)
	bytesUploaded, partsUploaded, objectsWritten  atomic.Int64
	serverCopies, uploadFailures, uploadsInFlight atomic.Int64
	copiedBytes                                   atomic.Int64
	freeCheck                                     atomic.Int64 // unix nanos of the last statfs
}

// New makes the write path. With write-back it does not start uploads
// found in the journal: Start does.
func New(o Options) (*Manager, error) {
	if o.Store == nil {
		return nil, errors.New("write: no store")
	}
	if o.WriteBack && o.Dir == "" {
		return nil, errors.New("--write-back needs --cache-dir: its journal must outlive the daemon")
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < store.MinPartSize || o.PartSize > 64<<20 {
		return nil, fmt.Errorf("write part size %d: must be between 5 MiB and 64 MiB", o.PartSize)
	}
	if o.MaxUploads <= 0 {
		o.MaxUploads = 8
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		l := logrus.New()
		l.Out = nopWriter{}
		o.Log = logrus.NewEntry(l)
	}
	m := &Manager{
		st: o.Store, log: o.Log, now: o.Now,
		dir: o.Dir, writeBack: o.WriteBack, lay: newLayout(o.PartSize),
		minFree: o.MinFree, class: o.StorageClass,
		retryDelay: o.RetryDelay, maxRetryDelay: o.MaxRetryDelay,
		sem:       make(chan struct{}, o.MaxUploads),
		copyLimit: store.MaxPartSize, copyPart: store.MaxPartSize / 5,
		pending: map[*File]struct{}{},
	}
	if m.dir == "" {
		d, err := os.MkdirTemp("", "bucketfs-writes-")
		if err != nil {
			return nil, fmt.Errorf("staging directory: %w", err)
		}
		m.dir, m.private = d, true
	}
	m.stagingDir = filepath.Join(m.dir, "staging")
	// Staging files left by an earlier run were never acknowledged (the
	// journal holds what was): they go.
	if err := os.RemoveAll(m.stagingDir); err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	if err := os.MkdirAll(m.stagingDir, 0o700); err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if m.writeBack {
		j, err := openJournal(filepath.Join(m.dir, "journal"))
		if err != nil {
			return nil, err
		}
		m.journal = j
	}
	return m, nil
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// WriteBack reports whether Commit returns before the upload ends.
func (m *Manager) WriteBack() bool { return m.writeBack }

// Counters are the write path's counters.
func (m *Manager) Counters() []counters.Counter {
	return []counters.Counter{
		counters.New("write_bytes_uploaded", "Bytes sent to the store by PutObject and UploadPart.", m.bytesUploaded.Load),
		counters.New("write_parts_uploaded", "Parts sent by UploadPart.", m.partsUploaded.Load),
		counters.New("write_objects", "Objects the write path completed (PUT or CompleteMultipartUpload).", m.objectsWritten.Load),
		counters.New("write_server_copies", "Server-side copies: CopyObject and UploadPartCopy.", m.serverCopies.Load),
		counters.New("write_copied_bytes", "Bytes copied server-side instead of uploaded.", m.copiedBytes.Load),
		counters.New("write_upload_failures", "Uploads that failed after the store client's retries.", m.uploadFailures.Load),
		counters.Gauge("write_uploads_in_flight", "Part uploads and PUTs under way now.", m.uploadsInFlight.Load),
		counters.Gauge("write_pending_files", "Files closed under --write-back whose upload has not finished.", func() int64 { n, _ := m.Pending(); return int64(n) }),
		counters.Gauge("write_pending_bytes", "Bytes of files closed under --write-back whose upload has not finished.", func() int64 { _, b := m.Pending(); return b }),
	}
}

// Pending returns the write-back uploads not finished: files and bytes.
func (m *Manager) Pending() (files int, bytes int64) {
	for _, f := range m.pendingFiles() {
		if pending, size := f.Pending(); pending {
			files++
			bytes += size
		}
	}
	return files, bytes
}

// pendingFiles copies the pending set.
func (m *Manager) pendingFiles() []*File {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	out := make([]*File, 0, len(m.pending))
	for f := range m.pending {
		out = append(out, f)
	}
	return out
}

// setPending lists f as pending or not. REQUIRES: f.mu held.
func (m *Manager) setPending(f *File, on bool) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if on {
		m.pending[f] = struct{}{}
	} else {
		delete(m.pending, f)
	}
}

// Close waits for pending write-back uploads until ctx ends, then stops
// background work. What is left stays in the journal for the next start.
// It returns how many uploads were left.
func (m *Manager) Close(ctx context.Context) (left int) {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	done := make(chan struct{})
	go func() {
		m.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	m.cancel()
	<-done
	left, _ = m.Pending()
	if m.private {
		os.RemoveAll(m.dir)
	}
	return left
}

// checkSpace fails with ENOSPC when the staging disk is below its floor.
// It asks the kernel at most every 100ms.
func (m *Manager) checkSpace() error {
	if m.minFree <= 0 {
		return nil
	}
	now := time.Now().UnixNano()
	last := m.freeCheck.Load()
	if now-last < int64(100*time.Millisecond) && last > 0 {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.stagingDir, &st); err != nil {
		return nil
	}
	if int64(st.Bavail)*st.Bsize < m.minFree {
		return fmt.Errorf("staging disk %s below its floor of %d free bytes: %w", m.stagingDir, m.minFree, syscall.ENOSPC)
	}
	m.freeCheck.Store(now)
	return nil
}

// acquire takes a slot for one upload of the mount.
func (m *Manager) acquire(ctx context.Context) error {
	select {
	case m.sem <- struct{}{}:
		m.uploadsInFlight.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Manager) release() {
	m.uploadsInFlight.Add(-1)
	<-m.sem
}

// checkAbsent stands in for If-None-Match on a server without it: a HEAD
// that finds the key fails the create as the condition would have (op
// names the write, so callers tell an exclusive conflict apart). It
// cannot stop two machines creating the same name at once.
func (m *Manager) checkAbsent(ctx context.Context, op, bucket, key string) error {
	_, err := m.st.Head(ctx, bucket, key)
	switch {
	case err == nil:
		return &store.Error{Op: op, Bucket: bucket, Key: key, Status: 412, Code: "PreconditionFailed",
			Kind: store.ErrPreconditionFailed, Err: errors.New("the key exists (HEAD: the server does not support If-None-Match)")}
	case errors.Is(err, store.ErrNotFound):
		return nil
	default:
		return err
	}
}

// noConditional remembers that the server refuses If-None-Match, logged once.
func (m *Manager) noConditional(err error) {
	if !m.noIfNoneMatch.Swap(true) {
		m.log.WithError(err).Warn("the store does not support If-None-Match: O_EXCL creates fall back to checking with HEAD, which cannot stop two machines creating the same name at once")
	}
}

// createIfAbsent runs one create-if-absent write (PUT or
// CompleteMultipartUpload, op) with If-None-Match when exclusive; on a
// server that refuses the header it falls back, once and for good, to a
// HEAD before the write. Without exclusive it just writes.
func (m *Manager) createIfAbsent(ctx context.Context, op, bucket, key string, exclusive bool, do func(ifNoneMatch bool) (*store.Object, error)) (*store.Object, error) {
	if !exclusive {
		return do(false)
	}
	if !m.noIfNoneMatch.Load() {
		o, err := do(true)
		if err == nil || !errors.Is(err, store.ErrNotImplemented) {
			return o, err
		}
		m.noConditional(err)
	}
	if err := m.checkAbsent(ctx, op, bucket, key); err != nil {
		return nil, err
	}
	return do(false)
}
