package prefetch

// Files ahead: small files fetched whole before they are opened, for a
// program going through a directory's files in listing order (cp -r, tar,
// a DataLoader with a sequential sampler). The node tree detects the
// pattern and says which versions to fetch; this file fetches them, holds
// them and hands each one to the Reader its open makes.
//
// A file fetched ahead is its first block (the whole file: the tree asks
// only for files no larger than a block), held like a stream's block: a
// block reference, and its bytes in the budget, taken only while the
// read-ahead reserve stays free. Its GET carries If-Match the version's
// ETag and takes one of the mount's read-ahead GET slots, so files ahead
// and streams together stay within Options.MaxGets. NewReader of the same
// version (bucket, key, ETag and size) takes the hold over as the first
// block of the Reader's stream, so the first read finds it; a version the
// tree drops (the pattern stopped, the file was skipped) gives its bytes
// back and cancels its GET if it has not landed.

import (
	"context"
	"sync"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
)

// aheadSet is the files fetched ahead and not yet opened.
type aheadSet struct {
	mu    sync.Mutex                   // protects files; a leaf
	files map[store.Version]*aheadFile // GUARDED_BY(mu)
	// wg counts the fills of files ahead; Manager.Close waits for them.
	wg sync.WaitGroup
}

// aheadFile is one file's first block fetched ahead.
// INVARIANT: it holds a block reference and bytes in the budget.
type aheadFile struct {
	f      *cache.Flight
	blk    *cache.Block
	bytes  int64
	cancel context.CancelFunc // cancels its GET; nil when another read fetches it
}

// AheadLimit is the largest file FetchAhead fetches: one block.
func (m *Manager) AheadLimit() int64 { return m.cfg.BlockSize }

// AheadWindow bounds how far ahead of a reader the tree fetches files: in
// files, enough to keep every read-ahead GET slot busy twice over, and in
// bytes, one stream's largest window.
func (m *Manager) AheadWindow() (files int, bytes int64) {
	return 2 * m.cfg.MaxGets, m.cfg.MaxReadahead
}

// FetchAhead starts fetching v whole, to be read by the next open of v. It
// reports false when the budget has no room above its reserve now (the
// caller stops asking for more); a v that is empty, larger than
// AheadLimit, or already fetched ahead is left as it is and reports true.
func (m *Manager) FetchAhead(v store.Version) bool {
	if v.Size <= 0 || v.Size > m.cfg.BlockSize {
		return true
	}
	m.ahead.mu.Lock()
	defer m.ahead.mu.Unlock()
	if m.ahead.files[v] != nil {
		return true
	}
	n := m.blockLen(v, 0)
	if !m.budget.TryAcquire(n, m.reserve) {
		return false
	}
	f, blk, created := m.cache.Join(m.blockKey(v, 0), int(n))
	a := &aheadFile{f: f, blk: blk, bytes: n}
	if created {
		m.Stats.ReadaheadBlocks.Add(1)
		ctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		m.ahead.wg.Go(func() { m.fill(ctx, v, true, f) })
	}
	if m.ahead.files == nil {
		m.ahead.files = map[store.Version]*aheadFile{}
	}
	m.ahead.files[v] = a
	return true
}

// DropAhead lets go of v fetched ahead, if it still is: its GET is
// cancelled if it has not landed, and its bytes go back to the budget.
func (m *Manager) DropAhead(v store.Version) {
	m.ahead.mu.Lock()
	a := m.ahead.files[v]
	delete(m.ahead.files, v)
	m.ahead.mu.Unlock()
	if a != nil {
		m.Stats.ReadaheadWasted.Add(a.bytes)
		m.unholdAhead(a)
	}
}

// unholdAhead releases a's block and, once its flight has ended, its
// budget bytes.
func (m *Manager) unholdAhead(a *aheadFile) {
	if done, _ := a.f.Done(); !done && a.cancel != nil {
		a.cancel()
	}
	a.blk.Release()
	a.f.AfterLanding(func() {
		if a.cancel != nil {
			a.cancel()
		}
		m.budget.Release(a.bytes)
	})
}

// adoptAhead gives r the first block of its version when it was fetched
// ahead: r starts with a stream at offset 0 that holds it, so r's first
// read is served from it. A fetch that failed (the object changed: its
// If-Match did not hold) is dropped instead, and r fetches as usual.
// REQUIRES: r is not shared yet.
func (m *Manager) adoptAhead(r *Reader) {
	m.ahead.mu.Lock()
	a := m.ahead.files[r.v]
	delete(m.ahead.files, r.v)
	m.ahead.mu.Unlock()
	if a == nil {
		return
	}
	if done, err := a.f.Done(); done && err != nil {
		m.Stats.ReadaheadWasted.Add(a.bytes)
		m.unholdAhead(a)
		return
	}
	r.s = r.newStream(0, 0)
	r.s.held[0] = &heldBlock{f: a.f, blk: a.blk, bytes: a.bytes, cancel: a.cancel, ahead: true}
}

// closeAhead drops every file fetched ahead and waits for their fills.
func (m *Manager) closeAhead() {
	m.ahead.mu.Lock()
	files := m.ahead.files
	m.ahead.files = nil
	m.ahead.mu.Unlock()
	for _, a := range files {
		m.unholdAhead(a)
	}
	m.ahead.wg.Wait()
}

// aheadHeld returns the budget bytes files ahead hold, for checkInvariants.
func (m *Manager) aheadHeld() int64 {
	m.ahead.mu.Lock()
	defer m.ahead.mu.Unlock()
	var n int64
	for _, a := range m.ahead.files {
		n += a.bytes
	}
	return n
}

// OfferContent puts data, the whole content of v that a listing carried
// (checked by the store against its size and ETag), in the block cache as
// v's only block, so reading v sends no GET. Content larger than a block,
// or of another size than v's, is ignored; the cache's admission policy
// may decline it like any block.
func (m *Manager) OfferContent(v store.Version, data []byte) {
	if v.Size <= 0 || v.Size > m.cfg.BlockSize || int64(len(data)) != v.Size {
		return
	}
	f, blk, created := m.cache.Join(m.blockKey(v, 0), len(data))
	if created {
		copy(f.Buffer(), data)
		f.Filled(len(data))
		f.Finish(nil)
		m.Stats.InlineBlocks.Add(1)
	}
	blk.Release()
}
