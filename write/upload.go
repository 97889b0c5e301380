package write

import (
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"sync"
	"syscall"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// streamCandidateLocked returns the part to upload now after a write at
// off, or 0: the part just before the one holding off, when the writer
// has moved past it, every byte of it is in the staging file, and it is
// neither going up nor up with its current content. REQUIRES: f.mu held.
func (f *File) streamCandidateLocked(off int64) int32 {
	n, _, _ := f.m.lay.part(off)
	if n <= 1 || f.removed || f.sealed {
		return 0
	}
	p := n - 1
	start, size := f.m.lay.bounds(p)
	if !f.have.covers(start, start+size) || !f.written.overlaps(start, start+size) {
		// Not all there yet, or unchanged from the base object, which the
		// commit copies server-side.
		return 0
	}
	if f.streaming[p] {
		return 0
	}
	if f.up != nil {
		if u, ok := f.up.parts[p]; ok && u.gen == f.partGen[p] && u.size == size {
			return 0
		}
	}
	return p
}

// streamPart uploads part n while the file is being written, starting
// the multipart upload if needed. A failure is logged and left to the
// commit, which sends every part that is not up to date.
// REQUIRES: f.streaming[n] set and f.bg counted for it, under f.mu.
func (f *File) streamPart(n int32) {
	defer f.bg.Done()
	ctx := f.m.ctx
	up, err := f.ensureUpload(ctx)
	if err == nil {
		err = f.uploadPart(ctx, up, n, -1)
	}
	f.mu.Lock()
	delete(f.streaming, n)
	bucket, key := f.bucket, f.key
	f.mu.Unlock()
	if err != nil && ctx.Err() == nil && !errors.Is(err, errSealed) && !errors.Is(err, errDetached) {
		f.m.log.WithFields(logrus.Fields{"bucket": bucket, "key": key, "part": n}).WithError(err).Debug("part upload while writing failed; the commit sends it again")
	}
}

// ensureUpload returns the file's multipart upload, creating it (and
// abandoning one begun under another name). A sealed file gets none: its
// bytes belong to its pending write-back entry.
func (f *File) ensureUpload(ctx context.Context) (*mpu, error) {
	f.createMu.Lock()
	defer f.createMu.Unlock()
	f.mu.Lock()
	if f.up != nil && f.up.bucket == f.bucket && f.up.key == f.key {
		up := f.up
		f.mu.Unlock()
		return up, nil
	}
	if f.sealed {
		f.mu.Unlock()
		return nil, errSealed
	}
	bucket, key, meta, class := f.bucket, f.key, maps.Clone(f.meta), f.class
	f.mu.Unlock()
	id, err := f.m.st.CreateMultipart(ctx, store.CreateMultipartInput{Bucket: bucket, Key: key, Metadata: meta, StorageClass: class})
	if err != nil {
		return nil, err
	}
	up := &mpu{bucket: bucket, key: key, id: id, parts: map[int32]upPart{}}
	f.mu.Lock()
	if f.sealed {
		// Committed under write-back meanwhile: nothing may go up for it.
		// The entry records the upload until it is surely aborted.
		e := f.wb
		f.mu.Unlock()
		ref := upRef{Bucket: bucket, Key: key, ID: id}
		f.m.journal.noteUpload(f, e, ref)
		if f.m.abort(up) {
			f.m.journal.forgetUpload(f, e, id)
		}
		return nil, errSealed
	}
	old := f.up
	f.up = up
	f.mu.Unlock()
	if old != nil {
		f.m.abort(old)
	}
	if f.journalEntry != nil {
		f.m.journal.noteUpload(f.journalOf, f.journalEntry, upRef{Bucket: bucket, Key: key, ID: id})
	}
	return up, nil
}

// uploadPart sends part n of the staging file (its bytes up to size, or
// up to the file's size when size < 0) and records it with the part's
// gen as it was before the bytes were read: a change made while they are
// read makes the record stale, never a stale part fresh.
func (f *File) uploadPart(ctx context.Context, up *mpu, n int32, size int64) error {
	start, psize := f.m.lay.bounds(n)
	f.mu.Lock()
	if f.up != up {
		f.mu.Unlock()
		return errDetached
	}
	if size < 0 {
		size = min(psize, f.size-start)
	}
	gen, sf := f.partGen[n], f.staging
	if sf == nil || size <= 0 {
		f.mu.Unlock()
		return errors.New("nothing to upload")
	}
	up.inflight++
	f.mu.Unlock()
	etag, err := f.sendPartBytes(ctx, up, n, sf, start, size)
	f.mu.Lock()
	up.inflight--
	if err == nil {
		up.parts[n] = upPart{etag: etag, gen: gen, size: size}
	}
	f.cond.Broadcast()
	f.mu.Unlock()
	return err
}

// sendPartBytes is the UploadPart request of uploadPart.
func (f *File) sendPartBytes(ctx context.Context, up *mpu, n int32, sf *os.File, start, size int64) (string, error) {
	if err := f.m.acquire(ctx); err != nil {
		return "", err
	}
	defer f.m.release()
	etag, err := f.m.st.UploadPart(ctx, store.UploadPartInput{
		Bucket: up.bucket, Key: up.key, UploadID: up.id, Part: n,
		Body: io.NewSectionReader(sf, start, size), Size: size,
	})
	if err != nil {
		return "", err
	}
	f.m.bytesUploaded.Add(size)
	f.m.partsUploaded.Add(1)
	return etag, nil
}

// abortUpload abandons the file's multipart upload, if any. It reports
// whether the store confirmed it (or there was none).
func (f *File) abortUpload() bool {
	f.mu.Lock()
	up := f.up
	f.up = nil
	f.mu.Unlock()
	if up == nil {
		return true
	}
	return f.m.abort(up)
}

// abort aborts a multipart upload, logging a failure (an upload left
// behind costs storage, not correctness). It reports success.
func (m *Manager) abort(up *mpu) bool {
	ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
	defer cancel()
	if err := m.st.AbortMultipart(ctx, up.bucket, up.key, up.id); err != nil {
		m.log.WithFields(logrus.Fields{"bucket": up.bucket, "key": up.key, "upload_id": up.id}).WithError(err).Warn("could not abort a multipart upload; its parts stay until the bucket's lifecycle rule removes them")
		return false
	}
	return true
}

// snapshot is what one commit sends.
type snapshot struct {
	bucket, key string
	size        int64
	base        *store.Object
	baseBucket  string
	baseLen     int64
	written     ranges
	meta        map[string]string
	class       string
	exclusive   bool
	metaOnly    bool
	gen         uint64
	metaGen     uint64
}

// Commit makes the store's object equal to the file. Without write-back
// it returns once the store acknowledged the object, and the error
// otherwise; with write-back, once the bytes and a journal record are on
// the local disk. It returns the object as it is (or will be) stored. A
// removed file commits nothing: Commit returns no object and no error,
// and cancels itself when Remove comes while it runs.
func (f *File) Commit(ctx context.Context) (store.Object, error) {
	if f.m.writeBack {
		return f.commitBack(ctx)
	}
	f.mu.Lock()
	if o, done, err := f.settledLocked(ctx); done {
		f.mu.Unlock()
		return o, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.committing, f.commitCancel = true, cancel
	s := f.snapshotLocked()
	f.mu.Unlock()

	obj, err := f.send(ctx, s)

	f.mu.Lock()
	f.committing, f.commitCancel = false, nil
	f.cond.Broadcast()
	if err == nil {
		f.committedLocked(s, obj)
	}
	removed := f.removed
	f.mu.Unlock()
	if err != nil {
		if removed {
			return store.Object{}, nil
		}
		f.m.uploadFailures.Add(1)
	}
	return obj, err
}

// settledLocked waits for a commit under way to end and reports done,
// with what Commit returns, when there is nothing to commit: the wait was
// interrupted (ctx's error), the file was removed (no object), or nothing
// changed since the last commit (the object as stored, or as it will be
// when a write-back upload is pending). REQUIRES: f.mu held.
func (f *File) settledLocked(ctx context.Context) (store.Object, bool, error) {
	for f.committing {
		waitCond(ctx, f.cond)
		if err := ctx.Err(); err != nil {
			return store.Object{}, true, err
		}
	}
	if f.removed || f.staging == nil {
		return store.Object{}, true, nil
	}
	if !f.changed {
		if f.sealed {
			return store.Written(f.key, f.size, "", f.m.now(), f.class, maps.Clone(f.meta)), true, nil
		}
		return f.currentLocked(), true, nil
	}
	return store.Object{}, false, nil
}

// currentLocked describes the object the file was last committed as.
// REQUIRES: f.mu held.
func (f *File) currentLocked() store.Object {
	if f.base == nil {
		return store.Written(f.key, f.size, "", f.m.now(), f.class, maps.Clone(f.meta))
	}
	return *f.base
}

// snapshotLocked captures what a commit sends. REQUIRES: f.mu held.
func (f *File) snapshotLocked() snapshot {
	s := snapshot{
		bucket: f.bucket, key: f.key, size: f.size, baseBucket: f.baseBucket, baseLen: f.baseLen,
		written: append(ranges(nil), f.written...), meta: maps.Clone(f.meta),
		class: f.class, exclusive: f.exclusive, metaOnly: f.metaOnly, gen: f.gen, metaGen: f.metaGen,
	}
	if f.base != nil {
		b := *f.base
		s.base = &b
	}
	return s
}

// committedLocked records that the store now holds s as obj. Bytes
// cannot change while a commit runs, metadata can: a change made
// meanwhile leaves the file changed (metadata only).
// REQUIRES: f.mu held.
func (f *File) committedLocked(s snapshot, obj store.Object) {
	if f.bucket != s.bucket || f.key != s.key {
		return // renamed meanwhile: the next commit sends it again
	}
	o := obj
	f.base, f.baseBucket, f.baseLen = &o, s.bucket, s.size
	f.exclusive = false
	if f.gen == s.gen {
		f.written = nil
		f.changed = f.metaGen != s.metaGen
		f.metaOnly = f.changed
	}
	f.up = nil
	f.m.objectsWritten.Add(1)
}

// send uploads snapshot s: a metadata-only change as a server-side copy,
// a file of one part as one PUT, anything else as a multipart upload
// (which is aborted if it fails).
func (f *File) send(ctx context.Context, s snapshot) (store.Object, error) {
	// Parts started while writing finish first: their ETags are needed.
	f.bg.Wait()
	if s.metaOnly && s.base != nil && s.base.Size == s.size {
		return f.m.copyObject(ctx, CopySpec{
			SrcBucket: s.baseBucket, Src: *s.base, Bucket: s.bucket, Key: s.key,
			Metadata: s.meta, ReplaceMetadata: true, StorageClass: s.class,
		})
	}
	if s.size <= f.m.lay.first {
		// One PUT; parts that went up before a shrinking truncate go.
		f.abortUpload()
		return f.put(ctx, s)
	}
	obj, err := f.sendParts(ctx, s)
	if err != nil {
		f.abortUpload()
	}
	return obj, err
}

// put sends the file as one PUT.
func (f *File) put(ctx context.Context, s snapshot) (store.Object, error) {
	if err := f.fill(ctx, 0, s.size); err != nil {
		return store.Object{}, err
	}
	f.mu.Lock()
	sf := f.staging
	f.mu.Unlock()
	if sf == nil {
		return store.Object{}, syscall.EBADF
	}
	if err := f.m.acquire(ctx); err != nil {
		return store.Object{}, err
	}
	defer f.m.release()
	obj, err := f.m.createIfAbsent(ctx, "PutObject", s.bucket, s.key, s.exclusive, func(ifNoneMatch bool) (*store.Object, error) {
		return f.m.st.Put(ctx, store.PutInput{
			Bucket: s.bucket, Key: s.key, Body: io.NewSectionReader(sf, 0, s.size), Size: s.size,
			Metadata: s.meta, StorageClass: s.class, IfNoneMatch: ifNoneMatch,
		})
	})
	if err != nil {
		return store.Object{}, err
	}
	f.m.bytesUploaded.Add(s.size)
	return written(obj, s), nil
}

// written completes what the store returned for s with what s knows.
func written(obj *store.Object, s snapshot) store.Object {
	o := *obj
	o.Key, o.Size = s.key, s.size
	if o.Metadata == nil {
		o.Metadata = s.meta
	}
	if o.StorageClass == "" {
		o.StorageClass = s.class
	}
	return o
}

// sendParts sends s as a multipart upload and completes it.
func (f *File) sendParts(ctx context.Context, s snapshot) (store.Object, error) {
	up, err := f.ensureUpload(ctx)
	if err != nil {
		return store.Object{}, err
	}
	last, _, _ := f.m.lay.part(max(s.size-1, 0))
	parts := make([]store.CompletedPart, last)
	errs := make([]error, last)
	var wg sync.WaitGroup
	lim := make(chan struct{}, perFileUploads)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for n := int32(1); n <= last; n++ {
		start, psize := f.m.lay.bounds(n)
		end := min(start+psize, s.size)
		f.mu.Lock()
		u, ok := up.parts[n]
		fresh := ok && u.gen == f.partGen[n] && u.size == end-start
		f.mu.Unlock()
		if fresh {
			parts[n-1] = store.CompletedPart{Part: n, ETag: u.etag}
			continue
		}
		select {
		case lim <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-lim }()
			etag, err := f.sendPart(ctx, s, up, n, start, end)
			if err != nil {
				errs[n-1] = err
				cancel()
				return
			}
			parts[n-1] = store.CompletedPart{Part: n, ETag: etag}
		}()
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return store.Object{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.Object{}, err
	}
	obj, err := f.m.createIfAbsent(ctx, "CompleteMultipartUpload", s.bucket, s.key, s.exclusive, func(ifNoneMatch bool) (*store.Object, error) {
		return f.m.st.CompleteMultipart(ctx, store.CompleteMultipartInput{
			Bucket: s.bucket, Key: s.key, UploadID: up.id, Parts: parts, Size: s.size, IfNoneMatch: ifNoneMatch,
		})
	})
	if err != nil {
		return store.Object{}, err
	}
	return written(obj, s), nil
}

// firstErr returns the first non-nil error that is not a cancellation
// caused by another part's failure.
func firstErr(errs []error) error {
	var fallback error
	for _, e := range errs {
		if e == nil {
			continue
		}
		if !errors.Is(e, context.Canceled) {
			return e
		}
		fallback = e
	}
	return fallback
}

// sendPart sends part n ([start, end) of s): copied server-side from the
// base object when none of its bytes changed, else uploaded from the
// staging file after fetching the base bytes it lacks.
func (f *File) sendPart(ctx context.Context, s snapshot, up *mpu, n int32, start, end int64) (string, error) {
	if s.base != nil && end <= s.baseLen && !s.written.overlaps(start, end) {
		if err := f.m.acquire(ctx); err != nil {
			return "", err
		}
		defer f.m.release()
		etag, err := f.m.st.UploadPartCopy(ctx, store.UploadPartCopyInput{
			Bucket: s.bucket, Key: s.key, UploadID: up.id, Part: n,
			SrcBucket: s.baseBucket, SrcKey: s.base.Key, SrcETag: s.base.ETag,
			Offset: start, Length: end - start,
		})
		if err != nil {
			return "", err
		}
		f.m.serverCopies.Add(1)
		f.m.copiedBytes.Add(end - start)
		return etag, nil
	}
	if err := f.fill(ctx, start, end); err != nil {
		return "", err
	}
	if err := f.uploadPart(ctx, up, n, end-start); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return up.parts[n].etag, nil
}
