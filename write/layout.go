package write

import "github.com/bucketfs/bucketfs/store"

// layout places an object's parts at fixed offsets that do not depend on
// its final size, so parts can go up while the file is still being
// written. Parts grow in three tiers so that the 10,000 parts S3 allows
// reach its 5 TiB limit:
//
//	parts     1-1000: first        (8 MiB by default: 7.8 GiB)
//	parts  1001-2000: 8 x first    (64 MiB: 62.5 GiB more)
//	parts 2001-10000: the rest of 5 TiB in 8,000 equal parts, MiB-aligned
//
// A small first part keeps the memory and the re-upload of a part that
// changes (ffmpeg rewriting its header at offset 0) small for the common
// file, and large files still fit.
type layout struct {
	first, second, third int64 // part sizes of the tiers
}

const (
	tier1Parts = 1000
	tier2Parts = 1000
	tier3Parts = store.MaxParts - tier1Parts - tier2Parts
)

// newLayout returns the layout whose first parts are first bytes.
// REQUIRES: store.MinPartSize <= first <= 64 MiB.
func newLayout(first int64) layout {
	second := 8 * first
	rest := int64(store.MaxObjectSize) - tier1Parts*first - tier2Parts*second
	third := (rest + tier3Parts - 1) / tier3Parts
	third = (third + 1<<20 - 1) &^ (1<<20 - 1)
	return layout{first: first, second: second, third: third}
}

// part returns the 1-based number, offset and size of the part that holds
// byte off.
func (l layout) part(off int64) (n int32, start, size int64) {
	t1 := tier1Parts * l.first
	t2 := t1 + tier2Parts*l.second
	switch {
	case off < t1:
		i := off / l.first
		return int32(i) + 1, i * l.first, l.first
	case off < t2:
		i := (off - t1) / l.second
		return tier1Parts + int32(i) + 1, t1 + i*l.second, l.second
	default:
		i := (off - t2) / l.third
		return tier1Parts + tier2Parts + int32(i) + 1, t2 + i*l.third, l.third
	}
}

// bounds returns the offset and size of part n.
func (l layout) bounds(n int32) (start, size int64) {
	i := int64(n - 1)
	t1 := tier1Parts * l.first
	t2 := t1 + tier2Parts*l.second
	switch {
	case i < tier1Parts:
		return i * l.first, l.first
	case i < tier1Parts+tier2Parts:
		return t1 + (i-tier1Parts)*l.second, l.second
	default:
		return t2 + (i-tier1Parts-tier2Parts)*l.third, l.third
	}
}

// limit is the largest object the layout can hold.
func (l layout) limit() int64 {
	return tier1Parts*l.first + tier2Parts*l.second + tier3Parts*l.third
}
