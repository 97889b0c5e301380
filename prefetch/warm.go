package prefetch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
)

// ErrNoDisk is returned by Warm when the mount has no disk tier.
var ErrNoDisk = errors.New("prefetch: the mount has no disk cache")

// ErrBlockTooLarge is returned by Warm when one block is larger than the
// whole budget, so no request could ever be granted.
var ErrBlockTooLarge = errors.New("prefetch: a block is larger than the read-ahead budget")

// Warm GETs up to warmBlocksPerGet blocks a request (fewer when the budget
// cannot hold that many above its reserve, see warmPlan) and warmParallel
// requests at a time per object.
const (
	warmBlocksPerGet = 4
	warmParallel     = 2
)

// Warm fetches every block of v that the disk tier lacks and returns once
// all of them are written there (or ctx ends). It holds budget like
// read-ahead does, waiting for it rather than failing, so warming never
// starves the files being read; streams that stopped give their budget
// up to it as they do to reads (reclaim), so an idle open file cannot keep
// it waiting. Each request asks for no more than the budget can ever grant.
func (m *Manager) Warm(ctx context.Context, v store.Version) error {
	if !m.cache.HasDisk() {
		return ErrNoDisk
	}
	perGet, reserve, err := m.warmPlan()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	blocks := (v.Size + m.cfg.BlockSize - 1) / m.cfg.BlockSize
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, warmParallel)
	for a := int64(0); a < blocks; a += perGet {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(a, b int64) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := m.warmRun(ctx, v, a, b, reserve); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}(a, min(a+perGet, blocks))
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// warmPlan returns how many blocks one warm request takes and the budget
// it leaves free for reads: warmBlocksPerGet, or as many as fit in the
// budget above the read-ahead reserve. A budget too small to hold even one
// block above the reserve (mount options refuse that) lends warming the
// reserve too rather than never granting it.
func (m *Manager) warmPlan() (perGet, reserve int64, err error) {
	bs, capacity := m.cfg.BlockSize, m.budget.Capacity()
	if bs > capacity {
		return 0, 0, ErrBlockTooLarge
	}
	perGet = min(warmBlocksPerGet, (capacity-m.reserve)/bs)
	if perGet < 1 {
		return 1, 0, nil
	}
	return perGet, m.reserve, nil
}

// warmRun brings blocks [a, b) of v to disk, leaving reserve budget bytes
// free. A block whose flight was cancelled by another reader (its file
// closed) is tried again.
func (m *Manager) warmRun(ctx context.Context, v store.Version, a, b, reserve int64) error {
	var err error
	for range 3 {
		err = m.warmOnce(ctx, v, a, b, reserve)
		if !errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (m *Manager) warmOnce(ctx context.Context, v store.Version, a, b, reserve int64) error {
	var missing []cache.Key
	var bytes int64
	for idx := a; idx < b; idx++ {
		k := m.blockKey(v, idx)
		if !m.cache.OnDisk(k) {
			missing = append(missing, k)
			bytes += m.blockLen(v, idx)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	for !m.budget.TryAcquire(bytes, reserve) {
		// Streams that stopped hold budget until their file is read or
		// closed, which may be never: take it back as a read would.
		if m.reclaim(nil, bytes+reserve) && m.budget.TryAcquire(bytes, reserve) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.clock.After(20 * time.Millisecond):
		}
	}
	defer m.budget.Release(bytes)
	flights := make([]*cache.Flight, len(missing))
	blks := make([]*cache.Block, len(missing))
	var mine []*cache.Flight
	for i, k := range missing {
		f, blk, created := m.cache.Join(k, int(m.blockLen(v, k.Index)))
		flights[i], blks[i] = f, blk
		if created {
			mine = append(mine, f)
		}
	}
	defer func() {
		for _, blk := range blks {
			blk.Release()
		}
	}()
	if len(mine) > 0 {
		m.fill(ctx, v, true, mine...)
	}
	for i, f := range flights {
		data, err := f.Wait(ctx, f.Len())
		if err != nil {
			// Let the other flights end too (a closed file's read-ahead
			// dies block by block), so a retry starts fresh ones.
			for _, g := range flights[i+1:] {
				g.Wait(ctx, g.Len())
			}
			return err
		}
		if err := m.cache.Persist(missing[i], data); err != nil {
			return err
		}
		m.Stats.WarmedBytes.Add(int64(len(data)))
	}
	return nil
}

// CachedBytes returns how many bytes of v the disk tier holds.
func (m *Manager) CachedBytes(v store.Version) int64 {
	if !m.cache.HasDisk() {
		return 0
	}
	var n int64
	blocks := (v.Size + m.cfg.BlockSize - 1) / m.cfg.BlockSize
	for idx := int64(0); idx < blocks; idx++ {
		if m.cache.OnDisk(m.blockKey(v, idx)) {
			n += m.blockLen(v, idx)
		}
	}
	return n
}

// blockKey is the cache key of block idx of v: the version and the byte
// range the block holds.
func (m *Manager) blockKey(v store.Version, idx int64) cache.Key {
	return cache.Key{Bucket: v.Bucket, Object: v.Key, ETag: v.ETag, Index: idx,
		Offset: idx * m.cfg.BlockSize, Length: m.blockLen(v, idx)}
}

// blockLen is the size of block idx of v (the last one may be short).
func (m *Manager) blockLen(v store.Version, idx int64) int64 {
	return min(m.cfg.BlockSize, v.Size-idx*m.cfg.BlockSize)
}
