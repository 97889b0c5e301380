package prefetch

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
)

// TestMixedLoadServesExactBytes: mixed reads, cancellations, closes while
// reading and warms over a small memory tier (buffers recycled often) and
// a disk tier: every byte served is the object's, reads neither cancelled
// nor of a closed file never fail, and the budget comes back to zero.
func TestMixedLoadServesExactBytes(t *testing.T) {
	st := store.NewFake()
	const size = 12*mib + 12345
	var vs []store.Version
	var datas [][]byte
	for i := range 2 {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(i + 7)}).Read(data)
		key := []string{"x", "y"}[i]
		st.Seed("b", key, data)
		o, _ := st.Head(context.Background(), "b", key)
		vs = append(vs, store.Version{Bucket: "b", Key: key, ETag: o.ETag, Size: o.Size})
		datas = append(datas, data)
	}
	st.SetLatency(200 * time.Microsecond)
	c, err := cache.New(cache.Config{MemoryBytes: 3 * mib, BlockSize: bs, Disk: &cache.DiskConfig{Dir: t.TempDir(), MaxBytes: 8 * mib, QueueBlocks: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WaitScan()
	m := newManager(st, c, 12*mib, Options{BlockSize: bs, MaxReadahead: 4 * mib, MaxGets: 4, SplitBytes: 256 << 10, IdleStream: time.Millisecond, PausedStream: 5 * time.Millisecond})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails []error
	fail := func(err error) { mu.Lock(); fails = append(fails, err); mu.Unlock() }
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 12 {
				vi := rng.IntN(2)
				v, data := vs[vi], datas[vi]
				r := m.NewReader(v)
				closer := rng.IntN(4) == 0
				closeDelay := time.Duration(rng.IntN(3000)) * time.Microsecond
				var cwg sync.WaitGroup
				if closer {
					cwg.Go(func() { time.Sleep(closeDelay); r.Close() })
				}
				off := int64(rng.IntN(size))
				for n := 0; n < 20; n++ {
					var ln int
					switch rng.IntN(4) {
					case 0: // sequential
						ln = 128 << 10
					case 1:
						off = int64(rng.IntN(size))
						ln = 1 + rng.IntN(300<<10)
					case 2:
						off = int64(size - 1 - rng.IntN(200<<10))
						ln = 64 << 10
					case 3:
						ln = 1<<20 + rng.IntN(1<<20)
					}
					if off >= size {
						off = 0
					}
					ctx, cancel := context.WithCancel(context.Background())
					cancelled := rng.IntN(8) == 0
					if cancelled {
						d := time.Duration(rng.IntN(500)) * time.Microsecond
						go func() { time.Sleep(d); cancel() }()
					}
					buf := make([]byte, ln)
					got, err := r.ReadAt(ctx, buf, off)
					cancel()
					want := data[off:min(off+int64(ln), size)]
					switch {
					case err == nil:
						if got != len(want) || !bytes.Equal(buf[:got], want) {
							fail(errors.New("WRONG BYTES"))
						}
					case cancelled && errors.Is(err, context.Canceled):
					case closer && errors.Is(err, errClosed):
					default:
						fail(err)
					}
					off += int64(ln)
				}
				if rng.IntN(10) == 0 {
					if err := m.Warm(context.Background(), v); err != nil {
						fail(errors.Join(errors.New("warm"), err))
					}
				}
				cwg.Wait()
				r.Close()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for m.Budget().Used() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if u := m.Budget().Used(); u != 0 {
		t.Errorf("budget holds %d after every reader closed", u)
	}
	if n := m.Budget().Mismatches(); n != 0 {
		t.Errorf("%d mismatches", n)
	}
	seen := map[string]int{}
	for _, e := range fails {
		seen[e.Error()]++
	}
	for e, n := range seen {
		t.Errorf("%d x %s", n, e)
	}
}
