package write

import "sort"

// span is the byte range [off, end).
type span struct{ off, end int64 }

// ranges is a set of bytes: sorted, non-overlapping, non-adjacent spans.
type ranges []span

// add puts [off, end) in the set.
func (r ranges) add(off, end int64) ranges {
	if off >= end {
		return r
	}
	// First span that ends at or after off (could merge).
	i := sort.Search(len(r), func(i int) bool { return r[i].end >= off })
	j := i
	for j < len(r) && r[j].off <= end {
		off = min(off, r[j].off)
		end = max(end, r[j].end)
		j++
	}
	out := make(ranges, 0, len(r)-(j-i)+1)
	out = append(out, r[:i]...)
	out = append(out, span{off, end})
	return append(out, r[j:]...)
}

// cut drops every byte at or past size.
func (r ranges) cut(size int64) ranges {
	out := r[:0:0]
	for _, s := range r {
		if s.off >= size {
			break
		}
		s.end = min(s.end, size)
		out = append(out, s)
	}
	return out
}

// covers reports whether every byte of [off, end) is in the set.
func (r ranges) covers(off, end int64) bool {
	if off >= end {
		return true
	}
	i := sort.Search(len(r), func(i int) bool { return r[i].end > off })
	return i < len(r) && r[i].off <= off && r[i].end >= end
}

// overlaps reports whether any byte of [off, end) is in the set (an
// empty range overlaps nothing).
func (r ranges) overlaps(off, end int64) bool {
	if off >= end {
		return false
	}
	i := sort.Search(len(r), func(i int) bool { return r[i].end > off })
	return i < len(r) && r[i].off < end
}

// gaps returns the parts of [off, end) not in the set, in order.
func (r ranges) gaps(off, end int64) []span {
	var out []span
	for _, s := range r {
		if s.end <= off {
			continue
		}
		if s.off >= end {
			break
		}
		if s.off > off {
			out = append(out, span{off, s.off})
		}
		off = max(off, s.end)
	}
	if off < end {
		out = append(out, span{off, end})
	}
	return out
}

// bytes is the number of bytes in the set.
func (r ranges) bytes() int64 {
	var n int64
	for _, s := range r {
		n += s.end - s.off
	}
	return n
}
