package write

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// TestWriteBackRenameThenRewrite renames a pending file opened on an
// existing object, then changes it again before the first upload lands:
// the second entry supersedes the first, and must still delete the old
// name once it lands (the first entry's Drop), as a rename does.
func TestWriteBackRenameThenRewrite(t *testing.T) {
	fx, failing := wbFixture(t, nil)
	old := randBytes(3000, 40)
	base := fx.seed(t, "old", old, nil)
	f := fx.open(t, "old", OpenOptions{Base: &base})
	failing.Store(true)
	writeAt(t, f, []byte("first"), 10, 5)
	commit(t, f)
	if handled, err := f.RenamePending("b", "new"); !handled || err != nil {
		t.Fatalf("RenamePending: %v, %v", handled, err)
	}
	writeAt(t, f, []byte("second"), 100, 6)
	commit(t, f)
	want := bytes.Clone(old)
	copy(want[10:], "first")
	copy(want[100:], "second")
	failing.Store(false)
	waitFile(t, f)
	fx.wantObject(t, "b", "new", want)
	fx.wantAbsent(t, "b", "old")
}

// TestWriteBackRestartSupersededEntry kills a daemon while the journal
// holds two entries of one file, the older superseded by the newer (the
// older's uploader had not cleared it yet): the next start must not let
// the older version land after (over) the newer one.
func TestWriteBackRestartSupersededEntry(t *testing.T) {
	fx := newFixture(t, nil)
	dir := t.TempDir()
	ks := &killable{Store: fx.st}
	ks.dead.Store(true)
	m1, _ := newManager(t, Options{Store: ks, Dir: dir, WriteBack: true, PartSize: part, RetryDelay: time.Hour, MaxRetryDelay: time.Hour})
	f, err := m1.Open("b", "k", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := []byte("version one, stale")
	v2 := []byte("version two, the newest")
	writeAt(t, f, v1, 0, len(v1))
	commit(t, f)
	// The crash comes after the second entry is recorded and before the
	// first one's uploader removed its record: keep a copy of it.
	recs, _ := journalFiles(t, dir)
	if len(recs) != 1 {
		t.Fatalf("journal holds %d records", len(recs))
	}
	id := recs[0][len(dir)+len("/journal/") : len(recs[0])-len(".json")]
	saved := saveEntry(t, m1.journal, id)
	writeAt(t, f, v2, 0, len(v2))
	f.Truncate(context.Background(), int64(len(v2)))
	commit(t, f)
	f.Release()
	killed(m1)
	saved.restore(t)
	if recs, _ := journalFiles(t, dir); len(recs) != 2 {
		t.Fatalf("journal holds %d records, want 2", len(recs))
	}
	// The newer version lands first; the older one, if sent, after it.
	slow := &slowPut{Store: fx.st, slow: v1}
	m2, _ := newManager(t, Options{Store: slow, Dir: dir, WriteBack: true, PartSize: part, RetryDelay: time.Millisecond})
	if _, err := m2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, m2)
	fx.wantObject(t, "b", "k", v2)
	// Pending() turns 0 before the landed entry's files go: poll.
	for deadline := time.Now().Add(wait); ; time.Sleep(time.Millisecond) {
		recs, data := journalFiles(t, dir)
		if len(recs)+len(data) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal still holds %v %v", recs, data)
		}
	}
}

// savedEntry is a copy of a journal entry's files.
type savedEntry struct {
	j         *journal
	id        string
	rec, data []byte
}

func saveEntry(t *testing.T, j *journal, id string) savedEntry {
	t.Helper()
	rec, err := os.ReadFile(j.recPath(id))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(j.dataPath(id))
	if err != nil {
		t.Fatal(err)
	}
	return savedEntry{j: j, id: id, rec: rec, data: data}
}

// restore puts the entry's files back as they were saved.
func (s savedEntry) restore(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(s.j.recPath(s.id), s.rec, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.j.dataPath(s.id), s.data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// slowPut is a store whose PUT of the bytes slow waits a while, so that
// any other PUT sent at the same time lands first.
type slowPut struct {
	store.Store
	slow []byte
}

func (s *slowPut) Put(ctx context.Context, in store.PutInput) (*store.Object, error) {
	b, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	if _, err := in.Body.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if bytes.Equal(b, s.slow) {
		time.Sleep(300 * time.Millisecond)
	}
	return s.Store.Put(ctx, in)
}
