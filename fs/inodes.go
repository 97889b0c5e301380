package fs

import (
	"container/list"
	"sync"
)

// inodeTable hands out inode numbers: one per (bucket, key), taken from a
// counter that only grows, so a number is never given to a second key while
// the kernel may still hold it (never at all, in practice: 2^64 numbers).
// Deriving numbers from a hash of the key would let two colliding keys share
// one number, and go-fuse merges nodes with equal numbers, showing one
// object's bytes under the other's name.
//
// A key keeps its number while the kernel holds a node for it (live) and,
// after that, while it is among the maxIdleInodes keys seen most recently
// that only a listing or a forgotten node gave a number to (idle); the
// idle keys seen longest ago are dropped first and get a new number when next seen. The
// table is therefore bounded by the kernel's inode cache plus maxIdleInodes.
//
// Renames (when the tree becomes writable) move an entry to its new key.
type inodeTable struct {
	// Mutable state
	mu sync.Mutex // protects the following, and the entries in byKey
	// next is the number the next new key gets; 1 is the mount root.
	next  uint64                   // GUARDED_BY(mu)
	byKey map[inodeKey]*inodeEntry // GUARDED_BY(mu)
	// idle holds the keys no live node uses, oldest first.
	idle *list.List // GUARDED_BY(mu); of inodeKey
}

// maxIdleInodes bounds the keys that keep a number without a live node.
const maxIdleInodes = 1 << 16

type inodeKey struct{ bucket, key string }

type inodeEntry struct {
	// Constant data
	ino uint64

	// Mutable state
	// live counts the nodes the kernel holds with this number.
	live int // GUARDED_BY(inodeTable.mu)
	// idleAt is this key's place in the idle list while live == 0.
	idleAt *list.Element // GUARDED_BY(inodeTable.mu)
}

func newInodeTable() *inodeTable {
	return &inodeTable{next: 2, byKey: map[inodeKey]*inodeEntry{}, idle: list.New()}
}

// number returns the inode number of bucket and key (directory keys end in
// "/"; a bucket in all-buckets mode is key ""), giving it a new one if it
// has none.
func (t *inodeTable) number(bucket, key string) uint64 {
	k := inodeKey{bucket, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byKey[k]; ok {
		if e.idleAt != nil {
			t.idle.MoveToBack(e.idleAt) // seen again: dropped last
		}
		return e.ino
	}
	e := &inodeEntry{ino: t.next}
	t.next++
	t.byKey[k] = e
	t.makeIdleLocked(k, e)
	return e.ino
}

// acquire records that a node with number ino now stands for bucket and
// key. A key whose entry was dropped meanwhile (its last node was forgotten
// while the lookup that made this node ran) gets it back.
func (t *inodeTable) acquire(bucket, key string, ino uint64) {
	k := inodeKey{bucket, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[k]
	if !ok {
		e = &inodeEntry{ino: ino}
		t.byKey[k] = e
	}
	if e.ino != ino {
		// A newer number was handed out for the key meanwhile; this
		// node keeps its own, which no other key can have.
		return
	}
	if e.idleAt != nil {
		t.idle.Remove(e.idleAt)
		e.idleAt = nil
	}
	e.live++
}

// release records that the kernel forgot a node acquired with ino.
func (t *inodeTable) release(bucket, key string, ino uint64) {
	k := inodeKey{bucket, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[k]
	if !ok || e.ino != ino || e.live == 0 {
		return
	}
	e.live--
	if e.live == 0 {
		t.makeIdleLocked(k, e)
	}
}

// makeIdleLocked puts k at the young end of the idle list and drops the
// oldest idle keys beyond maxIdleInodes.
func (t *inodeTable) makeIdleLocked(k inodeKey, e *inodeEntry) {
	e.idleAt = t.idle.PushBack(k)
	for t.idle.Len() > maxIdleInodes {
		old := t.idle.Remove(t.idle.Front()).(inodeKey)
		delete(t.byKey, old)
	}
}

// len returns the number of keys holding a number.
func (t *inodeTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}

// rename moves the number of a node renamed from oldKey to newKey: the
// node keeps its number under its new name, and a new file at the old
// name gets a new one. A node that stood for newKey (a replaced target)
// keeps its number too, no longer in the table.
func (t *inodeTable) rename(bucket, oldKey, newKey string, ino uint64) {
	ok, nk := inodeKey{bucket, oldKey}, inodeKey{bucket, newKey}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, found := t.byKey[ok]
	if !found || e.ino != ino {
		return
	}
	delete(t.byKey, ok)
	if old, taken := t.byKey[nk]; taken && old.idleAt != nil {
		t.idle.Remove(old.idleAt)
	}
	t.byKey[nk] = e
	if e.idleAt != nil {
		t.idle.Remove(e.idleAt)
		e.idleAt = t.idle.PushBack(nk)
	}
}
