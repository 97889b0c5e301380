package write

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bucketfs/bucketfs/store"
)

// TestRanges checks each operation of the byte-range set on hand-picked
// cases: merging of overlapping and adjacent spans, cutting, and the
// queries at span edges.
func TestRanges(t *testing.T) {
	build := func(p ...int64) ranges {
		var r ranges
		for i := 0; i < len(p); i += 2 {
			r = r.add(p[i], p[i+1])
		}
		return r
	}
	addTests := []struct {
		name string
		in   ranges
		want []span
	}{
		{"empty span ignored", build(5, 5), nil},
		{"disjoint stay apart", build(0, 2, 4, 6), []span{{0, 2}, {4, 6}}},
		{"adjacent merge", build(0, 2, 2, 4), []span{{0, 4}}},
		{"overlap merges", build(0, 3, 2, 5), []span{{0, 5}}},
		{"bridge merges three", build(0, 2, 4, 6, 8, 10, 1, 9), []span{{0, 10}}},
		{"inside changes nothing", build(0, 10, 3, 4), []span{{0, 10}}},
		{"out of order", build(8, 9, 0, 1, 4, 5), []span{{0, 1}, {4, 5}, {8, 9}}},
	}
	for _, tt := range addTests {
		t.Run("add/"+tt.name, func(t *testing.T) {
			if !slices.Equal(tt.in, ranges(tt.want)) {
				t.Fatalf("got %v, want %v", tt.in, tt.want)
			}
		})
	}
	r := build(2, 4, 6, 10)
	cutTests := []struct {
		at   int64
		want []span
	}{
		{0, nil}, {2, nil}, {3, []span{{2, 3}}}, {5, []span{{2, 4}}}, {8, []span{{2, 4}, {6, 8}}}, {20, []span{{2, 4}, {6, 10}}},
	}
	for _, tt := range cutTests {
		if got := r.cut(tt.at); !slices.Equal(got, ranges(tt.want)) {
			t.Errorf("cut(%d) = %v, want %v", tt.at, got, tt.want)
		}
	}
	if !slices.Equal(r, build(2, 4, 6, 10)) {
		t.Errorf("cut changed its receiver: %v", r)
	}
	queryTests := []struct {
		off, end         int64
		covers, overlaps bool
		gaps             []span
	}{
		{2, 4, true, true, nil},
		{1, 3, false, true, []span{{1, 2}}},
		{3, 7, false, true, []span{{4, 6}}},
		{4, 6, false, false, []span{{4, 6}}},
		{0, 12, false, true, []span{{0, 2}, {4, 6}, {10, 12}}},
		{7, 9, true, true, nil},
		{3, 3, true, false, nil}, // an empty range: covered, overlapping nothing
		{10, 11, false, false, []span{{10, 11}}},
	}
	for _, tt := range queryTests {
		if got := r.covers(tt.off, tt.end); got != tt.covers {
			t.Errorf("covers(%d,%d) = %v", tt.off, tt.end, got)
		}
		if got := r.overlaps(tt.off, tt.end); got != tt.overlaps {
			t.Errorf("overlaps(%d,%d) = %v", tt.off, tt.end, got)
		}
		if got := r.gaps(tt.off, tt.end); !slices.Equal(got, tt.gaps) {
			t.Errorf("gaps(%d,%d) = %v, want %v", tt.off, tt.end, got, tt.gaps)
		}
	}
	if got := r.bytes(); got != 6 {
		t.Errorf("bytes() = %d, want 6", got)
	}
}

// TestRangesRandom applies random adds and cuts to a range set and to a
// bitmap, and checks after each that the set is well formed (sorted,
// disjoint, not adjacent) and answers every query as the bitmap does.
func TestRangesRandom(t *testing.T) {
	const n = 200
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var r ranges
		bits := make([]bool, n)
		for step := 0; step < 200; step++ {
			if rng.IntN(8) == 0 {
				at := int64(rng.IntN(n + 1))
				r = r.cut(at)
				for i := at; i < n; i++ {
					bits[i] = false
				}
			} else {
				off := int64(rng.IntN(n))
				end := min(off+int64(rng.IntN(30)), n)
				r = r.add(off, end)
				for i := off; i < end; i++ {
					bits[i] = true
				}
			}
			for i := 1; i < len(r); i++ {
				if r[i-1].end >= r[i].off || r[i].off >= r[i].end {
					t.Fatalf("seed %d step %d: malformed %v", seed, step, r)
				}
			}
			var count int64
			for _, b := range bits {
				if b {
					count++
				}
			}
			if r.bytes() != count {
				t.Fatalf("seed %d step %d: %d bytes, bitmap has %d", seed, step, r.bytes(), count)
			}
			for q := 0; q < 20; q++ {
				off := int64(rng.IntN(n))
				end := off + int64(rng.IntN(n-int(off)+1))
				covers, overlaps := true, false
				var gaps []span
				for i := off; i < end; i++ {
					if bits[i] {
						overlaps = true
						continue
					}
					covers = false
					if len(gaps) > 0 && gaps[len(gaps)-1].end == i {
						gaps[len(gaps)-1].end++
					} else {
						gaps = append(gaps, span{i, i + 1})
					}
				}
				if r.covers(off, end) != covers || r.overlaps(off, end) != overlaps || !slices.Equal(r.gaps(off, end), gaps) {
					t.Fatalf("seed %d step %d [%d,%d) of %v: covers %v overlaps %v gaps %v; bitmap says %v %v %v",
						seed, step, off, end, r, r.covers(off, end), r.overlaps(off, end), r.gaps(off, end), covers, overlaps, gaps)
				}
			}
		}
	}
}

// TestLayout checks the part layout for the smallest, the default and
// the largest first part size: parts are contiguous from 0, each between
// 5 MiB and 5 GiB, 10,000 of them reach 5 TiB, and part(off) names the
// part whose bounds hold off.
func TestLayout(t *testing.T) {
	for _, first := range []int64{store.MinPartSize, DefaultPartSize, 64 << 20} {
		l := newLayout(first)
		var at int64
		for n := int32(1); n <= store.MaxParts; n++ {
			start, size := l.bounds(n)
			if start != at {
				t.Fatalf("first %d: part %d starts at %d, the previous ended at %d", first, n, start, at)
			}
			if size < store.MinPartSize || size > store.MaxPartSize {
				t.Fatalf("first %d: part %d is %d bytes", first, n, size)
			}
			for _, off := range []int64{start, start + size/2, start + size - 1} {
				if pn, ps, psz := l.part(off); pn != n || ps != start || psz != size {
					t.Fatalf("first %d: part(%d) = %d,%d,%d; bounds(%d) = %d,%d", first, off, pn, ps, psz, n, start, size)
				}
			}
			at = start + size
		}
		if at < store.MaxObjectSize || l.limit() != at {
			t.Fatalf("first %d: 10,000 parts end at %d (limit %d), want >= %d", first, at, l.limit(), int64(store.MaxObjectSize))
		}
		if n, _, _ := l.part(store.MaxObjectSize - 1); n > store.MaxParts {
			t.Fatalf("first %d: the last byte of 5 TiB is in part %d", first, n)
		}
		if _, size := l.bounds(1); size != first {
			t.Fatalf("first %d: part 1 is %d bytes", first, size)
		}
	}
}
