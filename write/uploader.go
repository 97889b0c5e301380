package write

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// uploader sends e until the store acknowledges it, with backoff,
// without a limit; it stops when the Manager closes (the entry stays in
// the journal), a newer entry supersedes it, the file is removed or a
// precondition fails (conflict).
func (m *Manager) uploader(f *File, e, prev *entry) {
	defer m.bg.Done()
	defer close(e.done)
	if prev != nil {
		<-prev.done // the older version must not land after this one
	}
	log := m.log.WithField("journal", e.id)
	delay := m.retryDelay
	// landed are the versions attempts of e stored that a later attempt
	// did not replace (under another name, or with other metadata).
	var landed []objRef
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithCancel(m.ctx)
		f.mu.Lock()
		if e.superseded || f.removed {
			removed := f.removed
			rec := e.rec
			if next := f.wb; !removed && next != nil && next != e && len(landed) > 0 {
				// What e stored under other names is the newer entry's to
				// clear once it lands.
				nrec := next.rec
				nrec.Drop = append(slices.Clone(nrec.Drop), landed...)
				if err := m.journal.write(next.id, nrec); err == nil {
					next.rec = nrec
				}
			}
			f.mu.Unlock()
			cancel()
			m.detach(f, e, nil)
			if removed {
				// The caller deletes the current name; older names go here.
				m.dropNames(log, rec.Bucket, rec.Key, append(rec.Drop, landed...))
			}
			m.finish(f, e, false)
			return
		}
		e.cancel = cancel
		rec, version := e.rec, e.version
		stream, streamGen := e.stream, e.streamGen
		e.stream, e.streamGen = nil, nil
		f.mu.Unlock()
		obj, err := m.sendRecord(ctx, f, e, rec, stream, streamGen)
		cancel()
		f.mu.Lock()
		e.cancel = nil
		f.mu.Unlock()
		if err == nil {
			// Landed. Unless e changed meanwhile, e is done: decided and
			// detached at once, so a rename or a metadata change either
			// comes before (and is sent) or finds nothing pending.
			done := m.detach(f, e, func() bool {
				if e.version != version || e.superseded || f.removed {
					return false
				}
				if f.wb == e && f.sealed {
					// The file holds what was stored: it reads from it now.
					o := obj
					f.base, f.baseBucket, f.baseLen = &o, rec.Bucket, rec.Size
					f.written = nil
					f.exclusive = false
				}
				return true
			})
			if done {
				log.WithFields(logrus.Fields{"bucket": rec.Bucket, "key": rec.Key, "size": rec.Size, "attempts": attempt}).Debug("write-back upload done")
				m.objectsWritten.Add(1)
				m.dropNames(log, rec.Bucket, rec.Key, append(rec.Drop, landed...))
				m.finish(f, e, false)
				f.mu.Lock()
				fn, last := f.onStored, f.wb == nil
				f.mu.Unlock()
				if fn != nil && last {
					o := obj
					o.Key, o.Size = rec.Key, rec.Size
					if o.Metadata == nil {
						o.Metadata = rec.Meta
					}
					fn(o)
				}
				return
			}
			landed = append(landed, objRef{Bucket: rec.Bucket, Key: rec.Key, ETag: obj.ETag})
			f.mu.Lock()
			if e.rec.Exclusive {
				// It exists now, as this file's: sending it again (renamed
				// or with new metadata) is no create.
				nrec := e.rec
				nrec.Exclusive = false
				if werr := m.journal.write(e.id, nrec); werr == nil {
					e.rec = nrec
				}
			}
			f.mu.Unlock()
			attempt, delay = 0, m.retryDelay
			continue
		}
		if m.ctx.Err() != nil {
			return // closing: the entry stays for the next start
		}
		f.mu.Lock()
		changed := e.version != version || e.superseded || f.removed
		f.mu.Unlock()
		if changed {
			attempt = 0
			continue
		}
		m.uploadFailures.Add(1)
		if errors.Is(err, store.ErrPreconditionFailed) {
			log.WithFields(logrus.Fields{"bucket": rec.Bucket, "key": rec.Key, "exclusive": rec.Exclusive}).WithError(err).Error("write-back: the object changed in the store (or an O_EXCL name was created elsewhere) since the file was opened; nothing was stored and the bytes stay in the journal's conflicts directory")
			m.detach(f, e, nil)
			m.finish(f, e, true)
			return
		}
		log.WithFields(logrus.Fields{"bucket": rec.Bucket, "key": rec.Key, "attempt": attempt, "retry_in": delay}).WithError(err).Warn("write-back upload failed; retrying")
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-e.wake:
			t.Stop()
		case <-m.ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, m.maxRetryDelay)
	}
}

// dropNames deletes each version in refs that is not bucket/key and that
// its name still holds (a HEAD compares ETags; a name someone replaced
// meanwhile is left alone). Failures are logged: the file itself landed.
func (m *Manager) dropNames(log *logrus.Entry, bucket, key string, refs []objRef) {
	for _, d := range refs {
		if d.Bucket == bucket && d.Key == key {
			continue
		}
		h, err := m.st.Head(m.ctx, d.Bucket, d.Key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err == nil && unquote(h.ETag) != unquote(d.ETag) {
			log.WithFields(logrus.Fields{"bucket": d.Bucket, "key": d.Key}).Info("write-back: a renamed file's old name was written again meanwhile; left as it is")
			continue
		}
		if err == nil {
			err = m.st.Delete(m.ctx, d.Bucket, d.Key)
		}
		if err != nil {
			log.WithFields(logrus.Fields{"bucket": d.Bucket, "key": d.Key}).WithError(err).Warn("write-back: could not delete a renamed file's old name; it still shows the old content")
		}
	}
}

func unquote(etag string) string {
	return strings.TrimSuffix(strings.TrimPrefix(etag, `"`), `"`)
}

// detach ends e's hold on f, under f.mu: when ok is set and reports
// false, nothing happens and detach reports false. Otherwise e takes no
// more changes (finished), and when it is f's newest entry f is no longer
// pending nor sealed; f.finishing keeps Wait waiting until finish has
// cleared the journal.
func (m *Manager) detach(f *File, e *entry, ok func() bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok != nil && !ok() {
		return false
	}
	e.finished = true
	f.finishing++
	if f.wb == e {
		f.wb = nil
		f.sealed = false
		m.setPending(f, false)
	}
	f.cond.Broadcast()
	return true
}

// finish removes a detached e's files from the journal (to the conflicts
// directory with conflict), aborts the upload begun while writing if no
// attempt used it, and drops the uploader's reference.
func (m *Manager) finish(f *File, e *entry, conflict bool) {
	if conflict {
		m.journal.conflict(e.id)
	}
	m.journal.remove(e.id)
	f.mu.Lock()
	stream := e.stream
	e.stream = nil
	f.mu.Unlock()
	if stream != nil {
		m.abort(stream)
	}
	f.mu.Lock()
	f.finishing--
	f.cond.Broadcast()
	f.mu.Unlock()
	f.Release()
}

// sendRecord uploads an entry from its journal data file. stream, when
// set, is the upload the file's parts went up in while it was written:
// the parts whose content is the entry's are used, the rest are sent.
func (m *Manager) sendRecord(ctx context.Context, f *File, e *entry, rec record, stream *mpu, streamGen map[int32]uint64) (store.Object, error) {
	var handed *mpu
	if stream != nil {
		f.mu.Lock()
		for stream.inflight > 0 && ctx.Err() == nil {
			waitCond(ctx, f.cond)
		}
		handed = &mpu{bucket: stream.bucket, key: stream.key, id: stream.id, parts: map[int32]upPart{}}
		for n, u := range stream.parts {
			if u.gen == streamGen[n] {
				handed.parts[n] = upPart{etag: u.etag, size: u.size}
			}
		}
		f.mu.Unlock()
	}
	// Read and write: fill puts the base's bytes the parts need into it.
	data, err := os.OpenFile(m.journal.dataPath(e.id), os.O_RDWR, 0)
	if err != nil {
		if handed != nil && m.abort(handed) {
			m.journal.forgetUpload(f, e, handed.id)
		}
		return store.Object{}, err
	}
	defer data.Close()
	baseBucket := rec.BaseBucket
	if baseBucket == "" {
		baseBucket = rec.Bucket
	}
	g := &File{m: m, path: m.journal.dataPath(e.id), bucket: rec.Bucket, key: rec.Key, staging: data,
		size: rec.Size, base: rec.Base, baseBucket: baseBucket, baseLen: rec.BaseLen, written: fromPairs(rec.Written),
		meta: rec.Meta, class: rec.Class, exclusive: rec.Exclusive, partGen: map[int32]uint64{},
		streaming: map[int32]bool{}, up: handed, refs: 1, journalOf: f, journalEntry: e}
	g.cond = sync.NewCond(&g.mu)
	// What the data file holds: everything written, nothing of the base
	// that was not (fill writes the base's bytes into the journal's data,
	// which is fine: they are the bytes the file holds there).
	g.have = g.written
	s := g.snapshotLocked()
	s.metaOnly = rec.MetaOnly
	obj, err := g.send(ctx, s)
	if err != nil {
		g.mu.Lock()
		up := g.up
		g.mu.Unlock()
		if up != nil && g.abortUpload() {
			m.journal.forgetUpload(f, e, up.id)
		}
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
	type found1 struct {
		id  string
		rec record
	}
	var recs []found1
	newest := map[string]string{} // chain -> its newest entry's id
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
		if rec.Chain == "" {
			rec.Chain = id
		}
		if n, ok := newest[rec.Chain]; !ok || idLess(n, id) {
			newest[rec.Chain] = id
		}
		recs = append(recs, found1{id, rec})
	}
	found := 0
	for _, r := range recs {
		id, rec := r.id, r.rec
		if newest[rec.Chain] != id {
			// An older version of a file whose newer entry is here too
			// (the daemon stopped before the older one's uploader cleared
			// it): sending it could land it over the newer one.
			for _, u := range rec.Uploads {
				m.abort(&mpu{bucket: u.Bucket, key: u.Key, id: u.ID})
			}
			m.log.WithFields(logrus.Fields{"journal": id, "bucket": rec.Bucket, "key": rec.Key, "newer": newest[rec.Chain]}).Info("dropping a write-back entry superseded by a newer version of the file")
			m.journal.remove(id)
			continue
		}
		var kept []upRef
		for _, u := range rec.Uploads {
			if !m.abort(&mpu{bucket: u.Bucket, key: u.Key, id: u.ID}) {
				kept = append(kept, u)
			}
		}
		rec.Uploads = kept
		sf, err := os.OpenFile(m.journal.dataPath(id), os.O_RDWR, 0)
		if err != nil {
			m.log.WithField("journal", id).WithError(err).Error("cannot open write-back data; left in place")
			continue
		}
		baseBucket := rec.BaseBucket
		if baseBucket == "" {
			baseBucket = rec.Bucket
		}
		f := &File{m: m, path: m.journal.dataPath(id), bucket: rec.Bucket, key: rec.Key, staging: sf,
			size: rec.Size, base: rec.Base, baseBucket: baseBucket, baseLen: rec.BaseLen, written: fromPairs(rec.Written),
			meta: rec.Meta, class: rec.Class, partGen: map[int32]uint64{}, streaming: map[int32]bool{}, refs: 1, sealed: true,
			chain: rec.Chain}
		f.have = f.written
		f.cond = sync.NewCond(&f.mu)
		e := &entry{id: id, rec: rec, done: make(chan struct{}), wake: make(chan struct{}, 1)}
		m.mu.Lock()
		if m.closing {
			m.mu.Unlock()
			sf.Close()
			return found, errors.New("write: Start after Close")
		}
		m.bg.Add(1)
		m.mu.Unlock()
		f.mu.Lock()
		f.wb = e
		m.setPending(f, true)
		f.mu.Unlock()
		m.log.WithFields(logrus.Fields{"bucket": rec.Bucket, "key": rec.Key, "size": rec.Size, "closed": rec.Closed}).Info("finishing a write-back upload left by the last run")
		found++
		go m.uploader(f, e, nil)
	}
	return found, nil
}

// idLess orders journal ids (base 36 counters, unpadded) by age.
func idLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
