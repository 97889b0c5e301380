package fs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/bucketfs/bucketfs/store"
)

// recordingAhead is a FilesAhead that records what the tree asks for and
// holds at most room files at once.
type recordingAhead struct {
	mu      sync.Mutex
	limit   int64
	files   int
	bytes   int64
	room    int // files it accepts held at once; 0: any
	held    map[ObjectVersion]bool
	fetches []ObjectVersion
	drops   int
	maxHeld int
}

func newRecordingAhead(files int, room int) *recordingAhead {
	return &recordingAhead{limit: 1 << 20, files: files, bytes: 1 << 30, room: room, held: map[ObjectVersion]bool{}}
}

func (a *recordingAhead) AheadLimit() int64                     { return a.limit }
func (a *recordingAhead) AheadWindow() (files int, bytes int64) { return a.files, a.bytes }

func (a *recordingAhead) FetchAhead(v ObjectVersion) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.room > 0 && len(a.held) >= a.room {
		return false
	}
	if a.held[v] {
		panic(fmt.Sprintf("%s fetched twice", v.Key))
	}
	a.held[v] = true
	a.fetches = append(a.fetches, v)
	a.maxHeld = max(a.maxHeld, len(a.held))
	return true
}

func (a *recordingAhead) DropAhead(v ObjectVersion) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held[v] {
		a.drops++
	}
	delete(a.held, v)
}

// fetched returns the keys fetched so far, in order.
func (a *recordingAhead) fetched() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, v := range a.fetches {
		out = append(out, v.Key)
	}
	return out
}

// aheadDir returns a listed directory d/ of n files f0000... of size bytes
// each (plus a subdirectory and a large file at the given positions),
// whose opens go to a.
func aheadDir(t *testing.T, n int, a *recordingAhead) (*dirNode, *store.Fake) {
	t.Helper()
	st := store.NewFake()
	for i := range n {
		st.Seed("bkt", fmt.Sprintf("d/f%04d", i), []byte(fmt.Sprintf("file %d", i)))
	}
	cfg, _, _ := testConfig(st, "bkt")
	cfg.Prefix = "d/"
	cfg.Ahead = a
	d := testDir(t, cfg)
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d, st
}

func name(i int) string { return fmt.Sprintf("f%04d", i) }

// open opens file i of aheadDir's d as fileNode.Open does: the Reader the
// open makes takes over a hold of its version first.
func (a *recordingAhead) open(d *dirNode, n string) {
	a.mu.Lock()
	for v := range a.held {
		if v.Key == "d/"+n {
			delete(a.held, v)
		}
	}
	a.mu.Unlock()
	d.noteOpen(n)
}

// TestAheadInOrder: opens in listing order fetch the next files after
// orderStreak opens, each file once, never one that was opened, within the
// window; the opened files' holds are handed over (not dropped).
func TestAheadInOrder(t *testing.T) {
	a := newRecordingAhead(16, 0)
	d, _ := aheadDir(t, 100, a)
	for i := range orderStreak - 1 {
		a.open(d, name(i))
	}
	if got := a.fetched(); len(got) != 0 {
		t.Fatalf("fetched %v after %d opens", got, orderStreak-1)
	}
	for i := orderStreak - 1; i < 100; i++ {
		a.open(d, name(i))
		a.mu.Lock()
		held := len(a.held)
		a.mu.Unlock()
		if held > 16 {
			t.Fatalf("after opening %s: %d files held, window is 16", name(i), held)
		}
	}
	got := a.fetched()
	if len(got) != 100-orderStreak {
		t.Fatalf("fetched %d files, want %d: %v", len(got), 100-orderStreak, got)
	}
	for k, key := range got {
		if want := "d/" + name(orderStreak+k); key != want {
			t.Fatalf("fetch %d is %s, want %s", k, key, want)
		}
	}
	if a.drops != 0 {
		t.Fatalf("%d files dropped though every one was opened", a.drops)
	}
}

// TestAheadShuffled: files opened in random order fetch (almost) nothing
// extra: bytes fetched ahead and never opened stay under a tenth of those
// read.
func TestAheadShuffled(t *testing.T) {
	for seed := range uint64(5) {
		a := newRecordingAhead(64, 0)
		d, _ := aheadDir(t, 500, a)
		perm := rand.New(rand.NewPCG(seed, 7)).Perm(250)
		for _, i := range perm {
			a.open(d, name(i))
		}
		opened := map[string]bool{}
		for _, i := range perm {
			opened["d/"+name(i)] = true
		}
		extra := 0
		for _, k := range a.fetched() {
			if !opened[k] {
				extra++
			}
		}
		if extra*10 > len(perm) {
			t.Fatalf("seed %d: %d files fetched and never opened for %d opened", seed, extra, len(perm))
		}
	}
}

// TestAheadStops: when opens stop following the listing, what is held and
// was not opened is dropped, and nothing more is fetched until the new
// place shows a pattern again.
func TestAheadStops(t *testing.T) {
	a := newRecordingAhead(32, 0)
	d, _ := aheadDir(t, 300, a)
	for i := range 10 {
		a.open(d, name(i))
	}
	a.mu.Lock()
	held := len(a.held)
	a.mu.Unlock()
	if held == 0 {
		t.Fatal("nothing held after 10 opens in order")
	}
	before := len(a.fetched())
	a.open(d, name(200))
	a.mu.Lock()
	left, drops := len(a.held), a.drops
	a.mu.Unlock()
	if left != 0 || drops != held {
		t.Fatalf("after a jump: %d held, %d dropped; want 0 held, %d dropped", left, drops, held)
	}
	a.open(d, name(100))
	if n := len(a.fetched()); n != before {
		t.Fatalf("%d more files fetched after opens out of order", n-before)
	}
	// The idle drop lets go of everything too.
	for i := 50; i < 60; i++ {
		a.open(d, name(i))
	}
	d.dropAhead()
	a.mu.Lock()
	left = len(a.held)
	a.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d files held after dropAhead", left)
	}
}

// TestAheadWorkers: several workers each opening the next file, slightly
// out of order, are one pattern.
func TestAheadWorkers(t *testing.T) {
	a := newRecordingAhead(32, 0)
	d, _ := aheadDir(t, 200, a)
	for base := 0; base < 100; base += 4 {
		for _, k := range []int{1, 0, 3, 2} {
			a.open(d, name(base+k))
		}
	}
	if n := len(a.fetched()); n < 90 {
		t.Fatalf("only %d files fetched ahead for 100 opened by 4 workers in order", n)
	}
}

// TestAheadBudget: when the read path has no room, fetching stops, and
// resumes with later opens once files were handed over.
func TestAheadBudget(t *testing.T) {
	a := newRecordingAhead(32, 5)
	d, _ := aheadDir(t, 100, a)
	for i := range 60 {
		a.open(d, name(i))
		if a.maxHeld > 5 {
			t.Fatalf("%d files held, room for 5", a.maxHeld)
		}
	}
	got := a.fetched()
	if len(got) < 50 {
		t.Fatalf("only %d files fetched ahead with room for 5 at a time", len(got))
	}
	seen := map[string]bool{}
	for _, k := range got {
		if seen[k] {
			t.Fatalf("%s fetched twice", k)
		}
		seen[k] = true
	}
}

// TestAheadSkips: directories, files larger than the limit, empty files
// and archived objects are not fetched; a rewritten file is fetched as the
// version the listing shows, and a new listing drops a held version it no
// longer shows.
func TestAheadSkips(t *testing.T) {
	a := newRecordingAhead(32, 0)
	a.limit = 100
	st := store.NewFake()
	// Files before the ones opened make the directory large enough that
	// three opens in a row are a pattern (orderBand).
	for i := range 60 {
		st.Seed("bkt", fmt.Sprintf("d/0%03d", i), []byte("0"))
	}
	st.Seed("bkt", "d/a0", []byte("a"))
	st.Seed("bkt", "d/a1", []byte("b"))
	st.Seed("bkt", "d/a2", []byte("c"))
	st.Seed("bkt", "d/b-big", make([]byte, 101))
	st.Seed("bkt", "d/c-dir/x", []byte("x"))
	st.Seed("bkt", "d/d-empty", nil)
	st.SeedObject("bkt", "d/e-cold", []byte("cold"), "GLACIER", nil)
	st.Seed("bkt", "d/f-ok", []byte("ok"))
	st.Seed("bkt", "d/g-ok", []byte("ok2"))
	cfg, clock, _ := testConfig(st, "bkt")
	cfg.Prefix = "d/"
	cfg.Ahead = a
	d := testDir(t, cfg)
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a0", "a1", "a2", "b-big"} {
		a.open(d, n)
	}
	got := a.fetched()
	if len(got) != 2 || got[0] != "d/f-ok" || got[1] != "d/g-ok" {
		t.Fatalf("fetched %v, want [d/f-ok d/g-ok]", got)
	}
	old, _ := st.Head(context.Background(), "bkt", "d/g-ok")
	st.Seed("bkt", "d/g-ok", []byte("rewritten"))
	clock.Advance(2 * cfg.MetadataTTL)
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.open(d, "d-empty")
	a.mu.Lock()
	stillOld := a.held[ObjectVersion{Bucket: "bkt", Key: "d/g-ok", ETag: old.ETag, Size: old.Size}]
	a.mu.Unlock()
	if stillOld {
		t.Fatal("the old version of a file rewritten since is still held after a new listing")
	}
}

// TestAheadSameFile: opening one file again and again is no pattern, and
// does not break one under way.
func TestAheadSameFile(t *testing.T) {
	a := newRecordingAhead(16, 0)
	d, _ := aheadDir(t, 100, a)
	for range 10 {
		a.open(d, name(5))
	}
	if got := a.fetched(); len(got) != 0 {
		t.Fatalf("reopening one file fetched %v", got)
	}
	for i := 6; i < 12; i++ {
		a.open(d, name(i))
		a.open(d, name(i))
	}
	if len(a.fetched()) == 0 {
		t.Fatal("opens in order, each file twice, fetched nothing ahead")
	}
	if a.drops != 0 {
		t.Fatalf("%d files dropped: reopening a file broke the pattern", a.drops)
	}
}
