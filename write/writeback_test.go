package write

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// wbFixture is a write-back Manager over a fake whose writes fail while
// failing is set.
func wbFixture(t *testing.T, opt func(*Options)) (*fixture, *atomic.Bool) {
	t.Helper()
	fx := newFixture(t, func(o *Options) {
		o.WriteBack = true
		if opt != nil {
			opt(o)
		}
	})
	var on atomic.Bool
	fx.st.SetFailure(failing(&on, store.ErrUnreachable, writeOps...))
	return fx, &on
}

// TestWriteBackCommitFirst commits files under write-back while the
// store fails every write: Commit returns at once with nothing stored,
// the journal holds the entry (record and data), the file shows as
// pending; once the fault is gone the uploader stores the exact bytes and
// empties the journal.
func TestWriteBackCommitFirst(t *testing.T) {
	tests := []struct {
		name string
		size int
		base bool
	}{
		{"small new", 1000, false},
		{"empty", 0, false},
		{"large new", 17 * mib, false},
		{"large on a base", 23 * mib, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx, failing := wbFixture(t, nil)
			failing.Store(true)
			want := randBytes(tt.size, 20)
			var o OpenOptions
			if tt.base {
				base := fx.seed(t, "w", want, nil)
				o.Base = &base
				want = bytes.Clone(want)
			}
			f := fx.open(t, "w", o)
			if tt.base {
				p := randBytes(5000, 21)
				copy(want[7*mib:], p)
				writeAt(t, f, p, 7*mib, 5000)
			} else {
				writeAt(t, f, want, 0, mib)
			}
			obj := commit(t, f)
			if obj.ETag != "" || obj.Size != int64(tt.size) {
				t.Errorf("commit returned %+v", obj)
			}
			if !tt.base {
				fx.wantAbsent(t, "b", "w")
			}
			recs, data := journalFiles(t, fx.o.Dir)
			if len(recs) != 1 || len(data) != 1 {
				t.Fatalf("journal holds records %v, data %v", recs, data)
			}
			var rec record
			if b, err := os.ReadFile(recs[0]); err != nil || json.Unmarshal(b, &rec) != nil || rec.Key != "w" || rec.Size != int64(tt.size) {
				t.Fatalf("record %+v (%v)", rec, err)
			}
			if pending, size := f.Pending(); !pending || size != int64(tt.size) {
				t.Errorf("Pending() = %v, %d", pending, size)
			}
			if n, _ := fx.m.Pending(); n != 1 {
				t.Errorf("the manager has %d pending", n)
			}
			if got := readAll(t, f); !bytes.Equal(got, want) {
				t.Errorf("the pending file reads other bytes (at %d)", firstDiff(got, want))
			}
			failing.Store(false)
			waitFile(t, f)
			fx.wantObject(t, "b", "w", want)
			if recs, data := journalFiles(t, fx.o.Dir); len(recs)+len(data) != 0 {
				t.Errorf("journal still holds %v %v", recs, data)
			}
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
			if pending, _ := f.Pending(); pending || f.Changed() {
				t.Error("the file is still pending or changed")
			}
			if got := readAll(t, f); !bytes.Equal(got, want) {
				t.Errorf("the stored file reads other bytes (at %d)", firstDiff(got, want))
			}
		})
	}
}

// TestWriteBackRenamePending renames files whose upload is pending: the
// object lands under the new name only. A file opened on an existing
// object has its old name deleted once it lands, unless someone wrote
// that name again meanwhile; a rename to another bucket copies the
// unchanged parts from the old one.
func TestWriteBackRenamePending(t *testing.T) {
	tests := []struct {
		name      string
		base      int // size of the original object; 0: a new file
		rewritten bool
		toBucket  string
		exclusive bool
	}{
		{"new file", 0, false, "b", false},
		{"new O_EXCL file", 0, false, "b", true},
		{"small base", 1000, false, "b", false},
		{"large base", 17 * mib, false, "b", false},
		{"large base, old name written again", 17 * mib, true, "b", false},
		{"large base, other bucket", 17 * mib, false, "b2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx, failing := wbFixture(t, nil)
			fx.st.CreateBucket("b2")
			fx.seed(t, "new", []byte("the rename's target, replaced"), nil)
			o := OpenOptions{Exclusive: tt.exclusive}
			want := randBytes(3000, 27)
			if tt.base > 0 {
				want = randBytes(tt.base, 28)
				base := fx.seed(t, "old", want, nil)
				o.Base = &base
				want = bytes.Clone(want)
				copy(want[500:], "changed")
			}
			f := fx.open(t, "old", o)
			failing.Store(true)
			if tt.base > 0 {
				writeAt(t, f, []byte("changed"), 500, 7)
			} else {
				writeAt(t, f, want, 0, 1000)
			}
			commit(t, f)
			handled, err := f.RenamePending(tt.toBucket, "new")
			if !handled || err != nil {
				t.Fatalf("RenamePending: %v, %v", handled, err)
			}
			if b, k := f.Name(); b != tt.toBucket || k != "new" {
				t.Errorf("the file is named %s/%s", b, k)
			}
			var other []byte
			if tt.rewritten {
				// Someone writes the old name as the file lands under the
				// new one (before, it would be a change of the base: a
				// conflict).
				other = []byte("someone else's")
				fx.st.SetFailure(func(op, bucket, key string) error {
					if key == "new" && (op == "PutObject" || op == "CompleteMultipartUpload") {
						fx.st.Seed("b", "old", other)
					}
					return nil
				})
			}
			failing.Store(false)
			waitFile(t, f)
			fx.wantObject(t, tt.toBucket, "new", want)
			if tt.rewritten {
				fx.wantObject(t, "b", "old", other)
			} else {
				fx.wantAbsent(t, "b", "old")
			}
			if n := fx.st.Uploads("b") + fx.st.Uploads("b2"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
			if handled, _ := f.RenamePending("b", "again"); handled {
				t.Error("RenamePending of a file with nothing pending reports it handled")
			}
		})
	}
}

// TestWriteBackWriteWhilePending writes to a file whose upload is under
// way: the write makes a private copy, so the pending upload stores the
// bytes committed first (seen in the store while the second version's
// upload waits), and the second commit's version is what stays.
func TestWriteBackWriteWhilePending(t *testing.T) {
	for _, size := range []int{1000, 12 * mib} {
		fx, _ := wbFixture(t, nil)
		landOp := "PutObject"
		if size > part {
			landOp = "CompleteMultipartUpload"
		}
		firstIn, firstGo := make(chan struct{}), make(chan struct{})
		secondIn := make(chan []byte, 1)
		var calls atomic.Int32
		fx.st.SetFailure(func(op, bucket, key string) error {
			if op != landOp {
				return nil
			}
			switch calls.Add(1) {
			case 1:
				close(firstIn)
				<-firstGo
			case 2:
				got, _ := fx.object(t, "b", "p")
				secondIn <- got
			}
			return nil
		})
		v1 := randBytes(size, 29)
		f := fx.open(t, "p", OpenOptions{})
		writeAt(t, f, v1, 0, mib)
		commit(t, f)
		<-firstIn // the first version's upload is under way
		v2 := bytes.Clone(v1)
		copy(v2[10:], "second version")
		v2 = append(v2, "and more"...)
		writeAt(t, f, []byte("second version"), 10, 100)
		writeAt(t, f, []byte("and more"), int64(size), 100)
		commit(t, f)
		if got := readAll(t, f); !bytes.Equal(got, v2) {
			t.Fatalf("size %d: the file reads other bytes after the second commit (at %d)", size, firstDiff(got, v2))
		}
		close(firstGo)
		if got := <-secondIn; !bytes.Equal(got, v1) {
			t.Errorf("size %d: the first version landed with other bytes (at %d)", size, firstDiff(got, v1))
		}
		waitFile(t, f)
		fx.wantObject(t, "b", "p", v2)
		if recs, data := journalFiles(t, fx.o.Dir); len(recs)+len(data) != 0 {
			t.Errorf("size %d: journal still holds %v %v", size, recs, data)
		}
		if n := fx.st.Uploads("b"); n != 0 {
			t.Errorf("size %d: %d multipart uploads left open", size, n)
		}
	}
}

// TestWriteBackStreamHandoff writes large files in order under
// write-back: the parts that went up while writing are used by the
// upload after the commit, so every byte is uploaded once, no upload is
// left open, and the object is exact; a part rewritten after it went up
// is sent again.
func TestWriteBackStreamHandoff(t *testing.T) {
	tests := []struct {
		name      string
		rewriteAt int64
		wantBytes int64
	}{
		{"in order", -1, 22 * mib},
		{"rewrite near 0", 3, 27 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx, _ := wbFixture(t, nil)
			data := randBytes(22*mib, 30)
			f := fx.open(t, "s", OpenOptions{})
			writeAt(t, f, data, 0, 256<<10)
			settle(f)
			if tt.rewriteAt >= 0 {
				copy(data[tt.rewriteAt:], "rewritten")
				writeAt(t, f, []byte("rewritten"), tt.rewriteAt, 10)
			}
			commit(t, f)
			waitFile(t, f)
			fx.wantObject(t, "b", "s", data)
			if n := fx.st.PartBytes(); n != tt.wantBytes {
				t.Errorf("%d bytes uploaded, want %d", n, tt.wantBytes)
			}
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
			if n := fx.st.Calls("CreateMultipartUpload"); n != 1 {
				t.Errorf("%d multipart uploads begun, want 1", n)
			}
		})
	}
}

// TestWriteBackInterrupts makes a pending upload fail once and wait a
// retry delay of an hour: a newer commit, a rename, an unlink and a
// metadata change each end the wait at once (the test would time out
// otherwise), with the right outcome in the store.
func TestWriteBackInterrupts(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, f *File)
		key    string // where the object lands; "" for nowhere
		want   []byte
		meta   map[string]string
	}{
		{"newer commit", func(t *testing.T, f *File) {
			writeAt(t, f, []byte("v2"), 0, 2)
			commit(t, f)
		}, "i", []byte("v2"), nil},
		{"rename", func(t *testing.T, f *File) {
			if ok, err := f.RenamePending("b", "j"); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}, "j", []byte("v1"), nil},
		{"metadata", func(t *testing.T, f *File) {
			f.SetMetadata(map[string]string{"x": "y"})
			commit(t, f)
		}, "i", []byte("v1"), map[string]string{"x": "y"}},
		{"unlink", func(t *testing.T, f *File) { f.Remove() }, "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx, _ := wbFixture(t, func(o *Options) { o.RetryDelay, o.MaxRetryDelay = time.Hour, time.Hour })
			failed := make(chan struct{})
			var once atomic.Bool
			fx.st.SetFailure(func(op, bucket, key string) error {
				if op == "PutObject" && once.CompareAndSwap(false, true) {
					defer close(failed)
					return &store.Error{Op: op, Kind: store.ErrOther, Err: errors.New("injected")}
				}
				return nil
			})
			f := fx.open(t, "i", OpenOptions{})
			writeAt(t, f, []byte("v1"), 0, 2)
			commit(t, f)
			<-failed
			tt.change(t, f)
			waitFile(t, f)
			if tt.key == "" {
				fx.wantAbsent(t, "b", "i")
				return
			}
			got := fx.wantObject(t, "b", tt.key, tt.want)
			if tt.meta != nil && !maps.Equal(got.Metadata, tt.meta) {
				t.Errorf("metadata %v, want %v", got.Metadata, tt.meta)
			}
			if tt.key != "i" {
				fx.wantAbsent(t, "b", "i")
			}
		})
	}
}

// TestWriteBackConflict commits, under write-back, a change to an object
// that someone else replaced meanwhile (and an O_EXCL create of a name
// taken meanwhile): the failed precondition is final, so the entry moves
// to the journal's conflicts directory at once (the retry delay is an
// hour) and the other writer's object stays.
func TestWriteBackConflict(t *testing.T) {
	for _, exclusive := range []bool{false, true} {
		fx, _ := wbFixture(t, func(o *Options) { o.RetryDelay, o.MaxRetryDelay = time.Hour, time.Hour })
		o := OpenOptions{Exclusive: exclusive}
		if !exclusive {
			base := fx.seed(t, "c", randBytes(12*mib, 31), nil)
			o.Base = &base
		}
		f := fx.open(t, "c", o)
		writeAt(t, f, []byte("mine"), 0, 4)
		other := []byte("theirs")
		fx.seed(t, "c", other, nil) // before the commit, which asks nothing of the store
		commit(t, f)
		waitFile(t, f)
		fx.wantObject(t, "b", "c", other)
		if recs, _ := journalFiles(t, fx.o.Dir); len(recs) != 0 {
			t.Errorf("exclusive %v: journal still holds %v", exclusive, recs)
		}
		conflicts, _ := filepath.Glob(filepath.Join(fx.o.Dir, "journal", "conflicts", "*.json"))
		if len(conflicts) != 1 {
			t.Errorf("exclusive %v: conflicts directory holds %v", exclusive, conflicts)
		}
		if n := fx.st.Uploads("b"); n != 0 {
			t.Errorf("exclusive %v: %d multipart uploads left open", exclusive, n)
		}
	}
}

// TestWriteBackExclusiveChangedWhileLanding changes the metadata of an
// O_EXCL file while its first upload is landing: the upload is sent
// again with the new metadata, as a plain write (it is this file's name
// now), instead of failing its own If-None-Match as a conflict.
func TestWriteBackExclusiveChangedWhileLanding(t *testing.T) {
	fx, _ := wbFixture(t, nil)
	var f *File
	var once atomic.Bool
	fx.st.SetFailure(func(op, bucket, key string) error {
		if op == "PutObject" && once.CompareAndSwap(false, true) {
			f.SetMetadata(map[string]string{"late": "1"})
			if _, err := f.Commit(context.Background()); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	f = fx.open(t, "x", OpenOptions{Exclusive: true})
	writeAt(t, f, []byte("data"), 0, 4)
	commit(t, f)
	waitFile(t, f)
	got := fx.wantObject(t, "b", "x", []byte("data"))
	if got.Metadata["late"] != "1" {
		t.Errorf("metadata %v", got.Metadata)
	}
	if conflicts, _ := filepath.Glob(filepath.Join(fx.o.Dir, "journal", "conflicts", "*")); len(conflicts) != 0 {
		t.Errorf("the file's own object was taken for a conflict: %v", conflicts)
	}
}

// TestWriteBackUnlinkPending unlinks a file whose upload is pending and
// failing: Wait returns once the uploader let it go, nothing lands, and
// the journal is empty.
func TestWriteBackUnlinkPending(t *testing.T) {
	fx, failing := wbFixture(t, nil)
	failing.Store(true)
	f := fx.open(t, "u", OpenOptions{})
	writeAt(t, f, randBytes(12*mib, 33), 0, mib)
	commit(t, f)
	f.Remove()
	waitFile(t, f)
	failing.Store(false)
	fx.wantAbsent(t, "b", "u")
	if recs, data := journalFiles(t, fx.o.Dir); len(recs)+len(data) != 0 {
		t.Errorf("journal still holds %v %v", recs, data)
	}
	if n, _ := fx.m.Pending(); n != 0 {
		t.Errorf("%d pending", n)
	}
}

// TestWriteBackConcurrency commits, writes and renames files under
// write-back from several goroutines while others list the pending files
// (Pending, Lookup, PendingIn: Manager.mu then File.mu) and uploads land:
// nothing deadlocks, the pending set holds exactly the files with an
// entry, and each file's last version is stored.
func TestWriteBackConcurrency(t *testing.T) {
	fx, _ := wbFixture(t, nil)
	stop := make(chan struct{})
	var files [4]atomic.Pointer[File]
	var lookers sync.WaitGroup
	for range 2 {
		lookers.Add(1)
		go func() {
			defer lookers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				fx.m.Pending()
				fx.m.PendingIn("b", "")
				if f := fx.m.Lookup("b", "f0"); f != nil {
					f.Pending()
				}
				var fs []*File
				for i := range files {
					if f := files[i].Load(); f != nil {
						fs = append(fs, f)
					}
				}
				checkInvariants(t, fx.m, fs...)
			}
		}()
	}
	var writers sync.WaitGroup
	final := make([][]byte, len(files))
	for i := range final {
		writers.Add(1)
		go func() {
			defer writers.Done()
			key := "f" + string(rune('0'+i))
			f, err := fx.m.Open("b", key, OpenOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			files[i].Store(f)
			defer f.Release()
			var data []byte
			for v := range 30 {
				p := randBytes(1000+v, byte(i*40+v))
				if _, err := f.WriteAt(context.Background(), p, int64(len(data))); err != nil {
					t.Error(err)
					return
				}
				data = append(data, p...)
				if _, err := f.Commit(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
			final[i] = data
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := f.Wait(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	writers.Wait()
	close(stop)
	lookers.Wait()
	waitIdle(t, fx.m)
	for i, data := range final {
		if data != nil {
			fx.wantObject(t, "b", "f"+string(rune('0'+i)), data)
		}
	}
}
