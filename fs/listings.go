package fs

import (
	"container/list"
	"sync"
	"sync/atomic"
	"unsafe"
)

// listingCache bounds the bytes the mount's directory listings hold, all
// directories together: when a new listing takes the total past the
// budget, the listings used least recently are dropped (their directories
// list again when next read). A directory never listed again costs
// nothing. The daemon counts what they hold in the Go memory limit it sets
// (gauge).
//
// Lock order: dirNode.mu is never held while calling in; listingCache.mu is
// released before a dropped directory's mu is taken.
type listingCache struct {
	// Constant data
	budget int64
	gauge  *atomic.Int64 // nil, or set to used whenever it changes

	// Mutable state
	mu    sync.Mutex                 // protects the following, and the listingUses in order
	used  int64                      // GUARDED_BY(mu); bytes of all listings in order
	order *list.List                 // GUARDED_BY(mu); of *listingUse, least recently used first
	byDir map[*dirNode]*list.Element // GUARDED_BY(mu)
}

type listingUse struct {
	// Constant data
	d *dirNode

	// Mutable state
	bytes int64 // GUARDED_BY(listingCache.mu)
}

func newListingCache(budget int64) *listingCache {
	return &listingCache{budget: budget, order: list.New(), byDir: map[*dirNode]*list.Element{}}
}

// entryOverhead is what one listed name costs beyond its strings: the
// entry, its map slot and its place in the sorted names.
const entryOverhead = int64(unsafe.Sizeof(entry{})) + 16 + 16

// lookupCost estimates one cached single-name answer: the result, its map
// slot and a typical name and key.
const lookupCost = int64(unsafe.Sizeof(lookupResult{})) + 16 + 128

// listingBytes estimates what entries hold in memory.
func listingBytes(entries map[string]entry) int64 {
	n := int64(0)
	for name, e := range entries {
		n += entryOverhead + int64(len(name)) + int64(len(e.obj.Key)+len(e.obj.ETag)+len(e.obj.StorageClass))
	}
	return n
}

// stored records that d now holds a listing of the given bytes, and drops
// the least recently used listings beyond the budget (never d's own).
func (c *listingCache) stored(d *dirNode, bytes int64) {
	c.mu.Lock()
	if el, ok := c.byDir[d]; ok {
		u := el.Value.(*listingUse)
		c.used -= u.bytes
		u.bytes = bytes
		c.order.MoveToBack(el)
	} else {
		c.byDir[d] = c.order.PushBack(&listingUse{d: d, bytes: bytes})
	}
	c.used += bytes
	var drop []*dirNode
	for c.used > c.budget && c.order.Len() > 1 {
		u := c.order.Remove(c.order.Front()).(*listingUse)
		delete(c.byDir, u.d)
		c.used -= u.bytes
		drop = append(drop, u.d)
	}
	c.publishLocked()
	c.mu.Unlock()
	for _, v := range drop {
		v.dropListing()
	}
}

// touch records that d's listing served a read, so it is dropped last.
func (c *listingCache) touch(d *dirNode) {
	c.mu.Lock()
	if el, ok := c.byDir[d]; ok {
		c.order.MoveToBack(el)
	}
	c.mu.Unlock()
}

// forget removes d (its listing dropped or the directory forgotten).
func (c *listingCache) forget(d *dirNode) {
	c.mu.Lock()
	if el, ok := c.byDir[d]; ok {
		c.used -= el.Value.(*listingUse).bytes
		c.order.Remove(el)
		delete(c.byDir, d)
		c.publishLocked()
	}
	c.mu.Unlock()
}

// publishLocked sets the gauge to used. REQUIRES: c.mu held.
func (c *listingCache) publishLocked() {
	if c.gauge != nil {
		c.gauge.Store(c.used)
	}
}

// usedBytes returns the bytes listings hold now.
func (c *listingCache) usedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// dropListing forgets d's cached listing and single-name answers; the
// next read lists again.
func (d *dirNode) dropListing() {
	d.mu.Lock()
	d.entries, d.names, d.lookups, d.listBytes = nil, nil, nil, 0
	d.mu.Unlock()
}
