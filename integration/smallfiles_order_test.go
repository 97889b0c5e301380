package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestTigrisListContentArchived: a listing that carries an archived
// object's content (the emulation inlines whatever is small) does not make
// the file readable: its open fails with EACCES as without the content;
// the other files read their exact bytes.
func TestTigrisListContentArchived(t *testing.T) {
	const n, size = 30, 4 << 10
	objects, keys := smallFileSet("cold", n, size, 21)
	b := newBucket(t, objects)
	m, px := proxiedMount(t, b, "--tigris-list-content", "on")
	cold := keys[n/2]
	px.Archive(b, cold, "GLACIER")
	px.EmulateTigrisListContent(64<<10, func(bucket, key string) ([]byte, error) {
		out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	})
	if _, err := os.ReadDir(filepath.Join(m.Dir, "cold")); err != nil {
		t.Fatal(err)
	}
	if px.InlinedObjects() != n {
		t.Fatalf("the listing carried %d files, want all %d (the archived one too)", px.InlinedObjects(), n)
	}
	for _, k := range keys {
		got, err := os.ReadFile(filepath.Join(m.Dir, k))
		if k == cold {
			if !errors.Is(err, syscall.EACCES) {
				t.Fatalf("archived %s: read %d bytes, %v; want EACCES", k, len(got), err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, objects[k]) {
			t.Fatalf("%s: %v, or %d bytes that differ from the object's", k, err, len(got))
		}
	}
}

// TestSmallFilesOutOfOrder: files read whole through the mount, behind
// latency, in orders other than the listing's fetch no more than 1.1
// times the bytes read: directories of 12 to 40 files in a shuffled order
// (eight places either side of the furthest file opened are most of such
// a directory), a directory read in reverse order, and one read every
// other file. The block cache is kept small, so that files fetched ahead
// and not read cost GETs again when they are opened.
func TestSmallFilesOutOfOrder(t *testing.T) {
	const size = 48 << 10
	objects := map[string][]byte{}
	sets := map[string][]string{}
	for i, n := range []int{12, 16, 20, 24, 30, 40, 120, 121} {
		dir := fmt.Sprintf("s%03d", n)
		objs, ks := smallFileSet(dir, n, size, uint64(40+i))
		for k, v := range objs {
			objects[k] = v
		}
		sets[dir] = ks
	}
	b := newBucket(t, objects)
	// Each order on a mount of its own: files one holds ahead would leave
	// the next no room.
	check := func(what string, paths []string) {
		t.Helper()
		m, px := proxiedMount(t, b, "--cache-memory", "1MiB", "--block-size", "64KiB")
		px.SetLatency(2 * time.Millisecond)
		for dir := range sets {
			if _, err := os.ReadDir(filepath.Join(m.Dir, dir)); err != nil {
				t.Fatal(err)
			}
		}
		px.Reset()
		var read int64
		for _, k := range paths {
			got, err := os.ReadFile(filepath.Join(m.Dir, k))
			if err != nil || !bytes.Equal(got, objects[k]) {
				t.Fatalf("%s: %v, or bytes that differ from the object's", k, err)
			}
			read += int64(len(got))
		}
		st := px.Stats()
		t.Logf("%s: fetched %d bytes for %d read (%.2f)", what, st.GetBytes, read, float64(st.GetBytes)/float64(read))
		if st.GetBytes > read*11/10 {
			t.Errorf("%s: fetched %d bytes for %d read", what, st.GetBytes, read)
		}
	}
	var shuffled []string
	for seed, n := range []int{12, 16, 20, 24, 30, 40} {
		ks := sets[fmt.Sprintf("s%03d", n)]
		for _, i := range rand.New(rand.NewPCG(uint64(seed), 5)).Perm(len(ks)) {
			shuffled = append(shuffled, ks[i])
		}
	}
	check("shuffled small directories", shuffled)
	var reverse, strided []string
	for i := 119; i >= 0; i-- {
		reverse = append(reverse, sets["s120"][i])
	}
	check("reverse order", reverse)
	for i := 0; i < 121; i += 2 {
		strided = append(strided, sets["s121"][i])
	}
	check("every other file", strided)
}

// TestSmallFilesChangedWhileAhead: files of a directory read in listing
// order are fetched ahead; while those fetches are under way (the store
// answers slowly), this mount rewrites one file with other bytes of the
// same size, renames one away and writes another in its place, and
// removes one and creates it again. Every file then reads the bytes the
// mount wrote, never the ones fetched ahead.
func TestSmallFilesChangedWhileAhead(t *testing.T) {
	const n, size = 40, 8 << 10
	objects, keys := smallFileSet("live", n, size, 61)
	b := newBucket(t, objects)
	m, px := proxiedMount(t, b)
	dir := filepath.Join(m.Dir, "live")
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	path := func(i int) string { return filepath.Join(m.Dir, keys[i]) }
	want := map[int][]byte{}
	for i := range n {
		want[i] = objects[keys[i]]
	}
	px.SetLatency(300 * time.Millisecond)
	for i := range 6 {
		got, err := os.ReadFile(path(i))
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Fatalf("%s: %v, or bytes that differ", keys[i], err)
		}
	}
	// The next files are being fetched ahead now.
	px.SetLatency(0)
	want[7] = randomBytes(700, size)
	if err := os.WriteFile(path(7), want[7], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path(8), path(8)+".old"); err != nil {
		t.Fatal(err)
	}
	want[8] = randomBytes(800, size)
	if err := os.WriteFile(path(8), want[8], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path(9)); err != nil {
		t.Fatal(err)
	}
	want[9] = randomBytes(900, size)
	if err := os.WriteFile(path(9), want[9], 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 6; i < n; i++ {
		got, err := os.ReadFile(path(i))
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Fatalf("%s: %v, or %d bytes that differ from the %d the mount holds", keys[i], err, len(got), len(want[i]))
		}
	}
	got, err := os.ReadFile(path(8) + ".old")
	if err != nil || !bytes.Equal(got, objects[keys[8]]) {
		t.Fatalf("%s.old: %v, or bytes that differ from the file renamed", keys[8], err)
	}
	// A cold read of each, from the store, agrees.
	for _, i := range []int{7, 8, 9} {
		dropCache(t, path(i))
		got, err := os.ReadFile(path(i))
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Fatalf("%s after dropping its pages: %v, or bytes that differ", keys[i], err)
		}
	}
	if st := readStats(t, m.Dir); st["readahead_blocks"] == 0 {
		t.Error("no file was fetched ahead: the test did not race anything")
	}
}
