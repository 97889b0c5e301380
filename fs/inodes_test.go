package fs

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"testing"

	"github.com/bucketfs/bucketfs/store"
)

// collidingKeys are two keys of bucket collidingBucket whose FNV-64a hashes
// of bucket, NUL and key are equal: the inode numbers bucketfs derived from
// keys before numbers came from a table.
const (
	collidingBucket = "inocollide"
	collidingKeyA   = "k/swfLXdQ1xSo"
	collidingKeyB   = "k/LKRsn83gOmn"
)

func fnv64a(bucket, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(bucket + "\x00" + key))
	return h.Sum64()
}

// TestCollidingKeysFixture checks the fixture: the two keys do collide.
func TestCollidingKeysFixture(t *testing.T) {
	if a, b := fnv64a(collidingBucket, collidingKeyA), fnv64a(collidingBucket, collidingKeyB); a != b {
		t.Fatalf("FNV-64a %x and %x differ: the fixture no longer collides", a, b)
	}
}

// TestInodeTableNumbers checks that numbers are stable for a key, distinct
// between keys (colliding hashes included, an object and a directory of one
// name, one key in two buckets), and never the reserved 0 or 1.
func TestInodeTableNumbers(t *testing.T) {
	tab := newInodeTable()
	keys := [][2]string{{"b", "k"}, {"b", "k/"}, {"c", "k"}, {"b", ""}, {"bk", ""}, {"b", "k/x"},
		{collidingBucket, collidingKeyA}, {collidingBucket, collidingKeyB}}
	seen := map[uint64][2]string{}
	for _, k := range keys {
		ino := tab.number(k[0], k[1])
		if ino <= 1 {
			t.Errorf("number(%q) = %d, a reserved inode number", k, ino)
		}
		if prev, ok := seen[ino]; ok {
			t.Errorf("number(%q) = %d, the number of %q", k, ino, prev)
		}
		seen[ino] = k
		if again := tab.number(k[0], k[1]); again != ino {
			t.Errorf("number(%q) = %d, then %d", k, ino, again)
		}
	}
}

// TestInodeTableBounded checks that keys only a listing numbered are
// dropped beyond maxIdleInodes, oldest first, that a key the kernel holds
// keeps its number however many keys come after it, and that a dropped key
// comes back with a number never given before.
func TestInodeTableBounded(t *testing.T) {
	tab := newInodeTable()
	held := tab.number("b", "held")
	tab.acquire("b", "held", held)
	first := tab.number("b", "first")
	var highest uint64
	for i := range maxIdleInodes + 10 {
		highest = tab.number("b", fmt.Sprint("listed-", i))
	}
	if n := tab.len(); n != maxIdleInodes+1 {
		t.Errorf("table holds %d keys, want %d idle + 1 held", n, maxIdleInodes)
	}
	if got := tab.number("b", "held"); got != held {
		t.Errorf("held key renumbered %d -> %d", held, got)
	}
	if got := tab.number("b", "first"); got == first || got <= highest {
		t.Errorf("dropped key came back as %d (was %d, highest given %d): want a new number", got, first, highest)
	}

	// Once forgotten, the held key is idle and ages out like the others.
	tab.release("b", "held", held)
	for i := range maxIdleInodes {
		tab.number("b", fmt.Sprint("more-", i))
	}
	if got := tab.number("b", "held"); got == held {
		t.Errorf("forgotten key kept %d after %d newer keys", held, maxIdleInodes)
	}
}

// TestInodeTableForgetRace checks the order a lookup and the kernel's
// forget of the same key can take: the lookup reads the number, the old node
// is forgotten (dropping the key), then the lookup's node is made with the
// number it read. The key gets that number back, and a stale release of an
// older number does not drop it.
func TestInodeTableForgetRace(t *testing.T) {
	tab := newInodeTable()
	ino := tab.number("b", "k")
	tab.acquire("b", "k", ino)
	tab.release("b", "k", ino)
	for i := range maxIdleInodes {
		tab.number("b", fmt.Sprint("x", i)) // ages k out
	}
	tab.acquire("b", "k", ino)
	if got := tab.number("b", "k"); got != ino {
		t.Fatalf("number after acquire = %d, want %d", got, ino)
	}
	tab.release("b", "k", ino+12345)
	for i := range maxIdleInodes {
		tab.number("b", fmt.Sprint("y", i))
	}
	if got := tab.number("b", "k"); got != ino {
		t.Errorf("a release of another number dropped the live key: %d, want %d", got, ino)
	}
}

// TestMountCollidingKeys mounts a bucket holding two keys whose FNV-64a
// hashes collide: each name reads its own object's bytes and has its own
// inode number. With hashed numbers go-fuse merged the two nodes.
func TestMountCollidingKeys(t *testing.T) {
	f := store.NewFake()
	f.Seed(collidingBucket, collidingKeyA, []byte("contents of A"))
	f.Seed(collidingBucket, collidingKeyB, []byte("B has other bytes"))
	cfg, _, _ := testConfig(f, collidingBucket)
	mnt := testMount(t, cfg)

	checkIno := newInoChecker()
	for _, round := range []string{"first", "again"} {
		for key, want := range map[string]string{collidingKeyA: "contents of A", collidingKeyB: "B has other bytes"} {
			p := filepath.Join(mnt, key)
			got, err := os.ReadFile(p)
			if err != nil || string(got) != want {
				t.Errorf("%s read: %s = %q, %v; want %q", round, key, got, err, want)
			}
			checkIno(t, key, lstat(t, p).Ino)
		}
	}
}
