package write

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// Write-back. Commit under --write-back makes the staging file durable
// (fsync), links it into the journal directory as ID.data, and writes
// ID.json (fsynced, renamed into place, directory fsynced) saying what it
// is: bucket, key, size, the base object and the ranges written since,
// metadata, class, the multipart uploads begun for it and the names to
// clear once it lands. Only then does close() return. An uploader
// goroutine per entry sends it, retrying without end with exponential
// backoff (RetryDelay up to MaxRetryDelay); once the store acknowledged
// it, the entry's files go. Parts that went up while the file was
// written are handed to the entry's first attempt, which sends only the
// rest.
//
// At start (Manager.Start) every entry found is sent again: the multipart
// uploads it had begun are aborted first, so no stale upload is left. Of
// the entries of one file (record.Chain) only the newest is sent: an
// older one still in the journal (the daemon stopped before its uploader
// cleared it) is dropped, so it cannot land over the newer one.
//
// While its upload is pending a file is sealed: its bytes are what is
// being sent. A new write to it makes a complete private copy of the
// bytes first, and the next commit's entry supersedes the pending one
// (which lands first if it is already under way, never after). Metadata
// changes and renames of a pending file only rewrite its record, and the
// uploader sends it again under the new name.
//
// A failed precondition is final: the object the file was opened on
// changed in the store, or an O_EXCL name was created elsewhere. The
// entry then moves to the journal's conflicts directory (with an error
// in the log) instead of being retried for ever.

// abortTimeout bounds an AbortMultipartUpload.
const abortTimeout = 30 * time.Second

// journal is the directory of pending write-back uploads.
type journal struct {
	dir string
	mu  sync.Mutex // serializes record writes; a leaf
	seq int64      // GUARDED_BY(mu)
}

// entry is one pending upload.
type entry struct {
	// Constant data
	id   string
	done chan struct{} // closed when the uploader exits
	wake chan struct{} // (1) interrupts the uploader's backoff
	// Mutable state, GUARDED_BY(File.mu)
	rec        record
	version    int                // bumped by every change to rec after the first write
	cancel     context.CancelFunc // the attempt under way
	superseded bool
	// finished is set once the entry is decided (landed, moot or a
	// conflict): its record is written no more.
	finished bool
	// stream is the multipart upload the file's parts went up in while
	// it was written, for the first attempt; streamGen the file's partGen
	// when it was sealed (a part counts if it went up with that content).
	stream    *mpu
	streamGen map[int32]uint64
}

// interrupt makes the uploader look at e again: it cancels the attempt
// under way and ends a backoff wait. REQUIRES: the File's mu held.
func (e *entry) interrupt() {
	if e.cancel != nil {
		e.cancel()
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// record is an entry's JSON file.
type record struct {
	Bucket     string            `json:"bucket"`
	Key        string            `json:"key"`
	Size       int64             `json:"size"`
	Base       *store.Object     `json:"base,omitempty"`
	BaseBucket string            `json:"base_bucket,omitempty"` // empty: Bucket
	BaseLen    int64             `json:"base_len"`
	Written    [][2]int64        `json:"written"`
	Meta       map[string]string `json:"meta,omitempty"`
	Class      string            `json:"class,omitempty"`
	Exclusive  bool              `json:"exclusive,omitempty"`
	MetaOnly   bool              `json:"meta_only,omitempty"`
	// Uploads are the multipart uploads begun for it and not known to be
	// aborted: the next start aborts them.
	Uploads []upRef `json:"uploads,omitempty"`
	// Drop are names that must not keep an older version of the file once
	// it lands (a rename's old name): each is deleted then if it still
	// holds that ETag.
	Drop   []objRef  `json:"drop,omitempty"`
	Closed time.Time `json:"closed"`
	// Chain is the id of the first entry of the file this entry is a
	// version of (empty: this entry's own id). Of the entries of one
	// chain, only the newest (highest id) is sent at start: the others
	// are older versions it supersedes.
	Chain string `json:"chain,omitempty"`
}

// upRef names a multipart upload.
type upRef struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	ID     string `json:"id"`
}

// objRef names one version of an object.
type objRef struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	ETag   string `json:"etag"`
}

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("write-back journal: %w", err)
	}
	// Ids grow across runs too, even if the clock went back: a start
	// tells a file's newest entry by its id (record.Chain).
	seq := time.Now().UnixNano()
	names, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, p := range names {
		if n, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(p), ".json"), 36, 64); err == nil {
			seq = max(seq, n)
		}
	}
	return &journal{dir: dir, seq: seq}, nil
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
		return fmt.Errorf("write-back journal: %w", err)
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

// noteUpload records, in f's pending entry e, a multipart upload begun
// for it, so that the next start aborts it if the daemon stops first.
func (j *journal) noteUpload(f *File, e *entry, u upRef) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.finished {
		return
	}
	rec := e.rec
	rec.Uploads = append(slices.Clone(rec.Uploads), u)
	if err := j.write(e.id, rec); err != nil {
		f.m.log.WithField("journal", e.id).WithError(err).Warn("could not record a multipart upload in the journal; if the daemon stops now it stays behind")
	}
	e.rec = rec
}

// forgetUpload drops an aborted upload from e's record.
func (j *journal) forgetUpload(f *File, e *entry, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.finished {
		return
	}
	rec := e.rec
	rec.Uploads = slices.DeleteFunc(slices.Clone(rec.Uploads), func(u upRef) bool { return u.ID == id })
	if len(rec.Uploads) == len(e.rec.Uploads) {
		return
	}
	if err := j.write(e.id, rec); err == nil {
		e.rec = rec
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
	if o, done, err := f.settledLocked(ctx); done {
		f.mu.Unlock()
		return o, err
	}
	if f.sealed {
		// A metadata change of a pending file (a change of its bytes
		// would have unsealed it): its record is rewritten.
		rec := f.wb.rec
		rec.Meta = maps.Clone(f.meta)
		if err := f.m.journal.write(f.wb.id, rec); err != nil {
			f.mu.Unlock()
			return store.Object{}, err
		}
		f.wb.rec = rec
		f.wb.version++
		f.changed, f.metaOnly = false, false
		f.wb.interrupt()
		o := store.Written(f.key, f.size, "", f.m.now(), f.class, maps.Clone(f.meta))
		f.mu.Unlock()
		return o, nil
	}
	if err := f.staging.Sync(); err != nil {
		f.mu.Unlock()
		return store.Object{}, fmt.Errorf("staging file: %w", err)
	}
	j := f.m.journal
	id := j.newID()
	if err := os.Link(f.path, j.dataPath(id)); err != nil {
		f.mu.Unlock()
		return store.Object{}, fmt.Errorf("write-back journal: %w", err)
	}
	s := f.snapshotLocked()
	rec := record{
		Bucket: s.bucket, Key: s.key, Size: s.size, Base: s.base, BaseBucket: s.baseBucket, BaseLen: s.baseLen,
		Written: toPairs(s.written), Meta: s.meta, Class: s.class, Exclusive: s.exclusive,
		MetaOnly: s.metaOnly, Closed: f.m.now(),
	}
	old := f.wb
	if f.chain == "" {
		f.chain = id
	}
	rec.Chain = f.chain
	if old != nil {
		// The older entry's names to clear (a rename's old name) are this
		// one's: the older one will not land.
		rec.Drop = slices.Clone(old.rec.Drop)
	}
	if f.up != nil {
		// The parts that went up while writing: the entry takes them.
		rec.Uploads = []upRef{{Bucket: f.up.bucket, Key: f.up.key, ID: f.up.id}}
	}
	if err := j.write(id, rec); err != nil {
		f.mu.Unlock()
		os.Remove(j.dataPath(id))
		return store.Object{}, err
	}
	e := &entry{id: id, rec: rec, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	if f.up != nil {
		e.stream, e.streamGen = f.up, maps.Clone(f.partGen)
		f.up = nil
	}
	f.wb = e
	f.m.setPending(f, true)
	f.sealed = true
	f.changed, f.metaOnly = false, false
	f.refs++ // the uploader's
	if old != nil {
		old.superseded = true
		old.interrupt()
	}
	o := store.Written(s.key, s.size, "", f.m.now(), s.class, maps.Clone(s.meta))
	f.mu.Unlock()
	f.m.startEntry(f, e, old)
	return o, nil
}

// startEntry starts e's uploader, after prev's. Once Close began no
// uploader starts: e stays in the journal.
func (m *Manager) startEntry(f *File, e, prev *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		close(e.done)
		return
	}
	m.bg.Add(1)
	go m.uploader(f, e, prev)
}

// unsealLocked lets a pending file change again: its bytes are copied to
// a new private staging file that holds the whole content, so the
// pending upload keeps the bytes it is sending. It fails when the rest of
// the original object cannot be fetched or the copy cannot be made.
// REQUIRES: f.mu held, f.sealed; f.mu is released while fetching.
func (f *File) unsealLocked(ctx context.Context) error {
	// Fill what the base object still holds, so the copy is whole.
	for f.sealed && f.baseLen > 0 && !f.have.covers(0, f.baseLen) {
		end := f.baseLen
		f.mu.Unlock()
		err := f.fill(ctx, 0, end)
		f.mu.Lock()
		if err != nil {
			return fmt.Errorf("fetching the rest of a pending file to change it: %w", err)
		}
	}
	if !f.sealed || f.staging == nil {
		return nil
	}
	path := filepath.Join(f.m.stagingDir, strconv.FormatUint(f.m.seq.Add(1), 10))
	nf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, err = io.Copy(nf, io.NewSectionReader(f.staging, 0, f.size))
		if err != nil {
			nf.Close()
			os.Remove(path)
		}
	}
	if err != nil {
		return fmt.Errorf("copying a pending file to change it: %w", err)
	}
	// The old staging file lives on as the journal's data (a hard link,
	// or the data file itself for a file recovered at start) for the
	// uploader, which opened its own descriptor.
	f.staging.Close()
	if filepath.Dir(f.path) == f.m.stagingDir {
		os.Remove(f.path)
	}
	f.staging, f.path = nf, path
	f.base, f.baseBucket, f.baseLen = nil, "", 0
	f.have = ranges{}.add(0, f.size)
	f.written = f.have
	f.sealed = false
	f.changed, f.metaOnly = true, false
	f.gen++
	for n := range f.partGen {
		f.partGen[n] = f.gen
	}
	f.cond.Broadcast()
	return nil
}
