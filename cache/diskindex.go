package cache

// The disk tier's index: which block files exist, their sizes and
// recency, eviction, and rebuilding the index at start.

import (
	"container/list"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
)

type diskEntry struct {
	name  string
	size  int64
	mtime time.Time
	hits  uint8
	elem  *list.Element
}

// Used returns the bytes of block files the index knows of.
func (d *Disk) Used() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used
}

// Has reports whether block k has a file, without reading it.
func (d *Disk) Has(k Key) bool {
	name := fileName(k)
	d.mu.Lock()
	_, ok := d.entries[name]
	scanning := d.scanning
	d.mu.Unlock()
	if ok || !scanning {
		return ok
	}
	_, err := os.Stat(d.path(name))
	return err == nil
}

// touch records a hit on name for eviction, and refreshes the file's mtime
// when stale so the order survives a restart.
func (d *Disk) touch(name string, f *os.File) {
	now := d.clock.Now()
	d.mu.Lock()
	e := d.entries[name]
	stale := false
	if e != nil {
		e.hits = min(e.hits+1, maxHits)
		d.lru.MoveToFront(e.elem)
		if now.Sub(e.mtime) > touchEvery {
			e.mtime, stale = now, true
		}
	}
	d.mu.Unlock()
	if stale {
		os.Chtimes(f.Name(), time.Time{}, now)
	}
}

// addLocked enters a block file in the index. A file just written or read
// goes first in line; files found by the scan go behind everything known.
// REQUIRES: d.mu held.
func (d *Disk) addLocked(name string, size int64, mtime time.Time, recent bool) {
	if _, ok := d.entries[name]; ok {
		return
	}
	e := &diskEntry{name: name, size: size, mtime: mtime}
	if recent {
		e.elem = d.lru.PushFront(e)
	} else {
		e.elem = d.lru.PushBack(e)
	}
	d.entries[name] = e
	d.used += size
	d.Stats.Bytes.Store(d.used)
	d.Stats.Files.Store(int64(len(d.entries)))
}

// makeRoomLocked evicts until size more bytes fit under the size limit and
// the free-space floor. It reports false when they cannot.
// REQUIRES: d.mu held.
func (d *Disk) makeRoomLocked(size int64) bool {
	if size > d.maxBytes {
		return false
	}
	avail, _, err := d.space()
	if err != nil {
		d.log.WithError(err).Warn("disk cache: cannot read free space")
		return false
	}
	for d.used+size > d.maxBytes || avail-size < d.minFree {
		freed, ok := d.evictOneLocked()
		if !ok {
			return false
		}
		avail += freed
	}
	return true
}

// evictOneLocked deletes the block file that has gone longest without a
// read, passing over (and aging) blocks that were read often: recency with
// a little frequency, so one long stream does not flush the blocks read
// again and again. REQUIRES: d.mu held.
func (d *Disk) evictOneLocked() (int64, bool) {
	for {
		back := d.lru.Back()
		if back == nil {
			return 0, false
		}
		e := back.Value.(*diskEntry)
		if e.hits > 0 {
			e.hits--
			d.lru.MoveToFront(back)
			continue
		}
		d.dropLocked(e)
		if err := os.Remove(d.path(e.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.WithError(err).Warn("disk cache: cannot delete a block file")
		}
		d.Stats.Evictions.Add(1)
		return e.size, true
	}
}

func (d *Disk) dropLocked(e *diskEntry) {
	d.lru.Remove(e.elem)
	delete(d.entries, e.name)
	d.used -= e.size
	d.Stats.Bytes.Store(d.used)
	d.Stats.Files.Store(int64(len(d.entries)))
}

// forget drops name from the index (its file is gone).
func (d *Disk) forget(name string) {
	d.mu.Lock()
	if e := d.entries[name]; e != nil {
		d.dropLocked(e)
	}
	d.mu.Unlock()
}

// remove deletes name's file and drops it from the index.
func (d *Disk) remove(name string) {
	d.forget(name)
	os.Remove(d.path(name))
}

// scan rebuilds the index from the block files on disk, oldest last, then
// trims the cache to its limits (which may have shrunk since the last run).
func (d *Disk) scan() {
	defer d.wg.Done()
	start := d.clock.Now()
	type found struct {
		name  string
		size  int64
		mtime time.Time
	}
	var files []found
	root := filepath.Join(d.dir, "blocks")
	subs, err := readDirNames(root)
	if err != nil {
		d.log.WithError(err).Warn("disk cache: cannot list block files")
	}
	for _, sub := range subs {
		if d.isClosed() {
			break
		}
		names, err := readDirNames(filepath.Join(root, sub))
		if err != nil {
			continue
		}
		for _, n := range names {
			name := sub + "/" + n
			fi, err := os.Lstat(d.path(name))
			if err != nil || !fi.Mode().IsRegular() || fi.Size() < diskPage {
				os.Remove(d.path(name))
				continue
			}
			files = append(files, found{name, fi.Size(), fi.ModTime()})
		}
	}
	// Most recent first, so PushBack leaves the oldest last.
	slices.SortFunc(files, func(a, b found) int { return b.mtime.Compare(a.mtime) })
	d.mu.Lock()
	for _, f := range files {
		d.addLocked(f.name, f.size, f.mtime, false)
	}
	d.scanning = false
	close(d.scanned)
	trimmed := 0
	if avail, _, err := d.space(); err == nil {
		for d.used > d.maxBytes || avail < d.minFree {
			freed, ok := d.evictOneLocked()
			if !ok {
				break
			}
			avail += freed
			trimmed++
		}
	}
	used, n := d.used, len(d.entries)
	d.mu.Unlock()
	d.log.WithFields(logrus.Fields{"files": n, "bytes": used, "evicted": trimmed, "took": d.clock.Since(start).Round(time.Millisecond).String()}).
		Info("disk cache index loaded")
}

// WaitScan blocks until the index has been rebuilt (for tests and tools).
func (d *Disk) WaitScan() { <-d.scanned }
