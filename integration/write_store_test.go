package integration

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
)

// What writes send to the store, seen at the proxy: part-sized uploads for
// small changes, and failures of the store turned into errors of close().

// TestWriteSmallChangesToLargeObject: two pwrites of 10 bytes, 250 MiB
// apart, into an existing 300 MiB object. After close the proxy saw at
// most two parts' worth of bytes uploaded for the key (the rest copied
// server-side: UploadPartCopy), and the object holds exactly the old bytes
// with the two changes.
func TestWriteSmallChangesToLargeObject(t *testing.T) {
	data := randomBytes(701, 300<<20)
	b := newBucket(t, nil)
	if err := harness.Put(context.Background(), client, b, "large.bin", data); err != nil {
		t.Fatal(err)
	}
	m, px := writeMount(t, b)
	p := filepath.Join(m.Dir, "large.bin")
	px.Reset()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{1000, 250<<20 + 7} {
		patch := []byte("0123456789")
		if _, err := f.WriteAt(patch, off); err != nil {
			t.Fatalf("pwrite at %d: %v", off, err)
		}
		copy(data[off:], patch)
	}
	within(t, 2*time.Minute, "close", func() {
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	// Default parts are 8 MiB; aws-chunked framing adds a little.
	const parts = 2 * (8<<20 + 64<<10)
	s := px.Stats()
	if up := px.UploadedBytes("large.bin"); up > parts || up == 0 {
		t.Errorf("uploaded %d bytes for two 10-byte changes, want at most two parts (%d)", up, parts)
	}
	if s.Copies == 0 {
		t.Errorf("proxy stats %+v: want the untouched parts copied server-side", s)
	}
	want := sha256.Sum256(data)
	if got := s3Sum(t, b, "large.bin"); got != want {
		t.Error("the object read through the S3 API is not the old bytes with the two changes")
	}
	dropCache(t, p)
	if got := fileSum(t, p); got != want {
		t.Error("the file read back through the mount is not the old bytes with the two changes")
	}
	checkNoUploads(t, b)
}

// writeClose creates name, writes data and closes it, returning close's
// error (write errors fail t). It fails t when close takes over a minute.
func writeClose(t *testing.T, p string, data []byte) error {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatalf("create %s: %v", p, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", p, err)
	}
	var cerr error
	within(t, time.Minute, "close", func() { cerr = f.Close() })
	return cerr
}

// TestWriteStoreRefuses: while the store refuses every write (503
// SlowDown, after the few retries the flags allow) close() fails with EIO,
// for a small file (one PUT) and for a 20 MiB one (a multipart upload);
// no object is left under either key and no multipart upload is left open.
// A CompleteMultipartUpload that fails leaves none open either (the upload
// is aborted). A 403 refusal gives EACCES, to close() and to mkdir.
func TestWriteStoreRefuses(t *testing.T) {
	b := newBucket(t, map[string][]byte{"keep.txt": []byte("k")})
	m, px := writeMount(t, b, "--max-retries", "1", "--request-timeout", "2s")
	p := func(name string) string { return filepath.Join(m.Dir, name) }

	px.RefuseWrites(503)
	for name, size := range map[string]int{"small.bin": 1000, "big.bin": 20 << 20} {
		start := time.Now()
		if err := writeClose(t, p(name), randomBytes(801, size)); !errors.Is(err, syscall.EIO) {
			t.Errorf("close of %s while writes are refused: %v, want EIO", name, err)
		}
		t.Logf("%s: close failed after %v", name, time.Since(start).Round(time.Millisecond))
		if !s3Missing(t, b, name) {
			t.Errorf("%s is in the store after a failed close", name)
		}
	}
	checkNoUploads(t, b)

	px.RefuseWrites(0)
	px.SetFaults(proxy.Faults{ErrorRate: 1, ErrorStatus: 500, Ops: []string{"CompleteMultipartUpload"}})
	if err := writeClose(t, p("uncompleted.bin"), randomBytes(802, 20<<20)); !errors.Is(err, syscall.EIO) {
		t.Errorf("close when CompleteMultipartUpload fails: %v, want EIO", err)
	}
	if !s3Missing(t, b, "uncompleted.bin") {
		t.Error("uncompleted.bin is in the store after a failed close")
	}
	if s := px.Stats(); s.Aborts == 0 {
		t.Errorf("proxy stats %+v: want the failed upload aborted", s)
	}
	checkNoUploads(t, b)

	px.SetFaults(proxy.Faults{})
	px.RefuseWrites(403)
	if err := writeClose(t, p("denied.bin"), []byte("no")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("close while writes get 403: %v, want EACCES", err)
	}
	if err := os.Mkdir(p("denied"), 0o755); !errors.Is(err, syscall.EACCES) {
		t.Errorf("mkdir while writes get 403: %v, want EACCES", err)
	}
	if err := os.Remove(p("keep.txt")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("unlink while writes get 403: %v, want EACCES", err)
	}
	px.RefuseWrites(0)
	checkFile(t, m, b, "keep.txt", []byte("k"))
	checkNoUploads(t, b)
}

// TestWriteThroughErrors: 20 MiB files (5 MiB parts: seven requests each)
// written while 20% of write requests get 503 SlowDown, until some were
// failed (the retries ride them out): each close succeeds and each object
// holds exactly the bytes written.
func TestWriteThroughErrors(t *testing.T) {
	b := newBucket(t, nil)
	m, px := writeMount(t, b, "--write-part-size", "5MiB")
	px.SetFaults(proxy.Faults{ErrorRate: 0.2, WritesOnly: true})
	for i := 0; i < 10 && px.Injected() < 2; i++ {
		name := fmt.Sprintf("w%d.bin", i)
		data := randomBytes(uint64(810+i), 20<<20+11)
		start, before := time.Now(), px.Injected()
		if err := writeClose(t, filepath.Join(m.Dir, name), data); err != nil {
			t.Fatalf("close of %s through 20%% errors: %v", name, err)
		}
		t.Logf("%s: written and closed in %v, %d requests failed", name, time.Since(start).Round(time.Millisecond), px.Injected()-before)
		checkFile(t, m, b, name, data)
	}
	t.Logf("%d write requests failed on the way", px.Injected())
	if px.Injected() == 0 {
		t.Error("no write request was failed")
	}
	px.SetFaults(proxy.Faults{})
	checkNoUploads(t, b)
}

// TestWriteExclusiveCreateRace: an O_EXCL create of a name the mount saw
// missing, but that another client stored meanwhile, fails with EEXIST (at
// close at the latest: the object is created only if absent), for a small
// file (PUT) and a 20 MiB one (multipart upload); the other client's
// object is kept and no upload is left open.
func TestWriteExclusiveCreateRace(t *testing.T) {
	b := newBucket(t, map[string][]byte{"a": []byte("a")})
	m, _ := writeMount(t, b)
	for name, size := range map[string]int{"small": 10, "big": 20 << 20} {
		p := filepath.Join(m.Dir, name)
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stat of %s before: %v", name, err)
		}
		other := []byte("stored by another client")
		if err := harness.Put(context.Background(), client, b, name, other); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			if _, err := f.Write(randomBytes(820, size)); err != nil {
				t.Errorf("write %s: %v", name, err)
			}
			within(t, time.Minute, "close", func() { err = f.Close() })
		}
		if !errors.Is(err, syscall.EEXIST) {
			t.Errorf("O_EXCL create of %s, stored meanwhile by another client: %v, want EEXIST", name, err)
		}
		if got, err := s3Get(t, b, name); err != nil || string(got) != string(other) {
			t.Errorf("%s in the store: %q, %v; want the other client's object", name, clip(got), err)
		}
	}
	checkNoUploads(t, b)
}

// TestWriteStorageClassFlag: with --storage-class, new objects are stored
// in that class (as the store reports it to the proxy) and show it in
// user.s3.storage_class.
func TestWriteStorageClassFlag(t *testing.T) {
	b := newBucket(t, nil)
	m, px := writeMount(t, b, "--storage-class", "STANDARD_IA")
	for name, size := range map[string]int{"small.txt": 5, "big.bin": 12 << 20} {
		data := randomBytes(930, size)
		if err := writeClose(t, filepath.Join(m.Dir, name), data); err != nil {
			t.Fatalf("close %s: %v", name, err)
		}
		if c := px.StorageClass(b, name); c != "STANDARD_IA" {
			t.Errorf("%s: class %q in the store, want STANDARD_IA", name, c)
		}
		if v, err := xattr(t, filepath.Join(m.Dir, name), "user.s3.storage_class"); err != nil || v != "STANDARD_IA" {
			t.Errorf("%s: user.s3.storage_class %q, %v", name, v, err)
		}
		checkFile(t, m, b, name, data)
	}
}
