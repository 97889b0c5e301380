package write

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/bucketfs/bucketfs/store"
)

// OpenOptions say how a File starts.
type OpenOptions struct {
	// Base is the object the file starts from; nil for a new, empty file
	// (O_CREAT of a new name, or O_TRUNC).
	Base *store.Object
	// Exclusive makes the first commit create the object only if the key
	// does not exist (O_EXCL), where the server supports it.
	Exclusive bool
	// Metadata is the user metadata the object is stored with; nil keeps
	// Base's.
	Metadata map[string]string
	// StorageClass is the new object's class; empty means the mount's
	// --storage-class, else Base's, else the bucket's default.
	StorageClass string
}

// File is one object being written: its staged bytes and its uploads.
type File struct {
	// Dependencies
	m *Manager

	createMu sync.Mutex // held across CreateMultipartUpload; before mu

	mu   sync.Mutex // protects the following
	cond *sync.Cond // on mu: committing, sealed, wb or an upload's inflight changed
	// path is the staging file: in the staging directory, or the
	// journal's data file for a file recovered at start (which must not be
	// removed while its entry is pending).
	path string // GUARDED_BY(mu)
	// bucket and key change when a pending file is renamed.
	bucket, key string   // GUARDED_BY(mu)
	staging     *os.File // GUARDED_BY(mu); nil once dropped
	size        int64    // GUARDED_BY(mu)
	// base is the object the bytes not written come from, up to baseLen
	// (a shrinking truncate lowers it; growing leaves zeros past it), in
	// baseBucket (which a rename of a pending file does not change).
	base       *store.Object // GUARDED_BY(mu)
	baseBucket string        // GUARDED_BY(mu)
	baseLen    int64         // GUARDED_BY(mu)
	// have are the bytes present in the staging file; written, a subset,
	// are the bytes changed since base.
	have, written ranges            // GUARDED_BY(mu)
	meta          map[string]string // GUARDED_BY(mu)
	class         string            // GUARDED_BY(mu)
	exclusive     bool              // GUARDED_BY(mu)
	// changed is set when the store's object is not what the file holds:
	// bytes, size or metadata (metaOnly: only metadata).
	changed, metaOnly bool // GUARDED_BY(mu)
	// committing is set while a commit runs; writes wait for it.
	// commitCancel cancels it (Remove).
	committing   bool               // GUARDED_BY(mu)
	commitCancel context.CancelFunc // GUARDED_BY(mu)
	// sealed is set while a write-back upload of the file's bytes is
	// pending; writes wait for it (the bytes being uploaded must not move).
	// INVARIANT: sealed implies wb != nil.
	sealed bool   // GUARDED_BY(mu)
	wb     *entry // GUARDED_BY(mu); the newest write-back entry, if any
	// chain names the file's write-back entries in the journal (the id of
	// its first one), so a start sends only the newest (record.Chain).
	chain string // GUARDED_BY(mu)
	// finishing counts entries detached from the file whose journal files
	// are not cleared yet (Manager.finish).
	finishing int // GUARDED_BY(mu)
	// onStored is called when a write-back upload lands (OnStored).
	onStored func(store.Object) // GUARDED_BY(mu)
	// gen counts changes of the bytes; partGen is the gen of each part's
	// last change. metaGen counts metadata changes.
	gen     uint64           // GUARDED_BY(mu)
	metaGen uint64           // GUARDED_BY(mu)
	partGen map[int32]uint64 // GUARDED_BY(mu)
	up      *mpu             // GUARDED_BY(mu); the multipart upload under way
	// streaming are the parts going up while writing (each counted in bg).
	streaming map[int32]bool // GUARDED_BY(mu)
	refs      int            // GUARDED_BY(mu); users: open handles, pending upload
	removed   bool           // GUARDED_BY(mu); unlinked: commit nothing

	// bg counts the part uploads started while writing. Add is called
	// under mu by a write, Wait only where no write can run: while
	// committing, or once the last reference is gone.
	bg sync.WaitGroup

	// journalOf and journalEntry are set on the File an uploader sends a
	// write-back entry with: the multipart upload it begins is recorded
	// in the entry (of the file journalOf).
	journalOf    *File
	journalEntry *entry
}

// mpu is a multipart upload under way. Its maps and counter are guarded
// by the mu of the File that uses it.
type mpu struct {
	bucket, key, id string
	parts           map[int32]upPart // uploaded parts
	// inflight counts UploadPart requests reading the staging file for it;
	// an upload handed to a write-back entry is used once it is zero.
	inflight int
}

// upPart is an uploaded part: its ETag and the content it holds.
type upPart struct {
	etag string
	gen  uint64 // the part's partGen when its bytes were read
	size int64
}

// errDetached fails a part upload whose multipart upload is no longer the
// file's (handed to a write-back entry, or abandoned).
var errDetached = errors.New("the multipart upload is no longer the file's")

// errSealed refuses a new multipart upload for a file whose bytes a
// pending write-back entry owns.
var errSealed = errors.New("the file's upload is pending")

// Open starts writing bucket/key. The caller holds one reference (see
// Retain and Release).
func (m *Manager) Open(bucket, key string, o OpenOptions) (*File, error) {
	if len(key) > store.MaxKeyLen {
		return nil, fmt.Errorf("key of %d bytes, S3 allows %d: %w", len(key), store.MaxKeyLen, syscall.ENAMETOOLONG)
	}
	path := filepath.Join(m.stagingDir, strconv.FormatUint(m.seq.Add(1), 10))
	sf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("staging file: %w", err)
	}
	f := &File{m: m, path: path, bucket: bucket, key: key, staging: sf, partGen: map[int32]uint64{}, streaming: map[int32]bool{}, refs: 1}
	f.cond = sync.NewCond(&f.mu)
	f.exclusive = o.Exclusive
	f.class = o.StorageClass
	if f.class == "" {
		f.class = m.class
	}
	if o.Base != nil {
		b := *o.Base
		f.base, f.baseBucket, f.baseLen, f.size = &b, bucket, b.Size, b.Size
		if f.class == "" && !store.Archived(b.StorageClass) && b.StorageClass != "STANDARD" {
			f.class = b.StorageClass
		}
		f.meta = maps.Clone(b.Metadata)
		if err := sf.Truncate(b.Size); err != nil {
			f.drop()
			return nil, fmt.Errorf("staging file: %w", err)
		}
	} else {
		f.changed = true
	}
	if o.Metadata != nil {
		f.meta = maps.Clone(o.Metadata)
	}
	return f, nil
}

// Retain adds a reference.
func (f *File) Retain() {
	f.mu.Lock()
	f.refs++
	f.mu.Unlock()
}

// Release drops a reference. The last one, unless a write-back upload is
// pending, removes the staging file and abandons a multipart upload under
// way: changes never committed are dropped (close() reported why). It
// reports whether the file is gone.
func (f *File) Release() bool {
	f.mu.Lock()
	f.refs--
	gone := f.refs == 0 && !f.sealed && f.wb == nil
	f.mu.Unlock()
	if gone {
		f.bg.Wait()
		f.abortUpload()
		f.drop()
	}
	return gone
}

// drop closes and removes the staging file.
func (f *File) drop() {
	f.mu.Lock()
	sf, path := f.staging, f.path
	f.staging = nil
	f.mu.Unlock()
	if sf != nil {
		sf.Close()
		os.Remove(path)
	}
}

// Name returns the file's bucket and key.
func (f *File) Name() (bucket, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bucket, f.key
}

// Size is the file's size now.
func (f *File) Size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.size
}

// Changed reports whether the file holds changes not in the store yet
// (pending write-back uploads included).
func (f *File) Changed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed || f.sealed
}

// Metadata returns a copy of the metadata the object gets.
func (f *File) Metadata() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.meta)
}

// SetMetadata sets user metadata keys (an empty value deletes one); the
// next commit stores them. A file whose bytes did not change is then
// updated by a server-side copy, not an upload. A change made while a
// commit runs is not lost: the file stays changed after it.
func (f *File) SetMetadata(kv map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.meta == nil {
		f.meta = map[string]string{}
	}
	for k, v := range kv {
		if v == "" {
			delete(f.meta, k)
		} else {
			f.meta[k] = v
		}
	}
	f.metaGen++
	if !f.changed {
		f.changed, f.metaOnly = true, true
	}
}

// waitWritable waits until no commit runs and no write-back upload holds
// the bytes (a pending file gets a private copy). A removed (unlinked)
// file takes writes at once: they are never stored, but what is still
// open reads them, as POSIX keeps an unlinked file for its open
// descriptors. REQUIRES: f.mu held.
func (f *File) waitWritable(ctx context.Context) error {
	for (f.committing || f.sealed) && !f.removed {
		if err := ctx.Err(); err != nil {
			return err
		}
		if f.staging == nil {
			return syscall.EBADF
		}
		if f.sealed && !f.committing {
			// A new change to a file whose upload is pending: the pending
			// upload gives way to the next commit, which sends all.
			if err := f.unsealLocked(ctx); err != nil {
				return err
			}
			continue
		}
		waitCond(ctx, f.cond)
	}
	if f.staging == nil {
		return syscall.EBADF
	}
	return nil
}

// waitCond waits on c, or until ctx ends. REQUIRES: c.L held.
func waitCond(ctx context.Context, c *sync.Cond) {
	stop := context.AfterFunc(ctx, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	c.Wait()
	stop()
}

// WriteAt writes p at off.
func (f *File) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if end > store.MaxObjectSize || end > f.m.lay.limit() {
		return 0, fmt.Errorf("write past S3's 5 TiB object limit: %w", syscall.EFBIG)
	}
	if err := f.m.checkSpace(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	if err := f.waitWritable(ctx); err != nil {
		f.mu.Unlock()
		return 0, err
	}
	n, err := f.staging.WriteAt(p, off)
	if n > 0 {
		e := off + int64(n)
		f.have = f.have.add(off, e)
		f.written = f.written.add(off, e)
		f.size = max(f.size, e)
		f.touchLocked(off, e)
	}
	// The part upload is counted under the lock, so a commit that begins
	// after this write waits for it.
	stream := f.streamCandidateLocked(off)
	if stream > 0 {
		f.streaming[stream] = true
		f.bg.Add(1)
	}
	f.mu.Unlock()
	if stream > 0 {
		go f.streamPart(stream)
	}
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return n, fmt.Errorf("staging disk full: %w", syscall.ENOSPC)
		}
		return n, err
	}
	return n, nil
}

// touchLocked records a change of [off, end). REQUIRES: f.mu held.
func (f *File) touchLocked(off, end int64) {
	f.changed, f.metaOnly = true, false
	f.gen++
	if end <= off {
		end = off + 1
	}
	for p := off; p < end; {
		n, start, size := f.m.lay.part(p)
		f.partGen[n] = f.gen
		p = start + size
	}
}

// Truncate sets the file's size: bytes past it go, and growing adds zeros.
func (f *File) Truncate(ctx context.Context, size int64) error {
	if size < 0 {
		return syscall.EINVAL
	}
	if size > store.MaxObjectSize || size > f.m.lay.limit() {
		return fmt.Errorf("size past S3's 5 TiB object limit: %w", syscall.EFBIG)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if size == f.size && f.staging != nil && !f.removed {
		return nil // nothing changes: a pending file needs no copy
	}
	if err := f.waitWritable(ctx); err != nil {
		return err
	}
	if size == f.size {
		return nil
	}
	if err := f.staging.Truncate(size); err != nil {
		return err
	}
	lo, hi := min(size, f.size), max(size, f.size)
	if size < f.size {
		f.have = f.have.cut(size)
		f.written = f.written.cut(size)
		f.baseLen = min(f.baseLen, size)
	} else {
		// The new bytes are zeros, present in the staging file.
		f.have = f.have.add(lo, hi)
		f.written = f.written.add(lo, hi)
	}
	f.size = size
	f.touchLocked(lo, hi)
	return nil
}

// ReadAt reads what the file holds at off: written bytes from the staging
// file, the rest of the original object from the store, zeros past it.
// The store is asked without holding the lock; a change that lands
// meanwhile makes the read start again (three times at most, then the
// bytes of the last try are returned, as a read racing a write may).
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	for try := 0; ; try++ {
		f.mu.Lock()
		if f.staging == nil {
			f.mu.Unlock()
			return 0, syscall.EBADF
		}
		if off >= f.size {
			f.mu.Unlock()
			return 0, io.EOF
		}
		if rem := f.size - off; int64(len(p)) > rem {
			p = p[:rem]
		}
		end := off + int64(len(p))
		var fetch []span
		for _, g := range f.have.gaps(off, end) {
			if g.off < f.baseLen {
				fetch = append(fetch, span{g.off, min(g.end, f.baseLen)})
			}
		}
		if len(fetch) == 0 {
			// Everything is local (bytes past baseLen that were never
			// written are zeros in the sparse staging file).
			n, err := f.staging.ReadAt(p, off)
			f.mu.Unlock()
			if err == io.EOF && n == len(p) {
				err = nil
			}
			return n, err
		}
		gen, base, bucket := f.gen, *f.base, f.baseBucket
		f.mu.Unlock()
		for _, g := range fetch {
			if err := getRange(ctx, f.m.st, bucket, base, g.off, p[g.off-off:g.end-off]); err != nil {
				return 0, err
			}
		}
		f.mu.Lock()
		if f.staging == nil {
			f.mu.Unlock()
			return 0, syscall.EBADF
		}
		if f.gen != gen && try < 2 {
			f.mu.Unlock()
			continue
		}
		// The bytes between the fetched spans are local.
		at := off
		for _, g := range append(fetch, span{end, end}) {
			if g.off > at {
				if _, err := f.staging.ReadAt(p[at-off:g.off-off], at); err != nil && err != io.EOF {
					f.mu.Unlock()
					return 0, err
				}
			}
			at = g.end
		}
		f.mu.Unlock()
		return len(p), nil
	}
}

// getRange reads len(p) bytes at off of the base object into p; the
// object must still be the version o (If-Match).
func getRange(ctx context.Context, st store.Store, bucket string, o store.Object, off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	out, err := st.Get(ctx, store.GetInput{Bucket: bucket, Key: o.Key, Offset: off, Length: int64(len(p)), IfMatch: o.ETag})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, p); err != nil {
		return fmt.Errorf("GetObject %s/%s: %w", bucket, o.Key, err)
	}
	return nil
}

// copyRange copies n bytes at off of the base object o (If-Match) into
// the same offsets of sf.
func copyRange(ctx context.Context, st store.Store, bucket string, o store.Object, off, n int64, sf *os.File) error {
	out, err := st.Get(ctx, store.GetInput{Bucket: bucket, Key: o.Key, Offset: off, Length: n, IfMatch: o.ETag})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	got, err := io.CopyBuffer(io.NewOffsetWriter(sf, off), io.LimitReader(out.Body, n), make([]byte, 256<<10))
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("GetObject %s/%s into the staging file (%d bytes of %d): %w", bucket, o.Key, got, n, err)
	}
	return nil
}

// fill fetches the bytes of [off, end) that belong to the base object
// and are not in the staging file, into it. Called while committing or
// sealed, when no write changes those bytes; what it writes are the bytes
// the file holds there anyway.
func (f *File) fill(ctx context.Context, off, end int64) error {
	f.mu.Lock()
	var fetch []span
	for _, g := range f.have.gaps(off, end) {
		if g.off < f.baseLen {
			fetch = append(fetch, span{g.off, min(g.end, f.baseLen)})
		}
	}
	var base store.Object
	if f.base != nil {
		base = *f.base
	}
	bucket, sf := f.baseBucket, f.staging
	f.mu.Unlock()
	if len(fetch) > 0 && sf == nil {
		return syscall.EBADF
	}
	for _, g := range fetch {
		// Streamed from the GET into the staging file: no part is held in
		// memory (several files commit at once, four parts each).
		if err := copyRange(ctx, f.m.st, bucket, base, g.off, g.end-g.off, sf); err != nil {
			return err
		}
		f.mu.Lock()
		if f.staging == sf {
			f.have = f.have.add(g.off, g.end)
		}
		f.mu.Unlock()
	}
	return nil
}

// errNameTooLong is the error for a key longer than S3 allows.
func errNameTooLong(key string) error {
	return fmt.Errorf("key of %d bytes, S3 allows %d: %w", len(key), store.MaxKeyLen, syscall.ENAMETOOLONG)
}

// Rebase points a file that has no changes at another object: the one
// it was renamed to, or the one it was moved to another tier as. It
// reports false (and changes nothing) when the file has changes.
func (f *File) Rebase(bucket, key string, o store.Object) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed || f.sealed || f.committing || f.wb != nil {
		return false
	}
	b := o
	f.bucket, f.key = bucket, key
	f.base, f.baseBucket = &b, bucket
	f.baseLen = min(f.size, o.Size)
	f.class = o.StorageClass
	f.meta = maps.Clone(o.Metadata)
	return true
}

// RenamePending renames a file whose write-back upload is pending: the
// upload goes to the new name and nothing of the old one stays (once the
// upload lands, the object the old name held when the file was opened,
// or an earlier attempt stored there, is deleted unless someone else
// replaced it meanwhile). A rename replaces its target, so an O_EXCL
// create becomes a plain one. It reports false when nothing is pending
// (the caller renames in the store; under write-back, a changed file is
// pending only once committed).
func (f *File) RenamePending(bucket, key string) (bool, error) {
	if len(key) > store.MaxKeyLen {
		return false, errNameTooLong(key)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sealed || f.wb == nil {
		return false, nil
	}
	if bucket == f.bucket && key == f.key {
		return true, nil
	}
	rec := f.wb.rec
	rec.Bucket, rec.Key, rec.Exclusive = bucket, key, false
	if f.base != nil && f.baseBucket == f.bucket && f.base.Key == f.key {
		rec.Drop = append(slices.Clone(rec.Drop), objRef{Bucket: f.bucket, Key: f.key, ETag: f.base.ETag})
	}
	if err := f.m.journal.write(f.wb.id, rec); err != nil {
		return true, err
	}
	f.wb.rec = rec
	f.wb.version++
	f.bucket, f.key, f.exclusive = bucket, key, false
	f.wb.interrupt()
	return true, nil
}

// Remove marks the file unlinked: nothing more is committed (a commit
// under way is cancelled), a pending write-back upload is dropped, and
// the staging file goes with the last reference. Wait then returns once
// nothing of the file can land in the store any more.
func (f *File) Remove() {
	f.mu.Lock()
	f.removed = true
	if f.commitCancel != nil {
		f.commitCancel()
	}
	if f.wb != nil {
		f.wb.interrupt()
	}
	f.cond.Broadcast()
	f.mu.Unlock()
}
