package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
)

// Writes through the mount, checked with plain file calls: what the mount
// shows and what the store holds, read back through the S3 API straight
// from the server.

// writeMount mounts bucket through a fresh counting proxy; the daemon is
// stopped (and must exit cleanly) when the test ends.
func writeMount(t *testing.T, bucket string, extra ...string) (*daemon, *proxy.Proxy) {
	t.Helper()
	px := startProxy(t)
	return mountVia(t, px, t.TempDir(), bucket, extra...), px
}

// mountVia mounts bucket (BUCKET[/PREFIX], or every bucket when empty)
// through px on dir. The daemon is stopped at cleanup unless the test
// ended it, and its log shown if the test failed.
func mountVia(t *testing.T, px *proxy.Proxy, dir, bucket string, extra ...string) *daemon {
	t.Helper()
	args := append([]string{"--endpoint", px.URL, "--path-style", "--log-level", "debug"}, extra...)
	if bucket != "" { // else every bucket
		args = append(args, bucket)
	}
	m, err := harness.StartMount(bin, harness.Env(px.URL), dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{Mount: m, t: t}
	t.Cleanup(func() {
		d.stop()
		if ok, _ := harness.IsMounted(dir); ok {
			t.Errorf("%s still mounted after bucketfs exited", dir)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return d
}

// s3Get reads bucket/key through the S3 API, straight from the server.
func s3Get(t *testing.T, bucket, key string) ([]byte, error) {
	t.Helper()
	out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// s3Sum returns the sha256 of bucket/key read through the S3 API.
func s3Sum(t *testing.T, bucket, key string) [32]byte {
	t.Helper()
	out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s through the S3 API: %v", key, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		t.Fatalf("get %s through the S3 API: %v", key, err)
	}
	return [32]byte(h.Sum(nil))
}

// fileSum returns the sha256 of a local or mounted file.
func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return [32]byte(h.Sum(nil))
}

// s3Missing reports whether bucket/key is absent from the store.
func s3Missing(t *testing.T, bucket, key string) bool {
	t.Helper()
	_, err := client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	var nf *types.NotFound
	if err != nil && !errors.As(err, &nf) {
		t.Fatalf("head %s: %v", key, err)
	}
	return err != nil
}

// s3Keys lists the keys under prefix through the S3 API.
func s3Keys(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// openUploads returns the keys of the multipart uploads of bucket that
// were neither completed nor aborted.
func openUploads(ctx context.Context, bucket string) ([]string, error) {
	out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		return nil, fmt.Errorf("list multipart uploads of %s: %w", bucket, err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys, nil
}

// checkNoUploads fails t when bucket has multipart uploads left open.
func checkNoUploads(t *testing.T, bucket string) {
	t.Helper()
	keys, err := openUploads(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("multipart uploads left open in %s: %v", bucket, keys)
	}
}

// checkFile checks that name reads as want through the mount (its pages
// dropped, so the read reaches bucketfs) and that the object holds want
// in the store.
func checkFile(t *testing.T, m *daemon, bucket, name string, want []byte) {
	t.Helper()
	p := filepath.Join(m.Dir, name)
	dropCache(t, p)
	if got, err := preadAll(p); err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s through the mount: %q, %v; want %q", name, clip(got), err, clip(want))
	}
	if got, err := s3Get(t, bucket, name); err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s through the S3 API: %q, %v; want %q", name, clip(got), err, clip(want))
	}
}

// clip shortens bytes for a message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return append(slices.Clip(b[:64]), "..."...)
	}
	return b
}

// sh runs a shell command line in dir and fails t when it fails.
func sh(t *testing.T, dir, line string) string {
	t.Helper()
	out, err := runIn(dir, 2*time.Minute, "sh", "-c", line)
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return out
}

// runIn runs a program in dir, killing it after timeout, and returns its
// combined output.
func runIn(dir string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s killed after %s: %w", name, timeout, err)
	}
	return string(out), err
}

// within runs fn and fails t if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
	}
}

// TestWriteFiles: `echo hi > f`, `echo more >> f`, an O_EXCL create of an
// existing name (EEXIST), an O_TRUNC overwrite, pwrite at offsets inside
// and past the end of an existing object (the gap reads as zeros),
// truncate and ftruncate shrinking and growing (zeros), and unlink; each
// step is read back through the mount and through the S3 API.
func TestWriteFiles(t *testing.T) {
	b := newBucket(t, map[string][]byte{"old.txt": []byte("0123456789")})
	m, _ := writeMount(t, b)
	p := func(name string) string { return filepath.Join(m.Dir, name) }

	sh(t, m.Dir, "echo hi > f")
	checkFile(t, m, b, "f", []byte("hi\n"))
	sh(t, m.Dir, "echo more >> f")
	checkFile(t, m, b, "f", []byte("hi\nmore\n"))

	if _, err := os.OpenFile(p("f"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("O_EXCL create of an existing name: %v, want EEXIST", err)
	}
	if err := os.WriteFile(p("f"), []byte("new"), 0o644); err != nil {
		t.Fatalf("O_TRUNC overwrite: %v", err)
	}
	checkFile(t, m, b, "f", []byte("new"))

	// pwrite into an existing object, and past its end.
	want := []byte("0123456789")
	f, err := os.OpenFile(p("old.txt"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		off  int64
		data string
	}{{3, "ab"}, {0, "Z"}, {14, "end"}} {
		if _, err := f.WriteAt([]byte(w.data), w.off); err != nil {
			t.Fatalf("pwrite at %d: %v", w.off, err)
		}
		if end := int(w.off) + len(w.data); end > len(want) {
			want = append(want, make([]byte, end-len(want))...)
		}
		copy(want[w.off:], w.data)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after pwrite: %v", err)
	}
	checkFile(t, m, b, "old.txt", want) // "Z12ab56789\0\0\0\0end"

	// truncate (by name) and ftruncate (on an open file), down and up.
	if err := os.Truncate(p("old.txt"), 4); err != nil {
		t.Fatalf("truncate down: %v", err)
	}
	checkFile(t, m, b, "old.txt", want[:4])
	if err := os.Truncate(p("old.txt"), 9); err != nil {
		t.Fatalf("truncate up: %v", err)
	}
	checkFile(t, m, b, "old.txt", append(slices.Clone(want[:4]), 0, 0, 0, 0, 0))
	f, err = os.OpenFile(p("old.txt"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2); err != nil {
		t.Fatalf("ftruncate down: %v", err)
	}
	if err := f.Truncate(6); err != nil {
		t.Fatalf("ftruncate up: %v", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 6 {
		t.Errorf("fstat after ftruncate: %v %v, want size 6", fi, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after ftruncate: %v", err)
	}
	checkFile(t, m, b, "old.txt", []byte("Z1\x00\x00\x00\x00"))

	if err := os.Remove(p("f")); err != nil {
		t.Fatalf("unlink: %v", err)
	}
	if _, err := os.Stat(p("f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after unlink: %v", err)
	}
	if !s3Missing(t, b, "f") {
		t.Error("the object is still in the store after unlink")
	}
	if got := readDirNames(t, m.Dir); !slices.Equal(got, []string{"old.txt"}) {
		t.Errorf("listing after unlink: %v", got)
	}
	checkNoUploads(t, b)
}

// TestWriteReadYourWrites: while a file is open and being written,
// another open() of it reads the bytes written so far, stat shows its
// current size and `ls -l` of its directory lists it with that size;
// after close the object holds every byte.
func TestWriteReadYourWrites(t *testing.T) {
	b := newBucket(t, map[string][]byte{"other.txt": []byte("x")})
	m, _ := writeMount(t, b)
	p := filepath.Join(m.Dir, "growing.bin")
	data := randomBytes(301, 3<<20+123)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const chunk = 512 << 10
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if _, err := f.Write(data[off:end]); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() != int64(end) {
			t.Fatalf("stat after writing %d bytes: %v %v", end, fi, err)
		}
		got, err := preadAll(p)
		if err != nil || !bytes.Equal(got, data[:end]) {
			t.Fatalf("another open after writing %d bytes: %d bytes, %v, exact %v", end, len(got), err, bytes.Equal(got, data[:end]))
		}
		out, err := runIn(m.Dir, 30*time.Second, "ls", "-l")
		if err != nil || !lsShows(out, "growing.bin", end) {
			t.Fatalf("ls -l after writing %d bytes (%v):\n%s", end, err, out)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	checkFile(t, m, b, "growing.bin", data)
}

// lsShows reports whether `ls -l` output lists name with size.
func lsShows(out, name string, size int) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 9 && f[len(f)-1] == name && f[4] == fmt.Sprint(size) {
			return true
		}
	}
	return false
}

// TestWriteSymlinkRefused: `ln -s` fails with EPERM (object stores have no
// links) and stores nothing.
func TestWriteSymlinkRefused(t *testing.T) {
	b := newBucket(t, map[string][]byte{"target.txt": []byte("t")})
	m, _ := writeMount(t, b)
	out, err := runIn(m.Dir, 30*time.Second, "ln", "-s", "target.txt", "link")
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("ln -s: %v %s, want Operation not permitted", err, out)
	}
	if err := os.Symlink("target.txt", filepath.Join(m.Dir, "link2")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("symlink(2): %v, want EPERM", err)
	}
	if keys := s3Keys(t, b, ""); !slices.Equal(keys, []string{"target.txt"}) {
		t.Errorf("keys after refused links: %v", keys)
	}
}

// TestWriteOpenFileMovedOrRemoved: a file open for writing that is renamed
// is stored under its new name when closed, with every byte written before
// and after the rename, and nothing is left under the old name. A file
// open for writing that is unlinked works on as POSIX says (writes and
// reads through the open descriptor succeed, close does not fail) and
// nothing of it is stored.
func TestWriteOpenFileMovedOrRemoved(t *testing.T) {
	b := newBucket(t, map[string][]byte{"keep.txt": []byte("k")})
	m, _ := writeMount(t, b)
	p := func(name string) string { return filepath.Join(m.Dir, name) }
	first, second := randomBytes(310, 100<<10), randomBytes(311, 50<<10)

	f, err := os.Create(p("before.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(first); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p("before.bin"), p("after.bin")); err != nil {
		t.Fatalf("rename of a file open for writing: %v", err)
	}
	if _, err := f.Write(second); err != nil {
		t.Fatalf("write after the rename: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after the rename: %v", err)
	}
	checkFile(t, m, b, "after.bin", append(slices.Clone(first), second...))
	if !s3Missing(t, b, "before.bin") {
		t.Error("before.bin is in the store after the rename")
	}

	// The scratch-file idiom (tmpfile(3), sort, editors): open, unlink,
	// then go on writing and reading through the descriptor.
	f, err = os.OpenFile(p("gone.bin"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(first); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("gone.bin")); err != nil {
		t.Fatalf("unlink of a file open for writing: %v", err)
	}
	if _, err := f.Write(second); err != nil {
		t.Errorf("write after the unlink: %v", err)
	}
	got := make([]byte, len(first)+len(second))
	if n, err := f.ReadAt(got, 0); n != len(got) || !bytes.Equal(got, append(slices.Clone(first), second...)) {
		t.Errorf("pread after the unlink: %d bytes, %v; want the %d bytes written", n, err, len(got))
	}
	if err := f.Close(); err != nil {
		t.Errorf("close after the unlink: %v", err)
	}
	if !s3Missing(t, b, "gone.bin") {
		t.Error("gone.bin is in the store though it was unlinked before close")
	}
	if got := readDirNames(t, m.Dir); !slices.Equal(got, []string{"after.bin", "keep.txt"}) {
		t.Errorf("listing: %v", got)
	}
	checkNoUploads(t, b)
}
