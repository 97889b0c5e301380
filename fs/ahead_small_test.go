package fs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/bucketfs/bucketfs/store"
)

// TestAheadShuffledSmallDirs: a small directory's files opened in a random
// order (every file once per epoch, as a shuffling sampler does) fetch
// under a tenth more than they read. A file fetched ahead is read only
// when its open takes it over; files fetched after their open, or dropped
// before it, are fetched twice.
func TestAheadShuffledSmallDirs(t *testing.T) {
	for _, n := range []int{8, 10, 16, 20, 30, 50, 100, 200, 1000} {
		wasted, opened := 0, 0
		for seed := range uint64(20) {
			a := newRecordingAhead(64, 0)
			d, _ := aheadDir(t, n, a)
			rng := rand.New(rand.NewPCG(seed, 11))
			taken := 0
			for range 3 {
				for _, i := range rng.Perm(n) {
					a.mu.Lock()
					for v := range a.held {
						if v.Key == "d/"+name(i) {
							taken++
						}
					}
					a.mu.Unlock()
					a.open(d, name(i))
					opened++
				}
			}
			d.dropAhead()
			wasted += len(a.fetches) - taken
		}
		t.Logf("%d files: %d fetched ahead and not read for %d read", n, wasted, opened)
		if wasted*10 > opened {
			t.Errorf("%d files opened shuffled: %d files fetched ahead and not read for %d read (%.2f extra per file read, want <= 0.1)", n, wasted, opened, float64(wasted)/float64(opened))
		}
	}
}

// TestAheadInOrderSmallDir: a small directory read in listing order still
// has most of its files fetched ahead.
func TestAheadInOrderSmallDir(t *testing.T) {
	a := newRecordingAhead(64, 0)
	d, _ := aheadDir(t, 30, a)
	for i := range 30 {
		a.open(d, name(i))
	}
	if n := len(a.fetches); n < 20 {
		t.Fatalf("%d of 30 files fetched ahead when read in listing order", n)
	}
	if a.drops != 0 {
		t.Fatalf("%d files dropped though every one was opened", a.drops)
	}
}

// TestAheadReverse: files opened in reverse listing order (ls -r, sort -r)
// are not a pattern of opens in listing order: nothing is fetched that is
// not read.
func TestAheadReverse(t *testing.T) {
	for _, n := range []int{30, 100, 500} {
		a := newRecordingAhead(64, 0)
		d, _ := aheadDir(t, n, a)
		taken := 0
		for i := n - 1; i >= 0; i-- {
			a.mu.Lock()
			for v := range a.held {
				if v.Key == "d/"+name(i) {
					taken++
				}
			}
			a.mu.Unlock()
			a.open(d, name(i))
		}
		d.dropAhead()
		if wasted := len(a.fetches) - taken; wasted*10 > n {
			t.Errorf("%d files opened in reverse order: %d fetched ahead and not read", n, wasted)
		}
	}
}

// TestAheadStrided: every k-th file opened in listing order (a sampler
// split across machines, each reading its share) fetches under a tenth
// more than it reads.
func TestAheadStrided(t *testing.T) {
	for _, k := range []int{2, 3, 4} {
		const n = 600
		a := newRecordingAhead(64, 0)
		d, _ := aheadDir(t, n, a)
		taken, opened := 0, 0
		for i := 0; i < n; i += k {
			a.mu.Lock()
			for v := range a.held {
				if v.Key == "d/"+name(i) {
					taken++
				}
			}
			a.mu.Unlock()
			a.open(d, name(i))
			opened++
		}
		d.dropAhead()
		t.Logf("every %d files: %d fetched ahead, %d of them read, %d opened", k, len(a.fetches), taken, opened)
		if wasted := len(a.fetches) - taken; wasted*10 > opened {
			t.Errorf("every %d files opened: %d fetched ahead and not read for %d read", k, wasted, opened)
		}
	}
}

// TestAheadSubdirs: subdirectories between the files opened in listing
// order (cat dir/* opens only the files) do not stop fetching ahead.
func TestAheadSubdirs(t *testing.T) {
	a := newRecordingAhead(64, 0)
	st := store.NewFake()
	for i := range 100 {
		st.Seed("bkt", fmt.Sprintf("d/f%04d", i), []byte("x"))
		if i%4 == 0 {
			st.Seed("bkt", fmt.Sprintf("d/f%04d-sub/x", i), []byte("x"))
		}
	}
	cfg, _, _ := testConfig(st, "bkt")
	cfg.Prefix = "d/"
	cfg.Ahead = a
	d := testDir(t, cfg)
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		a.open(d, name(i))
	}
	if n := len(a.fetches); n < 90 {
		t.Fatalf("%d of 100 files fetched ahead when read in listing order past 25 subdirectories", n)
	}
}
