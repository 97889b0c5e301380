package prefetch

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestBudgetReleaseMismatch: releasing more than is held, or a negative
// amount, does not panic (a panic in a background goroutine ends the
// daemon): it is counted, logged (the first time and then at powers of
// two), and the budget never goes negative nor grows.
func TestBudgetReleaseMismatch(t *testing.T) {
	var logged bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logged)
	b := NewBudget(100)
	b.SetLog(logrus.NewEntry(l))

	if !b.TryAcquire(30, 0) {
		t.Fatal("acquire 30 of 100 refused")
	}
	b.Release(50) // 20 more than held
	if got := b.Used(); got != 0 {
		t.Errorf("used after releasing too much = %d, want 0", got)
	}
	if got := b.Mismatches(); got != 1 {
		t.Errorf("mismatches = %d, want 1", got)
	}
	if !strings.Contains(logged.String(), "released=50") || !strings.Contains(logged.String(), "held=30") {
		t.Errorf("log = %q, want a line naming released=50 held=30", logged.String())
	}

	b.TryAcquire(10, 0)
	b.Release(-5) // would grow the count
	if got := b.Used(); got != 10 {
		t.Errorf("used after a negative release = %d, want 10", got)
	}
	if got := b.Mismatches(); got != 2 {
		t.Errorf("mismatches = %d, want 2", got)
	}
	b.Release(10)
	if got := b.Used(); got != 0 || b.Mismatches() != 2 {
		t.Errorf("a matching release: used %d mismatches %d, want 0 and 2", got, b.Mismatches())
	}
	// The full capacity is still there: nothing leaked either way.
	if !b.TryAcquire(100, 0) || b.TryAcquire(1, 0) {
		t.Error("capacity after mismatches is not exactly 100")
	}
	b.Release(100)

	// Many mismatches from many goroutines: counted each, logged rarely.
	logged.Reset()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 125 {
				b.Release(1)
			}
		}()
	}
	wg.Wait()
	if got := b.Mismatches(); got != 1002 {
		t.Errorf("mismatches = %d, want 1002", got)
	}
	// Counts 4, 8, ..., 512 are powers of two: 8 lines.
	if n := strings.Count(logged.String(), "\n"); n != 8 {
		t.Errorf("%d log lines for 1000 mismatches, want 8", n)
	}
	if b.Used() != 0 {
		t.Errorf("used = %d, want 0", b.Used())
	}
}

// TestBudgetNegativeAcquire: a negative request is refused, not taken as
// a grant that grows the free space.
func TestBudgetNegativeAcquire(t *testing.T) {
	b := NewBudget(10)
	if b.TryAcquire(-5, 0) {
		t.Error("TryAcquire(-5) granted")
	}
	if b.Used() != 0 {
		t.Errorf("used = %d", b.Used())
	}
}

// TestBudget covers the reserve of TryAcquire and Release.
func TestBudget(t *testing.T) {
	b := NewBudget(100)
	if !b.TryAcquire(60, 20) {
		t.Fatal("TryAcquire(60, reserve 20) on an empty budget of 100 failed")
	}
	if b.TryAcquire(30, 20) {
		t.Fatal("TryAcquire ate into the reserve")
	}
	if !b.TryAcquire(30, 0) {
		t.Fatal("TryAcquire without reserve failed with 40 free")
	}
	if b.TryAcquire(20, 0) {
		t.Fatal("TryAcquire went over capacity")
	}
	b.Release(60)
	if b.Used() != 30 {
		t.Errorf("used = %d, want 30", b.Used())
	}
}
