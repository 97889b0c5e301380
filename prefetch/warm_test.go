package prefetch

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
)

// warmFixture is a manager over a fake store holding objects of the given
// sizes (keys o0, o1, ...), with block size blockSize, a budget of budget
// bytes and a disk tier.
func warmFixture(t *testing.T, blockSize, budget int64, sizes ...int) (*Manager, []store.Version) {
	t.Helper()
	st := store.NewFake()
	var vs []store.Version
	for i, n := range sizes {
		data := make([]byte, n)
		rand.NewChaCha8([32]byte{byte(i), byte(n)}).Read(data)
		key := "o" + string(rune('0'+i))
		st.Seed("b", key, data)
		o, _ := st.Head(context.Background(), "b", key)
		vs = append(vs, store.Version{Bucket: "b", Key: key, ETag: o.ETag, Size: o.Size})
	}
	c, err := cache.New(cache.Config{MemoryBytes: 64 * mib, BlockSize: blockSize, Disk: &cache.DiskConfig{Dir: t.TempDir(), MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	c.WaitScan()
	m := newManager(st, c, budget, Options{BlockSize: blockSize, MaxReadahead: 8 * mib, MaxGets: 8, SplitBytes: 256 << 10})
	return m, vs
}

// warmWithin warms v and fails the test if that takes longer than d (it
// would wait for ever for budget that is never granted).
func warmWithin(t *testing.T, m *Manager, v store.Version, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := m.Warm(ctx, v); err != nil {
		t.Fatalf("warm (budget %d of %d used): %v", m.Budget().Used(), m.Budget().Capacity(), err)
	}
	if got := m.CachedBytes(v); got != v.Size {
		t.Fatalf("cached after warming: %d of %d", got, v.Size)
	}
}

// TestWarmSmallBudget: warming finishes when the budget cannot hold a full
// request (warmBlocksPerGet blocks) above the read-ahead reserve, as with
// large blocks or a small --cache-memory, and even when it cannot hold one
// block above the reserve. A block larger than the whole budget is an
// error, not a wait.
func TestWarmSmallBudget(t *testing.T) {
	for _, tc := range []struct {
		name              string
		blockSize, budget int64
	}{
		// The smallest budget mount options allow: 4 blocks, reserve 2.
		{"four blocks", mib, 4 * mib},
		// 48 MiB blocks in the default 256 MiB budget, scaled down:
		// reserve 6, three blocks fit above it.
		{"48MiB blocks, default memory (scaled)", 3 * mib, 16 * mib},
		// reserve 2 blocks: no block fits above it.
		{"two blocks", mib, 2 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, vs := warmFixture(t, tc.blockSize, tc.budget, int(5*tc.blockSize+3))
			warmWithin(t, m, vs[0], 10*time.Second)
			if used := m.Budget().Used(); used != 0 {
				t.Errorf("budget used after warming: %d", used)
			}
		})
	}
	t.Run("block larger than the budget", func(t *testing.T) {
		m, vs := warmFixture(t, 2*mib, mib, 3*mib)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Warm(ctx, vs[0]); !errors.Is(err, ErrBlockTooLarge) {
			t.Fatalf("warm: %v, want ErrBlockTooLarge", err)
		}
	})
}

// TestWarmReclaimsPausedStreams: open files whose streams stopped hold the
// read-ahead budget; warming takes it back (as a read would) instead of
// waiting until they are read or closed, which may be never.
func TestWarmReclaimsPausedStreams(t *testing.T) {
	m, vs := warmFixture(t, mib, 32*mib, 16*mib, 16*mib, 16*mib, 6*mib)
	m.cfg.PausedStream = 100 * time.Millisecond
	buf := make([]byte, 256<<10)
	for _, v := range vs[:3] {
		r := m.NewReader(v)
		defer r.Close()
		for off := int64(0); off < 8*mib; off += int64(len(buf)) {
			if _, err := r.ReadAt(context.Background(), buf, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The streams' read-ahead leaves less than a warm request above the
	// reserve.
	deadline := time.Now().Add(5 * time.Second)
	for m.Budget().Used()+warmBlocksPerGet*mib+m.reserve <= m.Budget().Capacity() {
		if time.Now().After(deadline) {
			t.Fatalf("streams hold %d budget bytes; the test needs more", m.Budget().Used())
		}
		time.Sleep(time.Millisecond)
	}
	warmWithin(t, m, vs[3], 10*time.Second)
	if m.Stats.StreamsReclaimed.Load() == 0 {
		t.Error("no stream reclaimed")
	}
}
