package integration

import (
	"context"
	"hash/fnv"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/bucketfs/bucketfs/integration/harness"
)

// TestCollidingKeysReadTheirOwnBytes uploads two keys whose FNV-64a hashes
// (of bucket, NUL and key: how bucketfs once derived inode numbers) are
// equal, mounts the bucket with the real binary and reads both through the
// mount: each name must show its own object's bytes and its own inode
// number. With hashed inode numbers the kernel was given one node for both,
// and the second name read the first object's bytes.
func TestCollidingKeysReadTheirOwnBytes(t *testing.T) {
	const bucket = "inocollide" // the hashes below include the bucket
	keyA, keyB := "k/swfLXdQ1xSo", "k/LKRsn83gOmn"
	h := func(k string) uint64 {
		f := fnv.New64a()
		f.Write([]byte(bucket + "\x00" + k))
		return f.Sum64()
	}
	if h(keyA) != h(keyB) {
		t.Fatalf("fixture keys no longer collide: %x %x", h(keyA), h(keyB))
	}
	if err := harness.CreateBucket(context.Background(), client, bucket); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{keyA: "the bytes of object A", keyB: "object B, other bytes"}
	putAll(t, bucket, map[string][]byte{keyA: []byte(want[keyA]), keyB: []byte(want[keyB])})
	m := mount(t, bucket)

	inos := map[uint64]string{}
	for _, k := range []string{keyB, keyA, keyB} {
		p := filepath.Join(m.Dir, k)
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want[k] {
			t.Errorf("%s reads %q, %v; want %q", k, got, err, want[k])
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if other, ok := inos[st.Ino]; ok && other != k {
			t.Errorf("%s and %s share inode %d", k, other, st.Ino)
		}
		inos[st.Ino] = k
	}
}
