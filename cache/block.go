package cache

import "sync/atomic"

// Block is the bytes of one block, counted by references so its buffer can
// go back to a pool for the next block, but only when nobody can read it:
// a flight while it fills, the resident set, a stream holding it, a read
// copying from it and a reply being sent to the kernel each hold one.
type Block struct {
	data []byte
	refs atomic.Int32
	pool *bufPool
	// sum is the disk tier's checksum of the block's key and data
	// (diskSum), when summed: set by the flight that filled the block
	// before anyone else can see it, and constant after.
	sum    uint32
	summed bool
}

// Bytes returns the block's bytes. REQUIRES: a reference is held.
func (b *Block) Bytes() []byte { return b.data }

// TryRef takes a reference unless the block was already released for good.
func (b *Block) TryRef() bool {
	for {
		n := b.refs.Load()
		if n <= 0 {
			return false
		}
		if b.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Ref takes another reference. REQUIRES: a reference is held.
func (b *Block) Ref() { b.refs.Add(1) }

// Release drops a reference; the last one returns the buffer to the pool.
func (b *Block) Release() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		if b.pool != nil {
			b.pool.put(b.data)
		}
	case n < 0:
		panic("cache: block released more often than referenced")
	}
}

// bufPool recycles full-size block buffers: a fresh buffer costs a page
// fault per 4 KiB the first time it is written, which at streaming rates
// costs more than the copy itself. It keeps at most a fixed number of idle
// buffers, unlike a sync.Pool, which the garbage collector empties often
// when the heap is kept near its limit.
type bufPool struct {
	size   int
	free   chan []byte
	reused *atomic.Int64
}

func newBufPool(size, keep int, reused *atomic.Int64) *bufPool {
	return &bufPool{size: size, free: make(chan []byte, keep), reused: reused}
}

func (p *bufPool) get(n int) *Block {
	b := &Block{pool: p}
	b.refs.Store(1)
	if n == p.size {
		select {
		case buf := <-p.free:
			p.reused.Add(1)
			b.data = buf
			return b
		default:
		}
	}
	b.data = make([]byte, n)
	if n != p.size {
		b.pool = nil // odd sizes are left to the garbage collector
	}
	return b
}

func (p *bufPool) put(buf []byte) {
	if len(buf) != p.size {
		return
	}
	select {
	case p.free <- buf:
	default: // enough idle buffers: let this one go
	}
}
