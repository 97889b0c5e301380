package write

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestRandomOps runs random writes (in order, scattered, past the end),
// truncates, reads and commits on files opened on an existing object or
// new, with 5 MiB parts so that parts stream, are copied and are sent
// again: every read matches a model of the file, and after every commit
// the store holds exactly the model.
func TestRandomOps(t *testing.T) {
	for seed := range uint64(4) {
		t.Run("", func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			fx := newFixture(t, nil)
			var model []byte
			var o OpenOptions
			if seed%2 == 0 {
				model = randBytes(11*mib+rng.IntN(mib), byte(seed))
				base := fx.seed(t, "x", model, nil)
				o.Base = &base
			}
			f := fx.open(t, "x", o)
			write := func(off int64, n int) {
				p := randBytes(n, byte(rng.IntN(256)))
				if end := off + int64(n); end > int64(len(model)) {
					model = append(model, make([]byte, end-int64(len(model)))...)
				}
				copy(model[off:], p)
				writeAt(t, f, p, off, 256<<10)
			}
			for step := 0; step < 30; step++ {
				switch r := rng.IntN(20); {
				case r < 6: // append
					write(int64(len(model)), rng.IntN(3*mib))
				case r < 11: // scattered
					write(int64(rng.IntN(len(model)+1)), 1+rng.IntN(64<<10))
				case r < 12: // past the end
					write(int64(len(model)+rng.IntN(2*mib)), 1+rng.IntN(1000))
				case r < 14:
					size := int64(rng.IntN(len(model) + 3*mib))
					if err := f.Truncate(context.Background(), size); err != nil {
						t.Fatal(err)
					}
					if size < int64(len(model)) {
						model = model[:size]
					} else {
						model = append(model, make([]byte, size-int64(len(model)))...)
					}
				case r < 17:
					off := rng.IntN(len(model) + 1)
					n := rng.IntN(2 * mib)
					buf := make([]byte, n)
					got, _ := f.ReadAt(context.Background(), buf, int64(off))
					want := model[off:min(off+n, len(model))]
					if !bytes.Equal(buf[:got], want) {
						t.Fatalf("step %d: read %d@%d differs at %d", step, n, off, firstDiff(buf[:got], want))
					}
				default:
					commit(t, f)
					fx.wantObject(t, "b", "x", model)
				}
				if f.Size() != int64(len(model)) {
					t.Fatalf("step %d: size %d, model %d", step, f.Size(), len(model))
				}
			}
			commit(t, f)
			fx.wantObject(t, "b", "x", model)
			if n := fx.st.Uploads("b"); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
		})
	}
}

// TestConcurrentWritesAndCommits writes a file in order from one
// goroutine (parts streaming) while another commits it again and again:
// each commit stores a prefix of what is written (never other bytes) and
// the last one stores all of it.
func TestConcurrentWritesAndCommits(t *testing.T) {
	for _, writeBack := range []bool{false, true} {
		fx := newFixture(t, func(o *Options) { o.WriteBack = writeBack })
		data := randBytes(17*mib, 18)
		f := fx.open(t, "c", OpenOptions{})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.Commit(context.Background()); err != nil {
					t.Error(err)
					return
				}
				if !writeBack {
					got, _ := fx.object(t, "b", "c")
					if !bytes.Equal(got, data[:len(got)]) {
						t.Errorf("a commit stored %d bytes that are not what was written (at %d)", len(got), firstDiff(got, data))
						return
					}
				}
			}
		}()
		writeAt(t, f, data, 0, 300<<10)
		close(stop)
		wg.Wait()
		commit(t, f)
		waitFile(t, f)
		fx.wantObject(t, "b", "c", data)
		if n := fx.st.Uploads("b"); n != 0 {
			t.Errorf("write-back %v: %d multipart uploads left open", writeBack, n)
		}
	}
}
