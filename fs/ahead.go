package fs

// Files ahead: a program that reads a directory's small files one after
// another in listing order (cp -r, tar c, rsync, cat dir/*, a shell loop
// running one cat per file, a DataLoader with a sequential sampler) would
// wait one round trip per file. Each directory follows the opens of its
// files against its cached listing; once a few opens in a row follow the
// listing, it asks the read path (Config.Ahead) to fetch the next files
// whole, in parallel, before they are opened. Opens anywhere else in the
// listing (a shuffled sampler) stop it and drop what was fetched and not
// opened; so does a directory whose files go unopened for orderIdle.
//
// The detector is keyed on the directory, not on the process: one cat per
// file, or several workers each opening consecutive files, are one
// pattern. Opens within orderTolerance of the furthest file opened so far
// count as in order, so workers racing each other do not break it.

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// FilesAhead fetches small files whole before they are opened; the
// daemon's is package prefetch's Manager. Each file fetched is held (in
// the read-ahead budget) until the Reader an open of the same version
// makes takes it, or until DropAhead.
type FilesAhead interface {
	// AheadLimit is the largest file fetched ahead.
	AheadLimit() int64
	// AheadWindow bounds the files held ahead of one directory's reader,
	// in files and in bytes.
	AheadWindow() (files int, bytes int64)
	// FetchAhead starts fetching v; false means the budget has no room
	// now.
	FetchAhead(v ObjectVersion) bool
	// DropAhead lets go of v if it is still held, cancelling its GET.
	DropAhead(v ObjectVersion)
}

const (
	// orderStreak is how many opens in a row must follow the listing
	// before files are fetched ahead: shuffled opens land next to each
	// other by chance now and then, three in a row almost never.
	orderStreak = 3
	// orderTolerance is how far (in listing positions) from the furthest
	// file opened an open may land and still count as in order.
	orderTolerance = 8
	// orderFirstWindow is how many files are fetched ahead once the
	// pattern is seen; the window doubles with every open that follows,
	// up to FilesAhead.AheadWindow.
	orderFirstWindow = 4
	// orderIdle is how long files fetched ahead are held with no open in
	// their directory.
	orderIdle = 5 * time.Second
)

// readOrder follows the opens of one directory's files. Positions are
// kept as names, so a fresh listing of the same directory carries on.
type readOrder struct {
	mu sync.Mutex // protects the following; a leaf, taken after dirNode.mu is released
	// cursor is the furthest name opened in the pattern; "" before any.
	cursor string // GUARDED_BY(mu)
	// streak counts opens in a row that followed the listing.
	streak int // GUARDED_BY(mu)
	// window is how many files past cursor are to be held.
	window int // GUARDED_BY(mu)
	// start is the first name (in listing order) opened in the pattern,
	// and opened how many names from start on were opened in it: a
	// pattern that leaves files unopened behind it (every other file,
	// only the .jpg of .jpg and .json pairs) is not fetched ahead.
	// dirs counts the subdirectories from start to cursor: nothing
	// opens them as files.
	start  string // GUARDED_BY(mu)
	opened int    // GUARDED_BY(mu)
	dirs   int    // GUARDED_BY(mu)
	// recent is the names opened within the band behind cursor, so that
	// one opened again is counted once.
	recent map[string]bool // GUARDED_BY(mu)
	// frontier is the last name considered for fetching ahead.
	frontier string // GUARDED_BY(mu)
	// fetched is the files fetched ahead and not opened yet, by name.
	fetched      map[string]ObjectVersion // GUARDED_BY(mu)
	fetchedBytes int64                    // GUARDED_BY(mu)
	// listed is the listing the last open was placed in.
	listed []string // GUARDED_BY(mu)
	// idle drops what is held when no file is opened for orderIdle.
	idle *time.Timer // GUARDED_BY(mu)
}

// sameListing reports whether a and b are the same slice (one listing).
func sameListing(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// position returns where name is, or would be, in the sorted names.
func position(names []string, name string) (int, bool) {
	i := sort.SearchStrings(names, name)
	return i, i < len(names) && names[i] == name
}

// noteOpen records that the file name of d was opened for reading, and
// fetches files ahead when the opens follow d's listing.
func (d *dirNode) noteOpen(name string) {
	fa := d.m.cfg.Ahead
	if fa == nil {
		return
	}
	now := d.m.now()
	d.mu.Lock()
	entries, names, pfx := d.entries, d.names, d.prefix
	fresh := entries != nil && now.Sub(d.listedAt) < d.m.cfg.MetadataTTL
	d.mu.Unlock()

	o := &d.order
	o.mu.Lock()
	var drop []ObjectVersion
	defer func() {
		o.mu.Unlock()
		for _, v := range drop {
			fa.DropAhead(v)
		}
	}()
	i, found := position(names, name)
	if !fresh || !found {
		// No listing to follow (names looked up one by one, or the
		// listing expired): nothing is known about the next files.
		drop = o.resetLocked(name)
		return
	}
	if !sameListing(o.listed, names) {
		// A new listing: what was fetched for a version the store no
		// longer lists goes.
		for n, v := range o.fetched {
			if e, ok := entries[n]; !ok || e.dir || d.aheadVersion(pfx, n, e) != v {
				drop = append(drop, v)
				o.unfetchLocked(n)
			}
		}
		o.listed = names
	}
	if v, ok := o.fetched[name]; ok {
		// Its Reader took the block over when the open pinned the same
		// version; if the open pinned another one, the block goes.
		drop = append(drop, v)
		o.unfetchLocked(name)
	}
	if o.cursor == name {
		// The same file again (a program reopening one file) is no step
		// in any order: it neither builds nor breaks the pattern.
		o.armLocked(d)
		return
	}
	tol, streak := orderBand(len(names))
	ci, _ := position(names, o.cursor)
	if o.cursor == "" || i < ci-tol || i > ci+tol {
		drop = append(drop, o.resetLocked(name)...)
		o.streak = 1
		o.armLocked(d)
		return
	}
	if !o.recent[name] {
		o.recent[name] = true
		o.opened++
	}
	if si, _ := position(names, o.start); i < si {
		o.start = name
		o.dirs += countDirs(entries, names[i:si])
	}
	if i > ci {
		o.dirs += countDirs(entries, names[ci+1:i])
		// Only an open past the furthest one follows the listing: opens
		// behind it (a worker that fell behind, or the same file again)
		// keep the pattern but do not make one, so files opened in
		// reverse order fetch nothing ahead.
		o.streak++
		o.cursor, ci = name, i
	}
	// Files the pattern passed without opening them are not coming.
	for n, v := range o.fetched {
		if j, _ := position(names, n); j < ci-tol {
			drop = append(drop, v)
			o.unfetchLocked(n)
		}
	}
	for n := range o.recent {
		if j, _ := position(names, n); j < ci-tol {
			delete(o.recent, n)
		}
	}
	o.armLocked(d)
	if o.streak < streak {
		return
	}
	// Files between the first opened and the furthest that were not
	// opened (yet: workers racing leave a few for a moment) would be
	// fetched and not read as often: no more than one in ten.
	if si, _ := position(names, o.start); 10*(ci-si+1-o.dirs-o.opened) > ci-si+1-o.dirs {
		return
	}
	maxFiles, maxBytes := fa.AheadWindow()
	o.window = min(max(2*o.window, orderFirstWindow), maxFiles)
	start := ci + 1
	if o.frontier != "" {
		if fi, ok := position(names, o.frontier); ok {
			start = max(start, fi+1)
		} else {
			start = max(start, fi)
		}
	}
	limit := fa.AheadLimit()
	for j := start; j < len(names) && j <= ci+o.window; j++ {
		n := names[j]
		e := entries[n]
		if !e.dir && e.obj.ETag != "" && e.obj.Size > 0 && e.obj.Size <= limit &&
			stateOf(e.obj, false, now).readable() && !d.staged(pfx, n) {
			if o.fetchedBytes+e.obj.Size > maxBytes {
				return
			}
			v := d.aheadVersion(pfx, n, e)
			if !fa.FetchAhead(v) {
				return // the budget is full; the next open tries again
			}
			if o.fetched == nil {
				o.fetched = map[string]ObjectVersion{}
			}
			o.fetched[n] = v
			o.fetchedBytes += v.Size
		}
		o.frontier = n
	}
}

// orderBand returns, for a directory of n names, how far from the
// furthest file opened an open may land and still count as in order, and
// how many such opens in a row start fetching ahead. Eight places either
// side cover much of a small directory, where opens in a random order
// would land in the band time and again and fetch files ahead that are
// not opened next (or were opened already): the band narrows to a
// thirty-second of the directory (two places at least), and the streak grows
// until a random order passes it by chance once in a hundred opens at
// most. A directory of five names or fewer is never fetched ahead.
func orderBand(n int) (tol, streak int) {
	tol = min(orderTolerance, max(2, n/32))
	p := float64(2*tol+1) / float64(n)
	if p >= 1 {
		return tol, n + 1
	}
	streak = orderStreak
	for math.Pow(p, float64(streak-1)) > 0.01 {
		streak++
	}
	return tol, streak
}

// countDirs returns how many of names are directories in entries.
func countDirs(entries map[string]entry, names []string) int {
	n := 0
	for _, name := range names {
		if entries[name].dir {
			n++
		}
	}
	return n
}

// aheadVersion is the version an open of entry e (named n) pins, as
// fileNode.version makes it.
func (d *dirNode) aheadVersion(pfx, n string, e entry) ObjectVersion {
	return ObjectVersion{Bucket: d.bucket, Key: pfx + n, ETag: e.obj.ETag, Size: e.obj.Size}
}

// staged reports whether the file named n has content the store does not
// (being written, or a write-back upload pending): its reads do not go to
// the store.
func (d *dirNode) staged(pfx, n string) bool {
	if wr := d.m.cfg.Writer; wr != nil && wr.Lookup(d.bucket, pfx+n) != nil {
		return true
	}
	if ch := d.GetChild(n); ch != nil {
		if f, ok := ch.Operations().(*fileNode); ok && f.writer() != nil {
			return true
		}
	}
	return false
}

// unfetchLocked forgets that n is held ahead. REQUIRES: o.mu held.
func (o *readOrder) unfetchLocked(n string) {
	o.fetchedBytes -= o.fetched[n].Size
	delete(o.fetched, n)
}

// resetLocked starts the pattern over at name and returns what was held
// ahead, for the caller to drop. REQUIRES: o.mu held.
func (o *readOrder) resetLocked(name string) []ObjectVersion {
	var drop []ObjectVersion
	for _, v := range o.fetched {
		drop = append(drop, v)
	}
	o.fetched, o.fetchedBytes = nil, 0
	o.cursor, o.streak, o.window, o.frontier = name, 0, 0, ""
	o.start, o.opened, o.dirs, o.recent = name, 1, 0, map[string]bool{name: true}
	return drop
}

// armLocked (re)starts the idle timer. REQUIRES: o.mu held.
func (o *readOrder) armLocked(d *dirNode) {
	if o.idle != nil {
		o.idle.Reset(orderIdle)
		return
	}
	o.idle = time.AfterFunc(orderIdle, func() { d.dropAhead() })
}

// dropAhead lets go of every file d holds ahead and forgets the pattern.
func (d *dirNode) dropAhead() {
	fa := d.m.cfg.Ahead
	if fa == nil {
		return
	}
	o := &d.order
	o.mu.Lock()
	drop := o.resetLocked("")
	o.mu.Unlock()
	for _, v := range drop {
		fa.DropAhead(v)
	}
}

// noteOpenInDir tells f's directory that f was opened for reading.
func (f *fileNode) noteOpenInDir() {
	if f.m.cfg.Ahead == nil {
		return
	}
	name, parent := f.Parent()
	if parent == nil {
		return
	}
	if d, ok := parent.Operations().(*dirNode); ok {
		d.noteOpen(name)
	}
}

// ContentCache takes whole objects' content that a listing carried; the
// daemon's is package prefetch's Manager.
type ContentCache interface {
	// OfferContent caches data as the content of v, if it may.
	OfferContent(v ObjectVersion, data []byte)
}

// offerContent gives a listed object's inline content to the read path
// and drops it from the listing, which keeps only attributes.
func (d *dirNode) offerContent(o *store.Object) {
	if o.Content == nil {
		return
	}
	if c := d.m.cfg.ListContent; c != nil {
		c.OfferContent(ObjectVersion{Bucket: d.bucket, Key: o.Key, ETag: o.ETag, Size: o.Size}, o.Content)
	}
	o.Content = nil
}
