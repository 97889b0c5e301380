package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bucketfs/bucketfs/integration/harness"
)

// smallFileSet returns n files of size bytes under dir/, named so that
// listing order is name order, and their paths in that order.
func smallFileSet(dir string, n, size int, seed uint64) (map[string][]byte, []string) {
	objects := map[string][]byte{}
	var keys []string
	for i := range n {
		k := fmt.Sprintf("%s/img%05d.jpg", dir, i)
		objects[k] = randomBytes(seed*10000+uint64(i), size)
		keys = append(keys, k)
	}
	return objects, keys
}

// TestSmallFilesInOrder reads directories of small files through a mount
// the ways programs do, behind 20 ms of latency: one cat over the sorted
// files, a shell loop running one cat per file, files opened in a shuffled
// order, and a directory where another client rewrote a file after the
// mount listed it. In order, the files are fetched ahead (the read path
// says so) with one GET per file and no HEAD; shuffled, no byte is fetched
// that is not read (within 10%); every byte is the object's, the rewritten
// file's the new ones.
func TestSmallFilesInOrder(t *testing.T) {
	const n, size = 100, 20 << 10
	objects := map[string][]byte{}
	keys := map[string][]string{}
	for i, dir := range []string{"cat", "loop", "shuffled", "rewritten"} {
		objs, ks := smallFileSet(dir, n, size, uint64(i+1))
		for k, v := range objs {
			objects[k] = v
		}
		keys[dir] = ks
	}
	b := newBucket(t, objects)
	m, px := proxiedMount(t, b)
	px.SetLatency(20 * time.Millisecond)

	list := func(dir string) []string {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(m.Dir, dir))
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, e := range ents {
			paths = append(paths, filepath.Join(m.Dir, dir, e.Name()))
		}
		if len(paths) != n {
			t.Fatalf("%s lists %d files, want %d", dir, len(paths), n)
		}
		return paths
	}
	want := func(dir string) []byte {
		var all []byte
		for _, k := range keys[dir] {
			all = append(all, objects[k]...)
		}
		return all
	}
	inOrder := func(dir string, cmd *exec.Cmd) {
		t.Helper()
		before := readStats(t, m.Dir)
		px.Reset()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if !bytes.Equal(out, want(dir)) {
			t.Fatalf("%s: read %d bytes that differ from the files' %d", dir, len(out), n*size)
		}
		st := px.Stats()
		after := readStats(t, m.Dir)
		ahead := after["readahead_blocks"] - before["readahead_blocks"]
		if ahead < n-10 {
			t.Errorf("%s: %d files fetched ahead of %d read in order", dir, ahead, n)
		}
		if st.Gets > n+2 || st.GetBytes > int64(n*size)*11/10 {
			t.Errorf("%s: %d GETs, %d bytes for %d files of %d bytes", dir, st.Gets, st.GetBytes, n, size)
		}
		if st.Heads != 0 {
			t.Errorf("%s: %d HEADs: lookups and opens should be answered from the listing", dir, st.Heads)
		}
	}

	paths := list("cat")
	inOrder("cat", exec.Command("cat", paths...))

	list("loop")
	inOrder("loop", exec.Command("sh", "-c", `for f in "$1"/*; do cat "$f"; done`, "sh", filepath.Join(m.Dir, "loop")))

	// Shuffled: every file read once, in random order.
	paths = list("shuffled")
	before := readStats(t, m.Dir)
	px.Reset()
	var read int64
	for _, i := range rand.New(rand.NewPCG(3, 4)).Perm(n) {
		got, err := os.ReadFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, objects[keys["shuffled"][i]]) {
			t.Fatalf("%s: wrong bytes", paths[i])
		}
		read += int64(len(got))
	}
	if st := px.Stats(); st.GetBytes > read*11/10 {
		t.Errorf("shuffled: fetched %d bytes for %d read", st.GetBytes, read)
	}
	after := readStats(t, m.Dir)
	t.Logf("shuffled: %d files fetched ahead", after["readahead_blocks"]-before["readahead_blocks"])

	// Rewritten after the mount listed it: the file reads its new bytes.
	paths = list("rewritten")
	fresh := randomBytes(99, size)
	rk := keys["rewritten"][n/2]
	if err := harness.Put(context.Background(), client, b, rk, fresh); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cat", paths...).Output()
	if err != nil {
		t.Fatal(err)
	}
	var wantAll []byte
	for _, k := range keys["rewritten"] {
		if k == rk {
			wantAll = append(wantAll, fresh...)
		} else {
			wantAll = append(wantAll, objects[k]...)
		}
	}
	if !bytes.Equal(out, wantAll) {
		t.Fatalf("rewritten: cat returned %d bytes, want %d with the rewritten file's new content", len(out), len(wantAll))
	}
}

// TestTigrisListContent mounts through the proxy emulating Tigris's inline
// listing content (X-Tigris-List-Content): with --tigris-list-content on,
// a listed directory's small files read with no GET and exact bytes, and a
// file too large to be inlined reads with a GET; with the default (auto,
// and the server is not Tigris) the header is not sent and every file
// costs its GET.
func TestTigrisListContent(t *testing.T) {
	const n, size = 30, 10 << 10
	objects, keys := smallFileSet("inline", n, size, 9)
	objects["inline/zz-large.bin"] = randomBytes(10, 200<<10)
	b := newBucket(t, objects)
	fetch := func(bucket, key string) ([]byte, error) {
		out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	}
	for _, tc := range []struct {
		flags    []string
		wantGets int64
	}{
		{[]string{"--tigris-list-content", "on", "--prefetch-files=false"}, 1},
		{[]string{"--prefetch-files=false"}, n + 1},
	} {
		m, px := proxiedMount(t, b, tc.flags...)
		px.EmulateTigrisListContent(64<<10, fetch)
		dir := filepath.Join(m.Dir, "inline")
		if _, err := os.ReadDir(dir); err != nil {
			t.Fatal(err)
		}
		inlined := px.InlinedObjects()
		px.Reset()
		var paths []string
		var want []byte
		for _, k := range append(keys, "inline/zz-large.bin") {
			paths = append(paths, filepath.Join(m.Dir, k))
			want = append(want, objects[k]...)
		}
		out, err := exec.Command("cat", paths...).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("%v: cat returned %d bytes that differ from the files' %d", tc.flags, len(out), len(want))
		}
		if g := px.Stats().Gets; g != tc.wantGets {
			t.Errorf("%v: %d GETs reading %d small files and a large one (listing carried %d files), want %d", tc.flags, g, n, inlined, tc.wantGets)
		}
	}
}
