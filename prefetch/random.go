package prefetch

// Random reads: reads outside a stream, served from cached blocks, from
// whole blocks fetched for the disk tier, or by a GET of exactly their
// bytes.

import (
	"context"
	"errors"
	"sync"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
)

// randomRead serves a read outside the stream: from cached blocks where
// there are some (in memory or on disk), from whole blocks fetched for the
// disk tier (see missedBefore), otherwise by a GET of exactly the missing bytes,
// straight into dest.
func (r *Reader) randomRead(ctx context.Context, tr *readTrace, dest []byte, off int64) ([]byte, func(), error) {
	end := off + int64(len(dest))
	for pos := off; pos < end; {
		idx := pos / r.bs
		bstart := idx * r.bs
		segEnd := min(end, bstart+r.bs)
		blk, ok, err := r.local(ctx, tr, idx)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			if pos == off && segEnd == end {
				// The whole read lies in this block: no copy.
				return blk.Bytes()[off-bstart : end-bstart], blk.Release, nil
			}
			copy(dest[pos-off:segEnd-off], blk.Bytes()[pos-bstart:segEnd-bstart])
			blk.Release()
			pos = segEnd
			continue
		}
		// Extend the GET over following blocks that are not cached either.
		for segEnd < end && !r.m.cache.Contains(r.key(segEnd/r.bs)) && !r.onDisk(segEnd/r.bs) && !r.missedBefore(segEnd/r.bs) {
			segEnd = min(end, segEnd+r.bs)
		}
		t0 := r.m.clock.Now()
		n, err := r.m.get(ctx, r.v, pos, dest[pos-off:segEnd-off])
		tr.note(wait{what: "exact GET", idx: idx, size: int(segEnd - pos), took: r.m.clock.Since(t0)})
		if err != nil {
			return nil, nil, err
		}
		if int64(n) < segEnd-pos {
			return nil, nil, errShort
		}
		pos = segEnd
	}
	return dest, nil, nil
}

// onDisk reports whether the disk tier has block idx.
func (r *Reader) onDisk(idx int64) bool { return r.m.cache.OnDisk(r.key(idx)) }

// fromDisk loads block idx from the disk tier into the block cache and
// returns a reference to it; false when the disk tier does not have it or
// it could not be loaded now.
func (r *Reader) fromDisk(ctx context.Context, tr *readTrace, idx int64) (*cache.Block, bool) {
	if !r.onDisk(idx) {
		return nil, false
	}
	_, blk, err := r.blockData(ctx, tr, idx, int(r.blockLen(idx)), false)
	if err != nil {
		return nil, false
	}
	return blk, true
}

// cached returns a reference to block idx if the stream holds it complete
// or it is resident.
func (r *Reader) cached(idx int64) (*cache.Block, bool) {
	r.mu.Lock()
	if r.s != nil {
		if hb := r.s.held[idx]; hb != nil {
			if done, err := hb.f.Done(); done && err == nil {
				hb.blk.Ref()
				r.mu.Unlock()
				return hb.blk, true
			}
		}
	}
	r.mu.Unlock()
	return r.m.cache.Get(r.key(idx))
}

// Random reads that miss fetch exactly their bytes, which never fill the
// disk tier: a training job reading records in a new order each epoch
// would fetch every record from the store every epoch. With a disk tier,
// a block that random reads have missed before is fetched whole on its
// next miss instead, and so lands in memory and on disk: the second record
// read from a block costs a block's GET, the rest of the block (this
// epoch's and the next's) is local. Without a disk tier random reads stay
// exact, as the memory tier alone is too small to keep a dataset.

// missedBlocks is how many blocks the set of recent misses remembers
// (256 GiB of 4 MiB blocks); full, it takes about 12 MiB of memory.
const missedBlocks = 1 << 16

// missSet remembers the last missedBlocks blocks random reads missed.
type missSet struct {
	mu   sync.Mutex // protects the following
	seen map[cache.Key]struct{}
	ring []cache.Key // insertion order; the oldest is dropped when full
	next int
}

func newMissSet(n int) *missSet {
	return &missSet{seen: map[cache.Key]struct{}{}, ring: make([]cache.Key, 0, n)}
}

// missed records a miss of k and reports whether k had been missed before.
func (s *missSet) missed(k cache.Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[k]; ok {
		return true
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, k)
	} else {
		delete(s.seen, s.ring[s.next])
		s.ring[s.next] = k
		s.next = (s.next + 1) % len(s.ring)
	}
	s.seen[k] = struct{}{}
	return false
}

// missedBefore records a miss of block idx by a random read and reports
// whether random reads missed it before: with a disk tier, such a block is
// fetched whole. Without one it records nothing and reports false.
func (r *Reader) missedBefore(idx int64) bool {
	return r.m.misses != nil && r.m.misses.missed(r.key(idx))
}

// local returns a reference to block idx from memory or disk, or, when
// random reads missed it before, fetched whole from the store; false when
// the read should fetch just its bytes. A failed whole-block GET is the
// read's error: it was retried already.
func (r *Reader) local(ctx context.Context, tr *readTrace, idx int64) (*cache.Block, bool, error) {
	blk, ok := r.cached(idx)
	if !ok {
		blk, ok = r.fromDisk(ctx, tr, idx)
	}
	if ok {
		r.m.Stats.BlockCacheServed.Add(1)
		return blk, true, nil
	}
	if !r.missedBefore(idx) {
		return nil, false, nil
	}
	_, blk, err := r.blockData(ctx, tr, idx, int(r.blockLen(idx)), false)
	switch {
	case errors.Is(err, errNoBudget):
		return nil, false, nil // an exact GET needs no budget
	case err != nil:
		return nil, false, err
	}
	r.m.Stats.Promoted.Add(1)
	return blk, true, nil
}

// A random reader reads its file randomly the next time too: a training
// job's next epoch, a database reopening its file. Such a file's next
// Reader starts in random mode: its first read does not start a stream
// because it lands at offset 0 (a header) or in the last block (an
// index), which would fetch a block or two for one record. A file read
// sequentially since is forgotten.

// randomFilesKept is how many files the Manager remembers as read
// randomly; a few hundred bytes each.
const randomFilesKept = 4096

// randomFiles is the set of object versions whose last Reader read them
// mostly outside a stream.
type randomFiles struct {
	mu   sync.Mutex // protects the following
	seen map[store.Version]struct{}
	max  int
}

func newRandomFiles(n int) *randomFiles {
	return &randomFiles{seen: map[store.Version]struct{}{}, max: n}
}

func (s *randomFiles) has(v store.Version) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[v]
	return ok
}

// set records whether v was read randomly. Full, it forgets an arbitrary
// file: this is a hint, and a forgotten file only starts as before.
func (s *randomFiles) set(v store.Version, random bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !random {
		delete(s.seen, v)
		return
	}
	if _, ok := s.seen[v]; !ok && len(s.seen) >= s.max {
		for k := range s.seen {
			delete(s.seen, k)
			break
		}
	}
	s.seen[v] = struct{}{}
}

// rememberPattern records how a closing Reader read v: randomly when at
// least two of its reads were random and they outnumber its stream reads
// (one record at offset 0 may have started a stream), sequentially when
// it read mostly in streams. A Reader of one or two reads says nothing.
func (m *Manager) rememberPattern(v store.Version, streamReads, randomReads, streams int64) {
	switch {
	case randomReads >= 2 && randomReads > streamReads:
		m.randoms.set(v, true)
	case streams > 0 && streamReads > randomReads:
		m.randoms.set(v, false)
	}
}
