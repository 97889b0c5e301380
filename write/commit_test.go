package write

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// TestCommitSmallFile writes new files no larger than one part and
// commits them: each is one PutObject with exactly its bytes and
// metadata, and nothing else is asked of the store; the empty file too.
func TestCommitSmallFile(t *testing.T) {
	tests := []struct {
		name string
		size int
		meta map[string]string
	}{
		{"empty", 0, nil},
		{"one byte", 1, map[string]string{"mtime": "1"}},
		{"a few KiB", 5000, map[string]string{"mode": "100600", "uid": "7"}},
		{"exactly one part", part, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			f := fx.open(t, "k", OpenOptions{Metadata: tt.meta})
			data := randBytes(tt.size, 1)
			writeAt(t, f, data, 0, 64<<10)
			o := commit(t, f)
			for _, op := range []string{"CreateMultipartUpload", "UploadPart", "CopyObject", "GetObject"} {
				if n := fx.st.Calls(op); n != 0 {
					t.Errorf("%d %s requests", n, op)
				}
			}
			got := fx.wantObject(t, "b", "k", data)
			if !maps.Equal(got.Metadata, tt.meta) || !maps.Equal(o.Metadata, tt.meta) {
				t.Errorf("metadata %v (commit says %v), want %v", got.Metadata, o.Metadata, tt.meta)
			}
			if o.ETag != got.ETag || o.Size != int64(tt.size) {
				t.Errorf("commit returned %+v, store has ETag %s", o, got.ETag)
			}
			if n := fx.st.Calls("PutObject"); n != 1 {
				t.Errorf("%d PutObject requests, want 1", n)
			}
			if f.Changed() {
				t.Error("the file is still changed after its commit")
			}
			commit(t, f) // nothing changed: nothing sent
			if n := fx.st.Calls("PutObject"); n != 1 {
				t.Errorf("a second commit of an unchanged file made %d PutObject requests in all", n)
			}
		})
	}
}

// TestCommitExclusive creates files with O_EXCL (Exclusive). On a name
// that exists the commit fails with ErrPreconditionFailed and the object
// is left as it was, whether the server supports If-None-Match or not;
// without it the fallback (a HEAD) is logged once and later creates go
// straight to it. A free name is created.
func TestCommitExclusive(t *testing.T) {
	tests := []struct {
		name   string
		noCond bool
		size   int
	}{
		{"conditional PUT", false, 100},
		{"conditional complete", false, 12 * mib},
		{"no conditional writes, PUT", true, 100},
		{"no conditional writes, complete", true, 12 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.st.SetNoConditionalWrites(tt.noCond)
			old := []byte("someone else's")
			fx.seed(t, "taken", old, nil)
			f := fx.open(t, "taken", OpenOptions{Exclusive: true})
			writeAt(t, f, randBytes(tt.size, 2), 0, mib)
			_, err := f.Commit(context.Background())
			if !errors.Is(err, store.ErrPreconditionFailed) {
				t.Fatalf("commit over an existing name: %v, want ErrPreconditionFailed", err)
			}
			var se *store.Error
			if !errors.As(err, &se) || (se.Op != "PutObject" && se.Op != "CompleteMultipartUpload") {
				t.Errorf("the error does not name the create (%v): the caller cannot tell EEXIST from ESTALE", err)
			}
			fx.wantObject(t, "b", "taken", old)
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
			puts := fx.st.Calls("PutObject") + fx.st.Calls("CompleteMultipartUpload")

			data := randBytes(tt.size, 3)
			g := fx.open(t, "free", OpenOptions{Exclusive: true})
			writeAt(t, g, data, 0, mib)
			commit(t, g)
			fx.wantObject(t, "b", "free", data)
			warned := 0
			for _, e := range fx.logs.AllEntries() {
				if e.Level == logrus.WarnLevel && bytes.Contains([]byte(e.Message), []byte("If-None-Match")) {
					warned++
				}
			}
			wantWarn, wantWrites := 0, int64(1)
			if tt.noCond {
				// The refused condition was tried once, for the first file.
				wantWarn = 1
			}
			if warned != wantWarn {
				t.Errorf("%d warnings about If-None-Match, want %d", warned, wantWarn)
			}
			if got := fx.st.Calls("PutObject") + fx.st.Calls("CompleteMultipartUpload") - puts; got != wantWrites {
				t.Errorf("the second create made %d PUT/complete requests, want %d", got, wantWrites)
			}
		})
	}
}

// TestCommitFailure makes one kind of request fail: the commit returns
// the error (wrapping the store's kind: 403 is ErrAccessDenied), aborts
// its multipart upload, leaves nothing new under the key, and succeeds
// with the exact bytes once the fault is gone.
func TestCommitFailure(t *testing.T) {
	tests := []struct {
		name string
		op   string
		kind error
		size int
		base bool
	}{
		{"PutObject", "PutObject", store.ErrOther, 100, false},
		{"CreateMultipartUpload", "CreateMultipartUpload", store.ErrOther, 12 * mib, false},
		{"UploadPart", "UploadPart", store.ErrOther, 12 * mib, false},
		{"UploadPartCopy", "UploadPartCopy", store.ErrOther, 12 * mib, true},
		{"CompleteMultipartUpload", "CompleteMultipartUpload", store.ErrOther, 12 * mib, false},
		{"GetObject of the base", "GetObject", store.ErrOther, 12 * mib, true},
		{"403 on PUT", "PutObject", store.ErrAccessDenied, 100, false},
		{"403 on UploadPart", "UploadPart", store.ErrAccessDenied, 20 * mib, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			var on atomic.Bool
			on.Store(true)
			fx.st.SetFailure(failing(&on, tt.kind, tt.op))
			var o OpenOptions
			want := randBytes(tt.size, 11)
			var old []byte
			if tt.base {
				old = bytes.Clone(want)
				base := fx.seed(t, "f", old, nil)
				o.Base = &base
			}
			f := fx.open(t, "f", o)
			if tt.base {
				p := randBytes(1000, 12)
				copy(want[part+5:], p)
				writeAt(t, f, p, part+5, 1000)
			} else {
				writeAt(t, f, want, 0, mib) // parts stream while writing
			}
			for i := 0; i < 2; i++ { // the first retry still fails
				_, err := f.Commit(context.Background())
				if !errors.Is(err, tt.kind) {
					t.Fatalf("commit %d: %v, want %v", i, err, tt.kind)
				}
				on.Store(false) // for the test's own requests
				if n := fx.st.Uploads("b"); n != 0 {
					t.Fatalf("%d multipart uploads left open after a failed commit", n)
				}
				if old != nil {
					fx.wantObject(t, "b", "f", old)
				} else {
					fx.wantAbsent(t, "b", "f")
				}
				on.Store(true)
			}
			on.Store(false)
			commit(t, f)
			fx.wantObject(t, "b", "f", want)
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
		})
	}
}

// TestMetadataOnly changes only the metadata of a file opened on an
// object: the commit is one CopyObject that replaces the metadata, with
// no upload and no read of the bytes.
func TestMetadataOnly(t *testing.T) {
	for _, size := range []int{10, 12 * mib} {
		fx := newFixture(t, nil)
		data := randBytes(size, 13)
		base := fx.seed(t, "m", data, map[string]string{"mtime": "1", "mode": "100644"})
		f := fx.open(t, "m", OpenOptions{Base: &base})
		f.SetMetadata(map[string]string{"mtime": "2", "mode": ""})
		o := commit(t, f)
		got := fx.wantObject(t, "b", "m", data)
		want := map[string]string{"mtime": "2"}
		if !maps.Equal(got.Metadata, want) || !maps.Equal(o.Metadata, want) {
			t.Errorf("size %d: metadata %v (commit says %v), want %v", size, got.Metadata, o.Metadata, want)
		}
		for _, op := range []string{"PutObject", "UploadPart", "CreateMultipartUpload", "UploadPartCopy"} {
			if n := fx.st.Calls(op); n != 0 {
				t.Errorf("size %d: %d %s requests", size, n, op)
			}
		}
		if n := fx.st.Calls("CopyObject"); n != 1 {
			t.Errorf("size %d: %d CopyObject requests, want 1", size, n)
		}
		if n := fx.st.Calls("GetObject"); n != 1 { // the test's own
			t.Errorf("size %d: the commit read the object (%d GETs)", size, n-1)
		}
	}
}

// TestSetMetadataDuringCommit changes the metadata while a commit's PUT
// is under way: the commit stores the metadata it started with, the file
// stays changed, and the next commit stores the new metadata (a copy).
func TestSetMetadataDuringCommit(t *testing.T) {
	fx := newFixture(t, nil)
	inPut, release := make(chan struct{}), make(chan struct{})
	fx.st.SetFailure(func(op, bucket, key string) error {
		if op == "PutObject" {
			close(inPut)
			<-release
		}
		return nil
	})
	f := fx.open(t, "m", OpenOptions{Metadata: map[string]string{"a": "1"}})
	writeAt(t, f, []byte("data"), 0, 4)
	done := make(chan error, 1)
	go func() {
		_, err := f.Commit(context.Background())
		done <- err
	}()
	<-inPut
	f.SetMetadata(map[string]string{"b": "2"})
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fx.st.SetFailure(nil)
	if !f.Changed() {
		t.Fatal("a metadata change made during the commit was dropped")
	}
	commit(t, f)
	got := fx.wantObject(t, "b", "m", []byte("data"))
	if want := map[string]string{"a": "1", "b": "2"}; !maps.Equal(got.Metadata, want) {
		t.Errorf("metadata %v, want %v", got.Metadata, want)
	}
	if n := fx.st.Calls("CopyObject"); n != 1 {
		t.Errorf("%d CopyObject requests, want 1", n)
	}
}

// TestCopy copies objects server-side: one CopyObject up to the copy
// limit, a multipart copy above it (the limit is lowered to 12 MiB with
// 5 MiB parts, so the branch runs on a 13 MiB object) that carries the
// source's metadata; a source changed since it was seen fails with
// ErrPreconditionFailed and leaves no upload.
func TestCopy(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		changed   bool
		wantCopy  int64
		wantParts int64
	}{
		{"one CopyObject", 3 * mib, false, 1, 0},
		{"multipart copy", 13 * mib, false, 0, 3},
		{"multipart copy, source changed", 13 * mib, true, 0, 0},
		{"CopyObject, source changed", 3 * mib, true, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.m.copyLimit, fx.m.copyPart = 12*mib, part
			data := randBytes(tt.size, 14)
			meta := map[string]string{"mtime": "9"}
			src := fx.seed(t, "src", data, meta)
			src.Metadata = nil // as a listing gives it
			if tt.changed {
				fx.seed(t, "src", randBytes(tt.size, 15), meta)
			}
			o, err := fx.m.Copy(context.Background(), CopySpec{SrcBucket: "b", Src: src, Bucket: "b", Key: "dst"})
			if tt.changed {
				if !errors.Is(err, store.ErrPreconditionFailed) {
					t.Fatalf("copy of a changed source: %v", err)
				}
				fx.wantAbsent(t, "b", "dst")
			} else {
				if err != nil {
					t.Fatal(err)
				}
				got := fx.wantObject(t, "b", "dst", data)
				if !maps.Equal(got.Metadata, meta) || o.Size != int64(tt.size) || o.ETag != got.ETag {
					t.Errorf("copy has metadata %v, returned %+v", got.Metadata, o)
				}
			}
			if n := fx.st.Calls("CopyObject"); n != tt.wantCopy {
				t.Errorf("%d CopyObject requests, want %d", n, tt.wantCopy)
			}
			if n := fx.st.Calls("UploadPartCopy"); !tt.changed && n != tt.wantParts {
				t.Errorf("%d UploadPartCopy requests, want %d", n, tt.wantParts)
			}
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
		})
	}
}

// TestLimits checks the refusals: ENOSPC when the staging disk is below
// MinFree, EFBIG past S3's 5 TiB, ENAMETOOLONG for a 1025-byte key.
func TestLimits(t *testing.T) {
	long := string(bytes.Repeat([]byte("k"), store.MaxKeyLen+1))
	tests := []struct {
		name string
		opt  func(*Options)
		do   func(fx *fixture, f *File) error
		want error
	}{
		{"ENOSPC below MinFree", func(o *Options) { o.MinFree = 1 << 62 }, func(fx *fixture, f *File) error {
			_, err := f.WriteAt(context.Background(), []byte("x"), 0)
			return err
		}, syscall.ENOSPC},
		{"EFBIG write at 5 TiB", nil, func(fx *fixture, f *File) error {
			_, err := f.WriteAt(context.Background(), []byte("x"), store.MaxObjectSize)
			return err
		}, syscall.EFBIG},
		{"EFBIG write across 5 TiB", nil, func(fx *fixture, f *File) error {
			_, err := f.WriteAt(context.Background(), []byte("xy"), store.MaxObjectSize-1)
			return err
		}, syscall.EFBIG},
		{"EFBIG truncate past 5 TiB", nil, func(fx *fixture, f *File) error {
			return f.Truncate(context.Background(), store.MaxObjectSize+1)
		}, syscall.EFBIG},
		{"ENAMETOOLONG open", nil, func(fx *fixture, f *File) error {
			_, err := fx.m.Open("b", long, OpenOptions{})
			return err
		}, syscall.ENAMETOOLONG},
		{"ENAMETOOLONG empty object", nil, func(fx *fixture, f *File) error {
			_, err := fx.m.PutEmpty(context.Background(), "b", long, nil, false)
			return err
		}, syscall.ENAMETOOLONG},
		{"ENAMETOOLONG copy", nil, func(fx *fixture, f *File) error {
			_, err := fx.m.Copy(context.Background(), CopySpec{SrcBucket: "b", Src: store.Object{Key: "k"}, Bucket: "b", Key: long})
			return err
		}, syscall.ENAMETOOLONG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.opt)
			f := fx.open(t, "k", OpenOptions{})
			if err := tt.do(fx, f); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if f.Size() != 0 {
				t.Errorf("a refused change left the size at %d", f.Size())
			}
		})
	}
	// A key of exactly 1024 bytes is fine.
	fx := newFixture(t, nil)
	f := fx.open(t, long[1:], OpenOptions{})
	writeAt(t, f, []byte("x"), 0, 1)
	commit(t, f)
	fx.wantObject(t, "b", long[1:], []byte("x"))
}

// TestRemoveDuringCommit unlinks a file while its commit's request is
// under way: Wait returns only once the commit ended, so a delete after
// it leaves nothing in the store, and the commit reports no error (an
// unlinked file has nothing to store).
func TestRemoveDuringCommit(t *testing.T) {
	for _, tt := range []struct {
		name, op string
		size     int
	}{{"PUT", "PutObject", 100}, {"multipart", "CompleteMultipartUpload", 12 * mib}} {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			in, release := make(chan struct{}), make(chan struct{})
			fx.st.SetFailure(func(op, bucket, key string) error {
				if op == tt.op {
					close(in)
					<-release
				}
				return nil
			})
			f := fx.open(t, "u", OpenOptions{})
			writeAt(t, f, randBytes(tt.size, 17), 0, mib)
			done := make(chan error, 1)
			go func() {
				_, err := f.Commit(context.Background())
				done <- err
			}()
			<-in
			f.Remove()
			cancelled, cancel := context.WithCancel(context.Background())
			cancel()
			if err := f.Wait(cancelled); err == nil {
				t.Fatal("Wait reports nothing on its way while the commit's request runs")
			}
			waited := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				waited <- f.Wait(ctx)
			}()
			close(release)
			if err := <-waited; err != nil {
				t.Fatal(err)
			}
			if err := fx.m.Delete(context.Background(), "b", "u"); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("commit of a removed file: %v", err)
			}
			fx.wantAbsent(t, "b", "u")
			// An unlinked file still takes writes (never stored).
			if _, err := f.WriteAt(context.Background(), []byte("x"), 0); err != nil {
				t.Errorf("write to a removed file: %v", err)
			}
			if _, err := f.Commit(context.Background()); err != nil {
				t.Errorf("commit of a removed file: %v", err)
			}
			fx.wantAbsent(t, "b", "u")
		})
	}
}

// TestReleaseDropsUncommitted lets go of files whose changes were never
// stored (the commit failed, or none came) while parts had gone up: the
// last Release removes the staging file and aborts the multipart upload.
func TestReleaseDropsUncommitted(t *testing.T) {
	for _, failCommit := range []bool{false, true} {
		fx := newFixture(t, nil)
		var on atomic.Bool
		fx.st.SetFailure(failing(&on, store.ErrOther, "CompleteMultipartUpload"))
		f, err := fx.m.Open("b", "d", OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f.Retain() // a second handle
		writeAt(t, f, randBytes(12*mib, 34), 0, mib)
		settle(f)
		if failCommit {
			on.Store(true)
			if _, err := f.Commit(context.Background()); err == nil {
				t.Fatal("the commit did not fail")
			}
			on.Store(false)
		} else if fx.st.Uploads("b") != 1 {
			t.Fatalf("%d uploads open while writing, want 1", fx.st.Uploads("b"))
		}
		if f.Release() {
			t.Fatal("the first of two releases dropped the file")
		}
		if !f.Release() {
			t.Fatal("the last release kept a file nobody holds")
		}
		if staged, _ := filepath.Glob(filepath.Join(fx.o.Dir, "staging", "*")); len(staged) != 0 {
			t.Errorf("commit failed %v: staging files left: %v", failCommit, staged)
		}
		if n := fx.st.Uploads("b"); n != 0 {
			t.Errorf("commit failed %v: %d multipart uploads left open", failCommit, n)
		}
		fx.wantAbsent(t, "b", "d")
	}
}

// TestRemovedFileStaysUsable: a removed (unlinked) file still takes
// writes and answers reads for whoever has it open, and its commit
// stores nothing.
func TestRemovedFileStaysUsable(t *testing.T) {
	fx := newFixture(t, nil)
	ctx := context.Background()
	f, err := fx.m.Open("b", "gone", OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	if _, err := f.WriteAt(ctx, []byte("before"), 0); err != nil {
		t.Fatal(err)
	}
	f.Remove()
	if _, err := f.WriteAt(ctx, []byte(" after"), 6); err != nil {
		t.Fatalf("write after remove: %v", err)
	}
	got := make([]byte, 12)
	if n, err := f.ReadAt(ctx, got, 0); err != nil || string(got[:n]) != "before after" {
		t.Fatalf("read after remove: %q, %v", got[:n], err)
	}
	if _, err := f.Commit(ctx); err != nil {
		t.Fatalf("commit after remove: %v", err)
	}
	if _, err := fx.st.Head(ctx, "b", "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a removed file was stored: %v", err)
	}
}
