package prefetch

import (
	"context"
	"errors"
	"sync"

	"github.com/bucketfs/bucketfs/cache"
)

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

// promote reports whether random reads missed block idx before (and
// records this miss): with a disk tier, such a block is fetched whole.
func (r *Reader) promote(idx int64) bool {
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
	if !r.promote(idx) {
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
