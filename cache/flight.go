package cache

import (
	"context"
	"errors"
	"hash/crc32"
	"sync"
	"time"
)

// Flight is a block being fetched, readable as it fills.
type Flight struct {
	// Dependencies
	cache *Cache // nil for a flight made from a resident block

	// Constant data
	key   Key
	block *Block
	born  time.Time // when the flight began; zero for a resident block

	// Mutable state
	mu       sync.Mutex    // protects the following
	filled   int           // GUARDED_BY(mu)
	err      error         // GUARDED_BY(mu)
	done     bool          // GUARDED_BY(mu)
	wake     chan struct{} // GUARDED_BY(mu); closed and replaced whenever filled or done changes
	fromDisk bool          // GUARDED_BY(mu); filled from the disk tier, so not written back to it
	after    []func()      // GUARDED_BY(mu); run once the flight has ended

	// Filler-only state: the disk tier's checksum of the bytes filled so
	// far, while the block is bound for the disk tier. Summed as the bytes
	// land, they are read from the CPU's cache; summed by the disk writer
	// later, all 4 MiB would be read again from memory, on the CPU the
	// read that fetched them needs.
	summing bool
	sum     uint32 // CRC-32C of the key, then of data[:summed]
	summed  int
}

func newFlight(k Key, b *Block, c *Cache) *Flight {
	f := &Flight{key: k, block: b, cache: c, born: c.clock.Now(), wake: make(chan struct{})}
	if c.disk != nil {
		f.summing, f.sum = true, keySum(k.String())
	}
	return f
}

// finished wraps a resident block; it holds no reference of its own.
func finished(k Key, b *Block) *Flight {
	return &Flight{key: k, block: b, filled: len(b.data), done: true, wake: make(chan struct{})}
}

// Key returns the block's key.
func (f *Flight) Key() Key { return f.key }

// Len is the block's size.
func (f *Flight) Len() int { return len(f.block.data) }

// Block returns the flight's block. The flight's creator may use it until
// it calls Finish; others must hold their own reference.
func (f *Flight) Block() *Block { return f.block }

// Buffer returns the space the filler writes into; the filler reports
// progress with Filled. Only the flight's filler may call it.
func (f *Flight) Buffer() []byte { return f.block.data }

// Filled records that the first n bytes of Buffer hold data.
func (f *Flight) Filled(n int) {
	if f.summing && n > f.summed {
		f.sum = crc32.Update(f.sum, crcTable, f.block.data[f.summed:n])
		f.summed = n
	}
	f.mu.Lock()
	if n > f.filled {
		f.filled = n
		close(f.wake)
		f.wake = make(chan struct{})
	}
	f.mu.Unlock()
}

// Finish ends the flight. With err == nil the whole buffer must be filled;
// the block then becomes resident (if admitted) and, when it came from the
// object store, is queued for the disk tier. With an error, waiters get it
// and the next Join starts a new flight. Either way the functions given to
// AfterLanding run, then the flight drops its own reference: holders keep
// theirs. Finishing an ended flight does nothing.
func (f *Flight) Finish(err error) {
	f.mu.Lock()
	if f.done {
		f.mu.Unlock()
		return
	}
	if err == nil && f.filled < len(f.block.data) {
		err = errors.New("cache: flight finished before its block was filled")
	}
	if err == nil && f.summing && f.summed == len(f.block.data) {
		// Before the block is shared (land): its readers see it.
		f.block.sum, f.block.summed = f.sum, true
	}
	f.done, f.err = true, err
	close(f.wake)
	after, fromDisk := f.after, f.fromDisk
	f.after = nil
	f.mu.Unlock()
	if f.cache != nil {
		f.cache.land(f, err, fromDisk)
	}
	for _, fn := range after {
		fn()
	}
	f.block.Release()
}

// AfterLanding runs fn once the flight has ended (at once if it has), in
// the goroutine that ends it: what a holder keeps for a block in flight
// (budget, a request's context) is given back when the block lands, and
// nobody waits for that. fn must be quick and must not call into f.
func (f *Flight) AfterLanding(fn func()) {
	f.mu.Lock()
	if !f.done {
		f.after = append(f.after, fn)
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	fn()
}

// Progress reports how many bytes have landed and how long ago the flight
// began (0 for a block that was resident).
func (f *Flight) Progress() (landed int, age time.Duration) {
	f.mu.Lock()
	landed = f.filled
	f.mu.Unlock()
	if !f.born.IsZero() {
		age = f.cache.clock.Since(f.born)
	}
	return landed, age
}

// Done reports whether the flight ended, and its error.
func (f *Flight) Done() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done, f.err
}

// Wait returns the block's first end bytes once they are there. It
// returns early with the flight's error, or with ctx's if ctx ends first
// (the flight goes on for other readers). REQUIRES: the caller holds a
// reference to the block (from Join).
func (f *Flight) Wait(ctx context.Context, end int) ([]byte, error) {
	end = min(end, len(f.block.data))
	for {
		f.mu.Lock()
		filled, done, err, wake := f.filled, f.done, f.err, f.wake
		f.mu.Unlock()
		if filled >= end {
			return f.block.data[:end], nil
		}
		if done {
			return nil, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// finishAll ends every flight of flights not ended yet with err.
func finishAll(flights []*Flight, err error) {
	for _, f := range flights {
		f.Finish(err)
	}
}
