package cache

// The disk tier's writes: the queue of blocks to write, the writer
// threads, blocks left out of a full queue, and writing one block.

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// writerNice is the CPU priority of the threads writing blocks to disk
// (see writer).
const writerNice = 10

type pendingWrite struct {
	key Key
	blk *Block
}

// Enqueue queues block k for writing and returns at once; it takes its own
// reference to blk. When the queue is full the block is left out, but its
// key is remembered: once the writers are idle, or when the tier closes,
// it is written from the memory tier if it is still there.
// REQUIRES: the caller holds a reference to blk.
func (d *Disk) Enqueue(k Key, blk *Block) {
	if d.Has(k) {
		return
	}
	d.sendMu.RLock()
	defer d.sendMu.RUnlock()
	if d.isClosed() {
		return
	}
	blk.Ref()
	select {
	case d.queue <- pendingWrite{key: k, blk: blk}:
	default:
		blk.Release()
		d.mu.Lock()
		if len(d.deferred) < maxDeferred {
			d.deferred[k] = struct{}{}
		} else {
			d.Stats.Dropped.Add(1)
		}
		d.mu.Unlock()
	}
}

// maxDeferred bounds the keys of blocks left out of a full queue.
const maxDeferred = 4096

// writeDeferred writes one block left out of the queue, if any is left and
// still in memory. It reports whether there was a key to try.
func (d *Disk) writeDeferred() bool {
	d.mu.Lock()
	var k Key
	found := false
	for k = range d.deferred {
		found = true
		break
	}
	if found {
		delete(d.deferred, k)
	}
	d.mu.Unlock()
	get := d.memory // constant: set when the tier opened
	if !found {
		return false
	}
	if get == nil {
		d.Stats.Dropped.Add(1)
		return true
	}
	blk, ok := get(k)
	if !ok {
		d.Stats.Dropped.Add(1) // gone from memory before there was time
		return true
	}
	d.writeBlock(k, blk)
	return true
}

// writeBlock writes blk as block k, logs a failure and drops the caller's
// reference to blk.
func (d *Disk) writeBlock(k Key, blk *Block) {
	sum, ok := blk.sum, blk.summed
	if !ok {
		sum = diskSum(k.String(), blk.Bytes())
	}
	if err := d.write(k, blk.Bytes(), sum); err != nil {
		d.log.WithError(err).Warn("disk cache: writing a block failed")
	}
	blk.Release()
}

func (d *Disk) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// writer writes queued blocks. It runs on its own thread at a lower CPU
// priority, so writing to the cache yields to the reads it serves; whole
// blocks go to the disk with O_DIRECT (see writeFile).
func (d *Disk) writer() {
	defer d.wg.Done()
	runtime.LockOSThread() // the thread ends with the goroutine
	tid := unix.Gettid()
	unix.Setpriority(unix.PRIO_PROCESS, tid, writerNice)
	for {
		var w pendingWrite
		var ok bool
		select {
		case w, ok = <-d.queue:
		default:
			// Idle: catch up with blocks left out of a full queue.
			if d.writeDeferred() {
				continue
			}
			w, ok = <-d.queue
		}
		if !ok {
			for d.writeDeferred() {
			}
			return
		}
		d.writeBlock(w.key, w.blk)
	}
}

// Write writes block k now, unless it is already on disk. When another
// write of k is under way it waits for that one. It returns an error only
// when the disk failed; a block left out for want of room is counted in
// Stats.Dropped.
func (d *Disk) Write(k Key, data []byte) error {
	return d.write(k, data, diskSum(k.String(), data))
}

// write is Write with the block file's checksum, diskSum(k.String(),
// data), already known.
func (d *Disk) write(k Key, data []byte, sum uint32) error {
	name := fileName(k)
	if diskHeaderLen+len(k.String()) > diskPage {
		d.Stats.Dropped.Add(1) // a key of several KiB: not worth a format
		return nil
	}
	size := int64(diskPage + len(data))
	d.mu.Lock()
	if _, ok := d.entries[name]; ok {
		d.mu.Unlock()
		return nil
	}
	if ch, ok := d.writing[name]; ok {
		d.mu.Unlock()
		<-ch
		return nil
	}
	if !d.makeRoomLocked(size) {
		d.mu.Unlock()
		d.Stats.Dropped.Add(1)
		return nil
	}
	done := make(chan struct{})
	d.writing[name] = done
	d.used += size // reserved while writing
	d.mu.Unlock()

	err := d.writeFile(name, k.String(), data, sum)

	d.mu.Lock()
	delete(d.writing, name)
	close(done)
	d.used -= size
	if err == nil {
		d.addLocked(name, size, d.clock.Now(), true)
	}
	d.mu.Unlock()
	if err == nil {
		d.Stats.Writes.Add(1)
		d.Stats.WriteBytes.Add(int64(len(data)))
	}
	return err
}
