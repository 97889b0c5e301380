package write

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// Write-back. Commit under --write-back makes the staging file durable
// (fsync), links it into the journal directory as ID.data, and writes
// ID.json (fsynced, renamed into place, directory fsynced) saying what it
// is: bucket, key, size, the base object and the ranges written since,
// metadata, class, and the id of the multipart upload once one exists.
// Only then does close() return. An uploader goroutine per entry sends
// it, retrying without end with exponential backoff (RetryDelay up to
// MaxRetryDelay); once the store acknowledged it, the entry's files go.
//
// At start (Manager.Start) every entry found is sent again: a multipart
// upload it had begun is aborted first, so no stale upload is left.
//
// While its upload is pending a file is sealed: its bytes are what is
// being sent. A new write to it makes a complete private copy of the
// bytes first, and the next commit's entry supersedes the pending one.
// Metadata changes and renames of a pending file only rewrite its record,
// and the uploader sends it again under the new name.

// abortTimeout bounds an AbortMultipartUpload.
const abortTimeout = 30 * time.Second

// journal is the directory of pending write-back uploads.
type journal struct {
	dir string
	mu  sync.Mutex // serializes record writes; a leaf
	seq int64
}

// entry is one pending upload.
type entry struct {
	// Constant data
	id string
	// Mutable state, GUARDED_BY(File.mu)
	rec         record
	version     int // bumped by every change to rec after the first write
	metaChanged bool
	cancel      context.CancelFunc // the attempt under way
	done        chan struct{}      // closed when the uploader exits
	superseded  bool
}

// record is an entry's JSON file.
type record struct {
	Bucket    string            `json:"bucket"`
	Key       string            `json:"key"`
	Size      int64             `json:"size"`
	Base      *store.Object     `json:"base,omitempty"`
	BaseLen   int64             `json:"base_len"`
	Written   [][2]int64        `json:"written"`
	Meta      map[string]string `json:"meta,omitempty"`
	Class     string            `json:"class,omitempty"`
	Exclusive bool              `json:"exclusive,omitempty"`
	MetaOnly  bool              `json:"meta_only,omitempty"`
	// The multipart upload begun for it, aborted at the next start.
	UploadBucket string    `json:"upload_bucket,omitempty"`
	UploadKey    string    `json:"upload_key,omitempty"`
	UploadID     string    `json:"upload_id,omitempty"`
	Closed       time.Time `json:"closed"`
}

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("write-back journal: %w", err)
	}
	return &journal{dir: dir, seq: time.Now().UnixNano()}, nil
}

func (j *journal) newID() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	return strconv.FormatInt(j.seq, 36)
}

func (j *journal) dataPath(id string) string { return filepath.Join(j.dir, id+".data") }
func (j *journal) recPath(id string) string  { return filepath.Join(j.dir, id+".json") }

// write makes rec durable as id's record.
func (j *journal) write(id string, rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	tmp := j.recPath(id) + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = fh.Write(b)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, j.recPath(id))
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write-back journal: %w", err)
	}
	return nil
}

// remove deletes id's record, then its data.
func (j *journal) remove(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	os.Remove(j.recPath(id))
	os.Remove(j.dataPath(id))
	syncDir(j.dir)
}

// noteUpload records, in f's pending entry e, the multipart upload begun
// for it, so that the next start aborts it if the daemon stops first.
func (j *journal) noteUpload(f *File, e *entry, bucket, key, id string) {
	f.mu.Lock()
	e.rec.UploadBucket, e.rec.UploadKey, e.rec.UploadID = bucket, key, id
	rec := e.rec
	f.mu.Unlock()
	if err := j.write(e.id, rec); err != nil {
		f.m.log.WithField("journal", e.id).WithError(err).Warn("could not record a multipart upload in the journal; if the daemon stops now it stays behind")
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func toPairs(r ranges) [][2]int64 {
	out := make([][2]int64, len(r))
	for i, s := range r {
		out[i] = [2]int64{s.off, s.end}
	}
	return out
}

func fromPairs(p [][2]int64) ranges {
	var r ranges
	for _, s := range p {
		r = r.add(s[0], s[1])
	}
	return r
}

// commitBack is Commit under write-back.
func (f *File) commitBack(ctx context.Context) (store.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.committing {
		waitCond(ctx, f.cond)
		if err := ctx.Err(); err != nil {
			return store.Object{}, err
		}
	}
	if f.removed || f.staging == nil {
		return store.Object{}, nil
	}
	if !f.changed {
		if f.sealed {
			return store.Written(f.key, f.size, "", f.m.now(), f.class, maps.Clone(f.meta)), nil
		}
		return f.currentLocked(), nil
	}
	if f.wb != nil && f.sealed {
		// A metadata change of a pending file: its record is rewritten.
		f.wb.rec.Meta = maps.Clone(f.meta)
		f.wb.version++
		if err := f.m.journal.write(f.wb.id, f.wb.rec); err != nil {
			return store.Object{}, err
		}
		f.changed, f.metaOnly = false, false
		if f.wb.cancel != nil {
			f.wb.cancel()
		}
		return store.Written(f.key, f.size, "", f.m.now(), f.class, maps.Clone(f.meta)), nil
	}
	if err := f.staging.Sync(); err != nil {
		return store.Object{}, fmt.Errorf("staging file: %w", err)
	}
	j := f.m.journal
	id := j.newID()
	if err := os.Link(f.path, j.dataPath(id)); err != nil {
		return store.Object{}, fmt.Errorf("write-back journal: %w", err)
	}
	s := f.snapshotLocked()
	rec := record{
		Bucket: s.bucket, Key: s.key, Size: s.size, Base: s.base, BaseLen: s.baseLen,
		Written: toPairs(s.written), Meta: s.meta, Class: s.class, Exclusive: s.exclusive,
		MetaOnly: s.metaOnly, Closed: f.m.now(),
	}
	if err := j.write(id, rec); err != nil {
		os.Remove(j.dataPath(id))
		return store.Object{}, err
	}
	old := f.wb
	e := &entry{id: id, rec: rec, done: make(chan struct{})}
	f.wb = e
	f.sealed = true
	f.changed, f.metaOnly = false, false
	f.refs++ // the uploader's
	f.m.mu.Lock()
	f.m.pending[f] = struct{}{}
	f.m.mu.Unlock()
	if old != nil {
		old.superseded = true
		if old.cancel != nil {
			old.cancel()
		}
	}
	f.m.bg.Add(1)
	go f.m.uploader(f, e, old)
	return store.Written(s.key, s.size, "", f.m.now(), s.class, maps.Clone(s.meta)), nil
}

// unsealLocked lets a pending file change again: its bytes are copied to
// a new private staging file that holds the whole content, so the
// pending upload keeps the bytes it is sending. REQUIRES: f.mu held.
func (f *File) unsealLocked() {
	// Fill what the base object still holds, so the copy is whole.
	if f.baseLen > 0 && !f.have.covers(0, f.baseLen) {
		f.mu.Unlock()
		err := f.fill(context.Background(), 0, f.size)
		f.mu.Lock()
		if err != nil {
			f.m.log.WithFields(logrus.Fields{"bucket": f.bucket, "key": f.key}).WithError(err).Warn("could not fetch the rest of a pending file to change it; the write waits for its upload")
			f.wbWaitLocked()
			return
		}
	}
	if !f.sealed {
		return
	}
	path := filepath.Join(f.m.stagingDir, strconv.FormatUint(f.m.seq.Add(1), 10))
	nf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, err = io.Copy(nf, io.NewSectionReader(f.staging, 0, f.size))
	}
	if err != nil {
		if nf != nil {
			nf.Close()
			os.Remove(path)
		}
		f.m.log.WithError(err).Warn("could not copy a pending file to change it; the write waits for its upload")
		f.wbWaitLocked()
		return
	}
	// The old staging file lives on as the journal's data (a hard link)
	// for the uploader, which opened its own descriptor.
	f.staging.Close()
	os.Remove(f.path)
	f.staging, f.path = nf, path
	f.base, f.baseLen = nil, 0
	f.have = ranges{}.add(0, f.size)
	f.written = f.have
	f.up = nil
	f.sealed = false
	f.changed = true
	for n := range f.partGen {
		f.partGen[n] = f.gen
	}
	f.cond.Broadcast()
}

// wbWaitLocked waits for the pending upload to end. REQUIRES: f.mu held.
func (f *File) wbWaitLocked() {
	for f.sealed {
		f.cond.Wait()
	}
}

// uploader sends e until the store acknowledges it, with backoff,
// without a limit; it stops when the Manager closes (the entry stays in
// the journal) or a newer entry supersedes it.
func (m *Manager) uploader(f *File, e *entry, prev *entry) {
	defer m.bg.Done()
	defer close(e.done)
	if prev != nil {
		<-prev.done // the older version must not land after this one
	}
	log := m.log.WithField("journal", e.id)
	delay := m.retryDelay
	var lastKey, lastBucket string
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithCancel(m.ctx)
		f.mu.Lock()
		if e.superseded || f.removed {
			f.mu.Unlock()
			cancel()
			m.finishEntry(f, e, false)
			return
		}
		e.cancel = cancel
		rec, version := e.rec, e.version
		f.mu.Unlock()
		obj, err := m.sendRecord(ctx, f, e, rec)
		cancel()
		f.mu.Lock()
		changed := e.version != version || e.superseded || f.removed
		e.cancel = nil
		f.mu.Unlock()
		if err == nil {
			if lastKey != "" && (lastKey != rec.Key || lastBucket != rec.Bucket) {
				m.st.Delete(m.ctx, lastBucket, lastKey)
			}
			if !changed {
				log.WithFields(logrus.Fields{"bucket": rec.Bucket, "key": rec.Key, "size": rec.Size, "attempts": attempt}).Debug("write-back upload done")
				f.mu.Lock()
				if f.wb == e {
					f.base, f.baseLen = &obj, rec.Size
					f.up = nil
				}
				f.mu.Unlock()
				m.objectsWritten.Add(1)
				m.finishEntry(f, e, true)
				return
			}
			lastKey, lastBucket = rec.Key, rec.Bucket
			attempt = 0
			continue
		}
		if m.ctx.Err() != nil {
			return // closing: the entry stays for the next start
		}
		if changed {
			attempt = 0
			continue
		}
		m.uploadFailures.Add(1)
		if errors.Is(err, store.ErrPreconditionFailed) && rec.Exclusive {
			log.WithFields(logrus.Fields{"bucket": rec.Bucket, "key": rec.Key}).WithError(err).Error("write-back: the name was created elsewhere after an exclusive create; the bytes stay in the journal's conflicts directory")
			m.journal.conflict(e.id)
			m.finishEntry(f, e, false)
			return
		}
		log.WithFields(logrus.Fields{"bucket": rec.Bucket, "key": rec.Key, "attempt": attempt, "retry_in": delay}).WithError(err).Warn("write-back upload failed; retrying")
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-m.ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, m.maxRetryDelay)
	}
}

// finishEntry removes e from the journal (the upload is done, or a newer
// entry or an unlink made it moot) and lets the file go.
func (m *Manager) finishEntry(f *File, e *entry, uploaded bool) {
	m.journal.remove(e.id)
	f.mu.Lock()
	last := f.wb == e
	if last {
		f.wb = nil
		f.sealed = false
		f.cond.Broadcast()
	}
	f.mu.Unlock()
	if last {
		m.mu.Lock()
		delete(m.pending, f)
		m.mu.Unlock()
	}
	f.Release()
}

// conflict moves id's files to the conflicts directory.
func (j *journal) conflict(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	dir := filepath.Join(j.dir, "conflicts")
	os.MkdirAll(dir, 0o700)
	os.Rename(j.dataPath(id), filepath.Join(dir, id+".data"))
	os.Rename(j.recPath(id), filepath.Join(dir, id+".json"))
	syncDir(j.dir)
}

// sendRecord uploads an entry from its journal data file.
func (m *Manager) sendRecord(ctx context.Context, f *File, e *entry, rec record) (store.Object, error) {
	data, err := os.Open(m.journal.dataPath(e.id))
	if err != nil {
		return store.Object{}, err
	}
	defer data.Close()
	g := &File{m: m, path: m.journal.dataPath(e.id), bucket: rec.Bucket, key: rec.Key, staging: data,
		size: rec.Size, base: rec.Base, baseLen: rec.BaseLen, written: fromPairs(rec.Written),
		meta: rec.Meta, class: rec.Class, exclusive: rec.Exclusive, partGen: map[int32]uint64{},
		journalOf: f, journalEntry: e}
	g.cond = sync.NewCond(&g.mu)
	// What the data file holds: everything written, nothing of the base
	// that was not (fill would write the base's bytes into the journal's
	// data, which is fine: they are the same bytes).
	g.have = g.written
	s := g.snapshotLocked()
	s.metaOnly = rec.MetaOnly
	obj, err := g.send(ctx, s)
	if err != nil {
		g.abortUpload()
	}
	return obj, err
}

// Start sends the uploads the journal holds from an earlier run. It
// returns how many it found.
func (m *Manager) Start(ctx context.Context) (int, error) {
	if m.journal == nil {
		return 0, nil
	}
	names, err := filepath.Glob(filepath.Join(m.journal.dir, "*.json"))
	if err != nil {
		return 0, err
	}
	found := 0
	for _, p := range names {
		id := strings.TrimSuffix(filepath.Base(p), ".json")
		b, err := os.ReadFile(p)
		var rec record
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil {
			m.log.WithField("journal", id).WithError(err).Error("unreadable write-back record; left in place")
			continue
		}
		if _, err := os.Stat(m.journal.dataPath(id)); err != nil {
			m.log.WithField("journal", id).WithError(err).Error("write-back record without its data; left in place")
			continue
		}
		if rec.UploadID != "" {
			m.abort(&mpu{bucket: rec.UploadBucket, key: rec.UploadKey, id: rec.UploadID})
			rec.UploadID = ""
		}
		sf, err := os.OpenFile(m.journal.dataPath(id), os.O_RDWR, 0)
		if err != nil {
			m.log.WithField("journal", id).WithError(err).Error("cannot open write-back data; left in place")
			continue
		}
		f := &File{m: m, path: m.journal.dataPath(id), bucket: rec.Bucket, key: rec.Key, staging: sf,
			size: rec.Size, base: rec.Base, baseLen: rec.BaseLen, written: fromPairs(rec.Written),
			meta: rec.Meta, class: rec.Class, partGen: map[int32]uint64{}, refs: 1, sealed: true}
		f.have = f.written
		f.cond = sync.NewCond(&f.mu)
		e := &entry{id: id, rec: rec, done: make(chan struct{})}
		f.wb = e
		m.mu.Lock()
		m.pending[f] = struct{}{}
		m.mu.Unlock()
		m.log.WithFields(logrus.Fields{"bucket": rec.Bucket, "key": rec.Key, "size": rec.Size, "closed": rec.Closed}).Info("finishing a write-back upload left by the last run")
		found++
		m.bg.Add(1)
		go m.uploader(f, e, nil)
	}
	return found, nil
}

// Lookup returns the pending write-back file of bucket/key, if any (files
// recovered at start have no open handle until someone looks).
func (m *Manager) Lookup(bucket, key string) *File {
	m.mu.Lock()
	defer m.mu.Unlock()
	for f := range m.pending {
		if b, k := f.Name(); b == bucket && k == key {
			return f
		}
	}
	return nil
}

// PendingIn lists the pending files directly under prefix of bucket, by
// their name below prefix, with their sizes.
func (m *Manager) PendingIn(bucket, prefix string) map[string]*File {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]*File{}
	for f := range m.pending {
		b, k := f.Name()
		if b != bucket {
			continue
		}
		if rest, ok := strings.CutPrefix(k, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
			out[rest] = f
		}
	}
	return out
}

// Pending reports whether a write-back upload of f is not finished, and
// its size.
func (f *File) Pending() (bool, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sealed, f.size
}

// Wait waits until f has no pending write-back upload.
func (f *File) Wait(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.sealed {
		if err := ctx.Err(); err != nil {
			return err
		}
		waitCond(ctx, f.cond)
	}
	return nil
}
