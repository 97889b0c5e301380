package prefetch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// TestManyReadersStayInBudget: 32 sequential readers never hold more than
// the budget, and all read exact bytes.
func TestManyReadersStayInBudget(t *testing.T) {
	const budget = 16 * mib
	fx := newFixture(t, 32*mib, time.Millisecond, budget)
	stop, sampled := make(chan struct{}), make(chan struct{})
	var peak int64
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
				peak = max(peak, fx.m.Budget().Used())
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := fx.m.NewReader(fx.v)
			defer r.Close()
			start := int64(i%8) * 4 * mib
			for off := start; off < start+4*mib; off += 256 << 10 {
				fx.read(t, r, off, 256<<10)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	fx.settle(t)
	if peak > budget {
		t.Errorf("budget peaked at %d > %d", peak, budget)
	}
	fx.budgetReturns(t)
}

// TestReclaimIdleStreams: when the budget is full, a read takes back the
// blocks of another file's stream that its reader left for reads elsewhere
// (a loader's file after a few adjacent records) or stopped reading (a
// paused player) instead of falling back to exact GETs; a stream read just
// now, or read slowly but only in order, keeps its blocks.
func TestReclaimIdleStreams(t *testing.T) {
	for _, tc := range []struct {
		name         string
		stray        bool // a's reader reads elsewhere after its stream
		idle, paused time.Duration
		reclaimed    int64
	}{
		{"left for reads elsewhere", true, 0, time.Hour, 1},
		{"left just now", true, time.Hour, time.Hour, 0},
		{"slow in-order reader", false, 0, time.Hour, 0},
		{"paused", false, time.Hour, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, 4*mib, 0, bs) // room for one block
			fx.m.cfg.IdleStream, fx.m.cfg.PausedStream = tc.idle, tc.paused
			a := fx.m.NewReader(fx.v)
			defer a.Close()
			fx.read(t, a, 0, 64<<10) // a's stream holds block 0
			if tc.stray {
				fx.read(t, a, 3*mib, 4096) // an exact GET elsewhere
			}
			fx.settle(t)
			b := fx.m.NewReader(fx.v)
			defer b.Close()
			fx.read(t, b, 2*mib, 256<<10)         // b's first read: exact
			fx.read(t, b, 2*mib+256<<10, 256<<10) // b's stream needs block 2
			if got := fx.m.Stats.StreamsReclaimed.Load(); got != tc.reclaimed {
				t.Errorf("StreamsReclaimed = %d, want %d", got, tc.reclaimed)
			}
			if got := fx.m.Stats.BudgetFallbacks.Load(); got != 1-tc.reclaimed {
				t.Errorf("BudgetFallbacks = %d, want %d", got, 1-tc.reclaimed)
			}
		})
	}
}

// TestReclaimSkipsWaitingReader: a file whose read is waiting for a slow
// store is not idle, however long ago the read began: its stream keeps
// its blocks and the other reader falls back to an exact GET.
func TestReclaimSkipsWaitingReader(t *testing.T) {
	fx := newFixture(t, 4*mib, 0, bs) // room for one block
	// Idle at once, but for the read under way.
	fx.m.cfg.IdleStream, fx.m.cfg.PausedStream = 0, 0
	fx.st.Seed("b", "slow", fx.data)
	o, _ := fx.st.Head(context.Background(), "b", "slow")
	release := make(chan struct{})
	fx.st.SetFailure(func(op, bucket, key string) error {
		if op == "GetObject" && key == "slow" {
			<-release
		}
		return nil
	})
	a := fx.m.NewReader(store.Version{Bucket: "b", Key: "slow", ETag: o.ETag, Size: o.Size})
	defer a.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		if _, err := a.ReadAt(context.Background(), buf, 0); err != nil { // a stream, waiting for block 0
			t.Error(err)
		}
	}()
	for a.active.Load() == 0 || fx.m.Budget().Used() == 0 {
		time.Sleep(time.Millisecond)
	}
	b := fx.m.NewReader(fx.v)
	defer b.Close()
	fx.read(t, b, 2*mib, 256<<10)
	fx.read(t, b, 2*mib+256<<10, 256<<10) // b's stream finds the budget full
	if got := fx.m.Stats.StreamsReclaimed.Load(); got != 0 {
		t.Errorf("StreamsReclaimed = %d while its reader waited, want 0", got)
	}
	if got := fx.m.Stats.BudgetFallbacks.Load(); got != 1 {
		t.Errorf("BudgetFallbacks = %d, want 1", got)
	}
	close(release)
	<-done
}

// TestJoinerOfCancelledFlightFetchesAgain: a flight that another file's
// Reader gave up (its fill cancelled, or the Reader closed just after
// creating it, which ends the flight with context.Canceled) does not fail
// the reads that joined it: they fetch the block again.
func TestJoinerOfCancelledFlightFetchesAgain(t *testing.T) {
	fx := newFixture(t, 4*mib, 0, 32*mib)
	f, blk, created := fx.c.Join(fx.m.blockKey(fx.v, 0), bs)
	if !created {
		t.Fatal("block 0 already in the cache")
	}
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fx.read(t, r, 0, 64<<10) // joins f
	}()
	for deadline := time.Now().Add(5 * time.Second); fx.c.Stats.Joins.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the read never joined the flight")
		}
	}
	f.Finish(context.Canceled)
	blk.Release()
	<-done
}
