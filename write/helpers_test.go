package write

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left running
// after them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	mib  = 1 << 20
	part = 5 * mib // the part size of these tests
)

// wait bounds every wait of these tests.
const wait = 20 * time.Second

// fixture is a Manager over a fake store with one bucket "b".
type fixture struct {
	st   *store.Fake
	m    *Manager
	o    Options
	logs *logtest.Hook
}

// newFixture returns a Manager with 5 MiB parts over a fresh fake; opt,
// when set, changes its options. The Manager is closed at the test's end.
func newFixture(t *testing.T, opt func(*Options)) *fixture {
	t.Helper()
	st := store.NewFake()
	st.CreateBucket("b")
	fx := &fixture{st: st}
	fx.o = Options{Store: st, PartSize: part, Dir: t.TempDir(), RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond}
	if opt != nil {
		opt(&fx.o)
	}
	fx.m, fx.logs = newManager(t, fx.o)
	return fx
}

// newManager makes a Manager of o logging to a test hook, closed (with
// its invariants checked) at the test's end.
func newManager(t *testing.T, o Options) (*Manager, *logtest.Hook) {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	o.Log = logrus.NewEntry(logger)
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkInvariants(t, m)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		m.Close(ctx)
	})
	return m, hook
}

// checkInvariants checks what the Manager's pending set promises: it
// holds exactly the files with a write-back entry (of files, those
// given), and a sealed file has one.
func checkInvariants(t *testing.T, m *Manager, files ...*File) {
	t.Helper()
	for _, f := range append(m.pendingFiles(), files...) {
		f.mu.Lock()
		m.pmu.Lock()
		_, listed := m.pending[f]
		m.pmu.Unlock()
		wb, sealed := f.wb, f.sealed
		f.mu.Unlock()
		if listed != (wb != nil) || (sealed && wb == nil) {
			t.Errorf("pending set lists a file %v; it has an entry %v, sealed %v", listed, wb != nil, sealed)
		}
	}
}

// randBytes returns n bytes of a seeded random stream.
func randBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed, byte(n), byte(n >> 8), byte(n >> 16)}).Read(b)
	return b
}

// seed stores data as b/key and returns the object as a HEAD gives it.
func (fx *fixture) seed(t *testing.T, key string, data []byte, meta map[string]string) store.Object {
	t.Helper()
	fx.st.SeedObject("b", key, data, "", meta)
	o, err := fx.st.Head(context.Background(), "b", key)
	if err != nil {
		t.Fatal(err)
	}
	return *o
}

// object returns the bytes and attributes of bucket/key, or fails.
func (fx *fixture) object(t *testing.T, bucket, key string) ([]byte, store.Object) {
	t.Helper()
	out, err := fx.st.Get(context.Background(), store.GetInput{Bucket: bucket, Key: key, Length: -1})
	if err != nil {
		t.Fatalf("GET %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b := make([]byte, out.Object.Size)
	if _, err := io.ReadFull(out.Body, b); err != nil {
		t.Fatal(err)
	}
	return b, out.Object
}

// wantObject checks that bucket/key holds exactly want.
func (fx *fixture) wantObject(t *testing.T, bucket, key string, want []byte) store.Object {
	t.Helper()
	got, o := fx.object(t, bucket, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s/%s holds %d bytes, want %d; first difference at %d", bucket, key, len(got), len(want), firstDiff(got, want))
	}
	return o
}

// wantAbsent checks that bucket/key does not exist.
func (fx *fixture) wantAbsent(t *testing.T, bucket, key string) {
	t.Helper()
	if _, err := fx.st.Head(context.Background(), bucket, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s/%s: HEAD says %v, want not found", bucket, key, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// open opens b/key for writing, released at the test's end.
func (fx *fixture) open(t *testing.T, key string, o OpenOptions) *File {
	t.Helper()
	f, err := fx.m.Open("b", key, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Release() })
	return f
}

// writeAt writes p at off in chunks of chunk bytes, failing the test on
// an error.
func writeAt(t *testing.T, f *File, p []byte, off int64, chunk int) {
	t.Helper()
	for i := 0; i < len(p); i += chunk {
		b := p[i:min(i+chunk, len(p))]
		n, err := f.WriteAt(context.Background(), b, off+int64(i))
		if err != nil || n != len(b) {
			t.Fatalf("write %d@%d: %d, %v", len(b), off+int64(i), n, err)
		}
	}
}

// readAll reads the whole file through ReadAt.
func readAll(t *testing.T, f *File) []byte {
	t.Helper()
	buf := make([]byte, f.Size())
	n, err := f.ReadAt(context.Background(), buf, 0)
	if err != nil && err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// commit commits f and fails the test on an error.
func commit(t *testing.T, f *File) store.Object {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	o, err := f.Commit(ctx)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return o
}

// settle waits for the part uploads started while writing. REQUIRES: no
// write to f runs.
func settle(f *File) { f.bg.Wait() }

// failing returns a failure hook that fails the ops named with err while
// on is set.
func failing(on *atomic.Bool, err error, ops ...string) func(op, bucket, key string) error {
	return func(op, bucket, key string) error {
		if !on.Load() {
			return nil
		}
		for _, o := range ops {
			if o == op {
				return &store.Error{Op: op, Bucket: bucket, Key: key, Status: 500, Code: "InternalError", Kind: err}
			}
		}
		return nil
	}
}

// writeOps are the requests that change the store.
var writeOps = []string{"PutObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
	"CompleteMultipartUpload", "AbortMultipartUpload", "CopyObject", "DeleteObject"}

// journalFiles lists the journal directory's record and data files.
func journalFiles(t *testing.T, dir string) (records, data []string) {
	t.Helper()
	records, _ = filepath.Glob(filepath.Join(dir, "journal", "*.json"))
	data, _ = filepath.Glob(filepath.Join(dir, "journal", "*.data"))
	return records, data
}

// waitIdle polls m until no write-back upload is pending, bounded.
func waitIdle(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if n, _ := m.Pending(); n == 0 {
			return
		}
		if time.Now().After(deadline) {
			n, _ := m.Pending()
			t.Fatalf("%d write-back uploads still pending after %v", n, wait)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitFile waits until nothing of f is on its way to the store.
func waitFile(t *testing.T, f *File) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := f.Wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
