package write

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// TestSequentialStreams writes 22 MiB in order in 256 KiB writes (5 MiB
// parts): parts go up while the file is written (the first UploadPart
// arrives before the writer goes on past part 2), the commit sends only
// the last part, every byte is uploaded once, and the object is exact.
// A rewrite near offset 0 after the parts went up sends part 1 again and
// nothing else.
func TestSequentialStreams(t *testing.T) {
	tests := []struct {
		name      string
		rewriteAt int64 // < 0: none
		wantParts int64 // UploadPart requests in all
		wantBytes int64
	}{
		{"in order", -1, 5, 22 * mib},
		{"rewrite near 0", 10, 6, 27 * mib},
		{"rewrite in part 3", 11 * mib, 6, 27 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			firstPart := make(chan struct{})
			var once atomic.Bool
			fx.st.SetFailure(func(op, bucket, key string) error {
				if op == "UploadPart" && once.CompareAndSwap(false, true) {
					close(firstPart)
				}
				return nil
			})
			data := randBytes(22*mib, 4)
			f := fx.open(t, "rec", OpenOptions{})
			writeAt(t, f, data[:part+1], 0, 256<<10)
			select {
			case <-firstPart:
			case <-time.After(wait):
				t.Fatal("part 1 did not go up while the file was written")
			}
			writeAt(t, f, data[part+1:], part+1, 256<<10)
			settle(f)
			if n := fx.st.Calls("UploadPart"); n != 4 {
				t.Errorf("%d parts went up before the commit, want 4", n)
			}
			if tt.rewriteAt >= 0 {
				p := randBytes(100, 5)
				copy(data[tt.rewriteAt:], p)
				writeAt(t, f, p, tt.rewriteAt, 100)
			}
			commit(t, f)
			fx.wantObject(t, "b", "rec", data)
			if n := fx.st.Calls("UploadPart"); n != tt.wantParts {
				t.Errorf("%d UploadPart requests, want %d", n, tt.wantParts)
			}
			if n := fx.st.PartBytes(); n != tt.wantBytes {
				t.Errorf("%d bytes uploaded, want %d", n, tt.wantBytes)
			}
			if n := fx.st.Calls("CompleteMultipartUpload"); n != 1 {
				t.Errorf("%d CompleteMultipartUpload requests", n)
			}
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
		})
	}
}

// TestRandomWritesCopyParts opens an existing 60 MiB object (12 parts)
// and changes a few bytes: only the parts holding them are uploaded (after
// fetching the rest of those parts), the others are copied server-side,
// and the object is exact.
func TestRandomWritesCopyParts(t *testing.T) {
	tests := []struct {
		name    string
		offs    []int64
		touched int64 // parts
	}{
		{"two parts", []int64{11 * mib, 43*mib + 7}, 2},
		{"same part", []int64{20 * mib, 24 * mib}, 1},
		{"across a part boundary, and the last bytes", []int64{part - 5, 60*mib - 10}, 3},
	}
	data := randBytes(60*mib, 6)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			base := fx.seed(t, "big", data, map[string]string{"mtime": "5"})
			f := fx.open(t, "big", OpenOptions{Base: &base})
			want := bytes.Clone(data)
			for i, off := range tt.offs {
				p := randBytes(10, byte(10+i))
				copy(want[off:], p)
				writeAt(t, f, p, off, 10)
			}
			o := commit(t, f)
			got := fx.wantObject(t, "b", "big", want)
			if !maps.Equal(got.Metadata, base.Metadata) {
				t.Errorf("metadata %v, want %v", got.Metadata, base.Metadata)
			}
			if n := fx.st.PartBytes(); n > tt.touched*part {
				t.Errorf("%d bytes uploaded, want at most %d", n, tt.touched*part)
			}
			if n := fx.st.Calls("UploadPartCopy"); n != 12-tt.touched {
				t.Errorf("%d UploadPartCopy requests, want %d", n, 12-tt.touched)
			}
			if o.ETag != got.ETag {
				t.Errorf("commit returned ETag %s, the store has %s", o.ETag, got.ETag)
			}
		})
	}
}

// TestTruncate changes the size of a file (new, small on a base, large
// on a base) with truncates and writes: after growing, the new bytes are
// zeros, also where bytes had been written before a shrink; reads before
// the commit and the object after it match a model.
func TestTruncate(t *testing.T) {
	type op struct {
		truncate int64 // >= 0: truncate to this size
		off      int64 // else write 1000 bytes here
	}
	tests := []struct {
		name string
		base int // < 0: a new file
		ops  []op
	}{
		{"grow a new file", -1, []op{{truncate: 3 * mib}}},
		{"shrink a small base", 2 * mib, []op{{truncate: 100}}},
		{"grow a small base", 1 * mib, []op{{truncate: 4 * mib}}},
		{"shrink then grow over written bytes", 2 * mib, []op{{truncate: -1, off: mib}, {truncate: mib / 2}, {truncate: 3 * mib}}},
		{"shrink a large base below one part", 16 * mib, []op{{truncate: 4 * mib}}},
		{"shrink a large base mid part", 16 * mib, []op{{truncate: 12*mib + 3}}},
		{"grow a large base", 12 * mib, []op{{truncate: 23 * mib}}},
		{"write past the end of a large base", 12 * mib, []op{{truncate: -1, off: 21 * mib}}},
		{"shrink, write, grow", 16 * mib, []op{{truncate: 8 * mib}, {truncate: -1, off: 6 * mib}, {truncate: 17 * mib}, {truncate: -1, off: 16 * mib}}},
		{"to zero", 12 * mib, []op{{truncate: 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			var model []byte
			var o OpenOptions
			if tt.base >= 0 {
				model = randBytes(tt.base, 7)
				base := fx.seed(t, "t", model, nil)
				o.Base = &base
			}
			f := fx.open(t, "t", o)
			for i, op := range tt.ops {
				if op.truncate >= 0 {
					if err := f.Truncate(context.Background(), op.truncate); err != nil {
						t.Fatal(err)
					}
					if op.truncate < int64(len(model)) {
						model = model[:op.truncate]
					} else {
						model = append(model, make([]byte, op.truncate-int64(len(model)))...)
					}
					continue
				}
				p := randBytes(1000, byte(20+i))
				if end := op.off + 1000; end > int64(len(model)) {
					model = append(model, make([]byte, end-int64(len(model)))...)
				}
				copy(model[op.off:], p)
				writeAt(t, f, p, op.off, 1000)
			}
			if f.Size() != int64(len(model)) {
				t.Fatalf("size %d, want %d", f.Size(), len(model))
			}
			if got := readAll(t, f); !bytes.Equal(got, model) {
				t.Fatalf("read before commit differs at %d", firstDiff(got, model))
			}
			commit(t, f)
			fx.wantObject(t, "b", "t", model)
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
		})
	}
}

// TestReadYourWrites reads ranges of a changed file that mix written
// bytes, bytes of the original object and zeros (a hole past its end),
// before any commit: every read matches a model.
func TestReadYourWrites(t *testing.T) {
	fx := newFixture(t, nil)
	model := randBytes(11*mib, 8)
	base := fx.seed(t, "r", model, nil)
	f := fx.open(t, "r", OpenOptions{Base: &base})
	for i, off := range []int64{0, 3*mib + 17, 10*mib + 1000, 14 * mib} {
		p := randBytes(5000, byte(30+i))
		if end := off + 5000; end > int64(len(model)) {
			model = append(model, make([]byte, end-int64(len(model)))...)
		}
		copy(model[off:], p)
		writeAt(t, f, p, off, 5000)
	}
	tests := []struct {
		name     string
		off, len int64
	}{
		{"written only", 10, 100},
		{"base only", mib, 1000},
		{"written and base", 3*mib + 10, 10000},
		{"base, written, zeros", 11*mib - 500, mib},
		{"zeros only", 12 * mib, 1000},
		{"up to the end", 14*mib + 4000, 5000},
		{"everything", 0, 15 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, tt.len)
			n, err := f.ReadAt(context.Background(), buf, tt.off)
			want := model[tt.off:min(tt.off+tt.len, int64(len(model)))]
			if err != nil || n != len(want) || !bytes.Equal(buf[:n], want) {
				t.Fatalf("read %d@%d: %d bytes, %v; differs at %d", tt.len, tt.off, n, err, firstDiff(buf[:n], want))
			}
		})
	}
}

// TestBaseChanged changes the object a file was opened on behind its
// back, after a write: the commit fails with ErrPreconditionFailed, the
// store keeps the other writer's object whole (never a mix), and no
// multipart upload is left.
func TestBaseChanged(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"one PUT", 3 * mib},
		{"multipart", 16 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			base := fx.seed(t, "c", randBytes(tt.size, 9), nil)
			f := fx.open(t, "c", OpenOptions{Base: &base})
			writeAt(t, f, []byte("changed"), 100, 10)
			other := randBytes(tt.size, 10)
			fx.seed(t, "c", other, nil)
			if _, err := f.Commit(context.Background()); !errors.Is(err, store.ErrPreconditionFailed) {
				t.Fatalf("commit: %v, want ErrPreconditionFailed", err)
			}
			fx.wantObject(t, "b", "c", other)
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
			if !f.Changed() {
				t.Error("a failed commit left the file unchanged")
			}
		})
	}
}

// TestTruncateAfterStreaming shrinks a file whose first parts already
// went up while it was written to one part or less: the commit is one
// PUT of the bytes left, and the upload begun for the parts is aborted.
func TestTruncateAfterStreaming(t *testing.T) {
	for _, size := range []int64{0, 100, part} {
		fx := newFixture(t, nil)
		data := randBytes(17*mib, 16)
		f := fx.open(t, "s", OpenOptions{})
		writeAt(t, f, data, 0, mib)
		settle(f)
		if fx.st.Calls("UploadPart") == 0 {
			t.Fatal("no part went up while writing")
		}
		if err := f.Truncate(context.Background(), size); err != nil {
			t.Fatal(err)
		}
		commit(t, f)
		fx.wantObject(t, "b", "s", data[:size])
		if n := fx.st.Uploads("b"); n != 0 {
			t.Errorf("size %d: %d multipart uploads left open", size, n)
		}
	}
}
