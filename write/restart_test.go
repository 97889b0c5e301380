package write

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// killable is a store that dies at once and for good, as the store of a
// daemon killed with SIGKILL: every request fails after kill.
type killable struct {
	store.Store
	dead atomic.Bool
	// hook, when set, runs before each request while alive.
	hook func(op string) error
}

func (k *killable) check(op string) error {
	if k.dead.Load() {
		return &store.Error{Op: op, Kind: store.ErrUnreachable, Err: errors.New("killed")}
	}
	if k.hook != nil {
		return k.hook(op)
	}
	return nil
}

func (k *killable) Head(ctx context.Context, bucket, key string) (*store.Object, error) {
	if err := k.check("HeadObject"); err != nil {
		return nil, err
	}
	return k.Store.Head(ctx, bucket, key)
}

func (k *killable) Get(ctx context.Context, in store.GetInput) (*store.GetOutput, error) {
	if err := k.check("GetObject"); err != nil {
		return nil, err
	}
	return k.Store.Get(ctx, in)
}

func (k *killable) Put(ctx context.Context, in store.PutInput) (*store.Object, error) {
	if err := k.check("PutObject"); err != nil {
		return nil, err
	}
	return k.Store.Put(ctx, in)
}

func (k *killable) CreateMultipart(ctx context.Context, in store.CreateMultipartInput) (string, error) {
	if err := k.check("CreateMultipartUpload"); err != nil {
		return "", err
	}
	return k.Store.CreateMultipart(ctx, in)
}

func (k *killable) UploadPart(ctx context.Context, in store.UploadPartInput) (string, error) {
	if err := k.check("UploadPart"); err != nil {
		return "", err
	}
	return k.Store.UploadPart(ctx, in)
}

func (k *killable) UploadPartCopy(ctx context.Context, in store.UploadPartCopyInput) (string, error) {
	if err := k.check("UploadPartCopy"); err != nil {
		return "", err
	}
	return k.Store.UploadPartCopy(ctx, in)
}

func (k *killable) CompleteMultipart(ctx context.Context, in store.CompleteMultipartInput) (*store.Object, error) {
	if err := k.check("CompleteMultipartUpload"); err != nil {
		return nil, err
	}
	return k.Store.CompleteMultipart(ctx, in)
}

func (k *killable) AbortMultipart(ctx context.Context, bucket, key, id string) error {
	if err := k.check("AbortMultipartUpload"); err != nil {
		return err
	}
	return k.Store.AbortMultipart(ctx, bucket, key, id)
}

func (k *killable) Copy(ctx context.Context, in store.CopyInput) (*store.Object, error) {
	if err := k.check("CopyObject"); err != nil {
		return nil, err
	}
	return k.Store.Copy(ctx, in)
}

func (k *killable) Delete(ctx context.Context, bucket, key string) error {
	if err := k.check("DeleteObject"); err != nil {
		return err
	}
	return k.Store.Delete(ctx, bucket, key)
}

// killed stops a Manager whose store was killed without Close, as the
// end of a killed daemon: its goroutines end and its files are let go;
// the journal is left as the kill left it.
func killed(m *Manager) {
	m.cancel()
	m.bg.Wait()
	files := m.pendingFiles()
	m.pmu.Lock()
	m.pending = map[*File]struct{}{}
	m.pmu.Unlock()
	for _, f := range files {
		f.bg.Wait()
		f.drop()
	}
}

// TestWriteBackRestart simulates kill -9: a daemon commits files under
// write-back while its store is unreachable and dies without Close; a new
// Manager on the same directory finds the entries in Start and stores
// them exactly.
func TestWriteBackRestart(t *testing.T) {
	fx := newFixture(t, nil)
	dir := t.TempDir()
	ks := &killable{Store: fx.st}
	ks.dead.Store(true)
	m1, _ := newManager(t, Options{Store: ks, Dir: dir, WriteBack: true, PartSize: part, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond})
	old := randBytes(23*mib, 22)
	fx.st.Seed("b", "base", old)
	base, _ := fx.st.Head(context.Background(), "b", "base")
	ks.dead.Store(false) // the first GETs of the base go through...
	want := map[string][]byte{"small": randBytes(100, 23), "large": randBytes(13*mib, 24), "base": bytes.Clone(old)}
	for key, data := range want {
		var o OpenOptions
		if key == "base" {
			o.Base = base
		}
		f, err := m1.Open("b", key, o)
		if err != nil {
			t.Fatal(err)
		}
		ks.dead.Store(true) // ...then the store is gone
		if key == "base" {
			p := randBytes(100, 25)
			copy(data[20*mib:], p)
			writeAt(t, f, p, 20*mib, 100)
		} else {
			writeAt(t, f, data, 0, mib)
		}
		commit(t, f)
		f.Release()
	}
	killed(m1)
	if recs, _ := journalFiles(t, dir); len(recs) != 3 {
		t.Fatalf("journal holds %d records", len(recs))
	}
	m2, _ := newManager(t, Options{Store: fx.st, Dir: dir, WriteBack: true, PartSize: part, RetryDelay: time.Millisecond})
	n, err := m2.Start(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("Start found %d, %v", n, err)
	}
	waitIdle(t, m2)
	for key, data := range want {
		fx.wantObject(t, "b", key, data)
	}
	if recs, data := journalFiles(t, dir); len(recs)+len(data) != 0 {
		t.Errorf("journal still holds %v %v", recs, data)
	}
	if n := fx.st.Uploads("b"); n != 0 {
		t.Errorf("%d multipart uploads left open", n)
	}
}

// TestWriteBackRestartAbortsUploads kills a daemon after its uploader
// began multipart uploads that it could neither complete nor abort: the
// journal records them, and the next Start aborts them before sending
// the file again, so none is left open.
func TestWriteBackRestartAbortsUploads(t *testing.T) {
	fx := newFixture(t, nil)
	dir := t.TempDir()
	ks := &killable{Store: fx.st}
	completes := make(chan struct{}, 100)
	ks.hook = func(op string) error {
		switch op {
		case "CompleteMultipartUpload":
			completes <- struct{}{}
			return &store.Error{Op: op, Kind: store.ErrOther, Err: errors.New("injected")}
		case "AbortMultipartUpload":
			return &store.Error{Op: op, Kind: store.ErrOther, Err: errors.New("injected")}
		}
		return nil
	}
	m1, _ := newManager(t, Options{Store: ks, Dir: dir, WriteBack: true, PartSize: part, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond})
	data := randBytes(12*mib, 26)
	f, err := m1.Open("b", "mp", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, f, data, 0, mib)
	commit(t, f)
	f.Release()
	<-completes
	<-completes // a second attempt began another upload
	ks.dead.Store(true)
	killed(m1)
	open := fx.st.Uploads("b")
	if open < 2 {
		t.Fatalf("%d uploads open after the kill, want at least 2", open)
	}
	recs, _ := journalFiles(t, dir)
	var rec record
	if b, err := os.ReadFile(recs[0]); err != nil || json.Unmarshal(b, &rec) != nil {
		t.Fatal(err)
	}
	if len(rec.Uploads) != open {
		t.Errorf("the record names %d uploads, %d are open", len(rec.Uploads), open)
	}
	aborts := fx.st.Calls("AbortMultipartUpload")
	m2, _ := newManager(t, Options{Store: fx.st, Dir: dir, WriteBack: true, PartSize: part, RetryDelay: time.Millisecond})
	if n, err := m2.Start(context.Background()); err != nil || n != 1 {
		t.Fatalf("Start found %d, %v", n, err)
	}
	if got := fx.st.Calls("AbortMultipartUpload") - aborts; got < int64(open) {
		t.Errorf("Start aborted %d uploads, %d were open", got, open)
	}
	waitIdle(t, m2)
	fx.wantObject(t, "b", "mp", data)
	if n := fx.st.Uploads("b"); n != 0 {
		t.Errorf("%d multipart uploads left open", n)
	}
}

// TestWriteBackClose closes a Manager with a short deadline while the
// store refuses every write: Close returns how many uploads are left and
// they stay in the journal, where the next Start finds them.
func TestWriteBackClose(t *testing.T) {
	fx, failing := wbFixture(t, nil)
	failing.Store(true)
	m, _ := newManager(t, Options{Store: fx.st, Dir: fx.o.Dir + "/other", WriteBack: true, PartSize: part, RetryDelay: time.Millisecond})
	for _, key := range []string{"a", "b"} {
		f, err := m.Open("b", key, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeAt(t, f, []byte(key), 0, 1)
		commit(t, f)
		f.Release()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if left := m.Close(ctx); left != 2 {
		t.Fatalf("Close left %d, want 2", left)
	}
	if recs, data := journalFiles(t, fx.o.Dir+"/other"); len(recs) != 2 || len(data) != 2 {
		t.Fatalf("journal holds %v %v", recs, data)
	}
	failing.Store(false)
	m2, _ := newManager(t, Options{Store: fx.st, Dir: fx.o.Dir + "/other", WriteBack: true, PartSize: part})
	if n, err := m2.Start(context.Background()); n != 2 || err != nil {
		t.Fatalf("Start found %d, %v", n, err)
	}
	waitIdle(t, m2)
	fx.wantObject(t, "b", "a", []byte("a"))
	fx.wantObject(t, "b", "b", []byte("b"))
}

// TestWriteBackRecoveredWrite writes to a file recovered at start while
// its upload is pending: the journal's data stays for the pending
// upload, and the new version is what the store ends with.
func TestWriteBackRecoveredWrite(t *testing.T) {
	fx := newFixture(t, nil)
	dir := t.TempDir()
	ks := &killable{Store: fx.st}
	ks.dead.Store(true)
	m1, _ := newManager(t, Options{Store: ks, Dir: dir, WriteBack: true, PartSize: part, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond})
	v1 := randBytes(6*mib, 32)
	f1, err := m1.Open("b", "r", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, f1, v1, 0, mib)
	commit(t, f1)
	f1.Release()
	killed(m1)

	var down atomic.Bool
	down.Store(true)
	fx.st.SetFailure(failing(&down, store.ErrUnreachable, writeOps...))
	m2, _ := newManager(t, Options{Store: fx.st, Dir: dir, WriteBack: true, PartSize: part, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond})
	if n, err := m2.Start(context.Background()); n != 1 || err != nil {
		t.Fatalf("Start found %d, %v", n, err)
	}
	f := m2.Acquire("b", "r")
	if f == nil {
		t.Fatal("the recovered file is not found")
	}
	defer f.Release()
	if got := readAll(t, f); !bytes.Equal(got, v1) {
		t.Fatal("the recovered file reads other bytes")
	}
	_, data := journalFiles(t, dir)
	writeAt(t, f, []byte("v2"), 0, 2)
	if !exists(data[0]) {
		t.Fatal("a write to the recovered file removed the journal's data")
	}
	v2 := bytes.Clone(v1)
	copy(v2, "v2")
	commit(t, f)
	down.Store(false)
	waitFile(t, f)
	fx.wantObject(t, "b", "r", v2)
	if recs, data := journalFiles(t, dir); len(recs)+len(data) != 0 {
		t.Errorf("journal still holds %v %v", recs, data)
	}
}
