package fs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/store"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
)

// entry is one name in a directory.
type entry struct {
	name string
	dir  bool
	obj  store.Object // files only
	seen time.Time    // when the store said so
	// mtime is a directory's own, from its marker; zero when unknown.
	mtime time.Time
}

// maxLookups is how many single-name answers a directory keeps before it
// drops expired ones.
const maxLookups = 4096

// lookupResult caches the answer to a single-name lookup.
type lookupResult struct {
	e     entry
	found bool
	at    time.Time
}

// dirNode is a directory: a bucket or a prefix inside one.
type dirNode struct {
	base

	// Constant data
	bucket string

	// Mutable state
	mu sync.Mutex // protects the following
	// prefix is "" or ends in "/"; a directory rename changes it. Read it
	// with pfx().
	prefix   string                  // GUARDED_BY(mu)
	entries  map[string]entry        // GUARDED_BY(mu)
	names    []string                // GUARDED_BY(mu); sorted names of entries
	listedAt time.Time               // GUARDED_BY(mu)
	lookups  map[string]lookupResult // GUARDED_BY(mu)
	flight   *listFlight             // GUARDED_BY(mu); the listing under way, if any
	// listBytes estimates what entries and names hold (listingCache).
	listBytes int64 // GUARDED_BY(mu)
	// mtime is the directory's own, from its marker's metadata; zero
	// when unknown (the mount's start time is shown).
	mtime time.Time // GUARDED_BY(mu)
	// madeHere is set on a directory this mount made: its listing, empty
	// then and patched by every change since, answers misses for the
	// whole metadata TTL.
	madeHere bool // GUARDED_BY(mu)

	// order follows the opens of d's files, to fetch the next ones ahead
	// (ahead.go); it has its own lock.
	order readOrder
}

// pfx returns the directory's key prefix.
func (d *dirNode) pfx() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.prefix
}

// cachedBytesLocked estimates the bytes d's listing and single-name
// answers hold. REQUIRES: d.mu held.
func (d *dirNode) cachedBytesLocked() int64 {
	return d.listBytes + int64(len(d.lookups))*lookupCost
}

var (
	_ = (gofs.NodeOnForgetter)((*dirNode)(nil))
	_ = (gofs.NodeLookuper)((*dirNode)(nil))
	_ = (gofs.NodeReaddirer)((*dirNode)(nil))
	_ = (gofs.NodeGetattrer)((*dirNode)(nil))
)

// Getattr implements gofs.NodeGetattrer.
func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fillAttr(&out.Attr)
	return 0
}

// OnForget implements gofs.NodeOnForgetter: the kernel no longer holds the
// directory, so its inode number may be dropped.
func (d *dirNode) OnForget() {
	d.m.inodes.release(d.bucket, d.pfx(), d.StableAttr().Ino)
	d.m.listings.forget(d)
	d.dropAhead()
}

// Readdir implements gofs.NodeReaddirer. It lists the directory when the
// cached listing is older than the metadata TTL.
func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries, names, err := d.listing(ctx)
	if err != nil {
		return nil, toErrno(d.log(), err)
	}
	return &dirStream{d: d, entries: entries, names: names}, 0
}

// dirStream hands out one listing's entries as the kernel reads them, so
// inode numbers are given only to the names it reaches, just before the
// lookups READDIRPLUS makes for them. An entry's offset is its place in the
// listing plus one, which Seekdir goes back to.
type dirStream struct {
	d       *dirNode
	entries map[string]entry // a listing's entries: never changed once made
	names   []string         // the listing's names, sorted
	next    int              // index in names of the next entry
}

var _ = (gofs.FileSeekdirer)((*dirStream)(nil))

func (s *dirStream) HasNext() bool { return s.next < len(s.names) }

func (s *dirStream) Next() (fuse.DirEntry, syscall.Errno) {
	n := s.names[s.next]
	s.next++
	if s.entries[n].dir {
		return fuse.DirEntry{Name: n, Mode: fuse.S_IFDIR, Ino: s.d.m.ino(s.d.bucket, s.d.pfx()+n+"/"), Off: uint64(s.next)}, 0
	}
	return fuse.DirEntry{Name: n, Mode: fuse.S_IFREG, Ino: s.d.m.ino(s.d.bucket, s.d.pfx()+n), Off: uint64(s.next)}, 0
}

// Seekdir implements gofs.FileSeekdirer (rewinddir, seekdir).
func (s *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off > uint64(len(s.names)) {
		return syscall.EINVAL
	}
	s.next = int(off)
	return 0
}

func (s *dirStream) Close() {}

// Lookup implements gofs.NodeLookuper.
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !validName(name) {
		return nil, syscall.ENOENT
	}
	if errno := checkAccess(ctx, d.m.cfg.DirMode, d.m.cfg.UID, d.m.cfg.GID, xOK); errno != 0 {
		return nil, errno
	}
	e, found, err := d.lookupEntry(ctx, name)
	if err != nil {
		return nil, toErrno(d.log().WithField("name", name), err)
	}
	if !found {
		return nil, syscall.ENOENT
	}
	return d.childInode(ctx, e, out), 0
}

// lookupEntry answers from a fresh listing, then from the per-name cache,
// then asks the store.
func (d *dirNode) lookupEntry(ctx context.Context, name string) (entry, bool, error) {
	now := d.m.now()
	ttl, negTTL := d.m.cfg.MetadataTTL, d.m.cfg.NegativeTTL
	d.mu.Lock()
	if d.entries != nil && now.Sub(d.listedAt) < ttl {
		// A name in the listing is trusted for the TTL; a name missing
		// from it only for the negative TTL, so new uploads show up,
		// except in a directory this mount made (mkdir), whose names
		// it knows: cp -r into it costs no lookup per new file.
		if e, ok := d.entries[name]; ok || now.Sub(d.listedAt) < negTTL || d.madeHere {
			d.mu.Unlock()
			return e, ok, nil
		}
	}
	if r, ok := d.lookups[name]; ok {
		age := now.Sub(r.at)
		if (r.found && age < ttl) || (!r.found && age < negTTL) {
			d.mu.Unlock()
			return r.e, r.found, nil
		}
	}
	d.mu.Unlock()

	if wr := d.m.cfg.Writer; wr != nil {
		if w := wr.Lookup(d.bucket, d.pfx()+name); w != nil {
			_, size := w.Pending()
			return entry{name: name, obj: store.Object{Key: d.pfx() + name, Size: size, LastModified: now, Metadata: w.Metadata()}, seen: now}, true, nil
		}
	}
	e, found, err := d.remoteLookup(ctx, name)
	if err != nil {
		return entry{}, false, err
	}
	d.mu.Lock()
	if d.lookups == nil {
		d.lookups = map[string]lookupResult{}
	}
	if len(d.lookups) >= maxLookups {
		// A directory probed by name but never listed: drop stale
		// answers, then any, so the map stays within maxLookups.
		for n, r := range d.lookups {
			if now.Sub(r.at) >= ttl {
				delete(d.lookups, n)
			}
		}
		for n := range d.lookups {
			if len(d.lookups) < maxLookups {
				break
			}
			delete(d.lookups, n)
		}
	}
	e.seen = now
	d.lookups[name] = lookupResult{e: e, found: found, at: now}
	bytes := d.cachedBytesLocked()
	d.mu.Unlock()
	d.m.listings.stored(d, bytes)
	return e, found, nil
}

// remoteLookup asks the store about one name: a HEAD of the key and a
// one-key LIST of "name/" in parallel. A directory wins over an object of the
// same name.
func (d *dirNode) remoteLookup(ctx context.Context, name string) (entry, bool, error) {
	key := d.pfx() + name
	var (
		wg      sync.WaitGroup
		obj     *store.Object
		headErr error
		page    *store.ListPage
		listErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		obj, headErr = d.m.cfg.Store.Head(ctx, d.bucket, key)
	}()
	page, listErr = d.m.cfg.Store.List(ctx, store.ListInput{Bucket: d.bucket, Prefix: key + "/", Delimiter: "/", MaxKeys: 1})
	wg.Wait()

	isDir := listErr == nil && (len(page.Objects) > 0 || len(page.Prefixes) > 0)
	if isDir {
		if headErr == nil {
			d.m.logOnce("object and directory share a name; showing the directory", d.bucket, key)
		}
		e := entry{name: name, dir: true}
		if len(page.Objects) > 0 && page.Objects[0].Key == key+"/" {
			// A marker: its metadata may hold the directory's mtime.
			if m, err := d.m.cfg.Store.Head(ctx, d.bucket, key+"/"); err == nil {
				if t, ok := parseMtime(m.Metadata[metaMtime]); ok {
					e.mtime = t
				}
			}
		}
		return e, true, nil
	}
	if listErr != nil && !errors.Is(listErr, store.ErrNotFound) {
		return entry{}, false, listErr
	}
	if headErr != nil {
		if errors.Is(headErr, store.ErrNotFound) {
			return entry{}, false, nil
		}
		return entry{}, false, headErr
	}
	return entry{name: name, obj: *obj}, true, nil
}

// listing returns the directory's entries, listing it if the cached listing
// is older than the metadata TTL. Concurrent callers share one LIST
// sequence: the first lists, the others wait for its result.
func (d *dirNode) listing(ctx context.Context) (map[string]entry, []string, error) {
	for {
		now := d.m.now()
		d.mu.Lock()
		if d.entries != nil && now.Sub(d.listedAt) < d.m.cfg.MetadataTTL {
			entries, names := d.entries, d.names
			d.mu.Unlock()
			d.m.listings.touch(d)
			return entries, names, nil
		}
		if fl := d.flight; fl != nil {
			d.mu.Unlock()
			select {
			case <-fl.done:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			if errors.Is(fl.err, context.Canceled) && ctx.Err() == nil {
				continue // the caller that listed was interrupted, not this one
			}
			return fl.entries, fl.names, fl.err
		}
		fl := &listFlight{done: make(chan struct{})}
		d.flight = fl
		d.mu.Unlock()

		fl.entries, fl.names, fl.err = d.listNow(ctx, now)
		d.mu.Lock()
		d.flight = nil
		var bytes int64
		if fl.err == nil {
			d.entries, d.names, d.listedAt = fl.entries, fl.names, now
			d.madeHere = false
			d.listBytes = listingBytes(fl.entries)
			// A full listing supersedes single-name answers.
			d.lookups = nil
			bytes = d.cachedBytesLocked()
		}
		d.mu.Unlock()
		close(fl.done)
		if fl.err == nil {
			d.m.listings.stored(d, bytes)
		}
		return fl.entries, fl.names, fl.err
	}
}

// listFlight is a listing under way; its fields are set before done closes.
type listFlight struct {
	done    chan struct{}
	entries map[string]entry
	names   []string
	err     error
}

// listNow lists the directory from the store and sorts its names.
func (d *dirNode) listNow(ctx context.Context, now time.Time) (map[string]entry, []string, error) {
	entries, err := d.listAll(ctx)
	if err != nil {
		return nil, nil, err
	}
	d.mergeStaged(entries)
	names := make([]string, 0, len(entries))
	for n, e := range entries {
		e.seen = now
		entries[n] = e
		names = append(names, n)
	}
	sort.Strings(names)
	return entries, names, nil
}

// maxEmptyPages bounds the pages in a row that hold no entry but promise
// more: a server that never ends a listing makes it fail instead of
// looping forever.
const maxEmptyPages = 100

// errEndlessListing is a listing the server did not end.
var errEndlessListing = errors.New("listing does not end: the server repeats continuation tokens or sends empty pages")

// listAll follows continuation tokens through the whole directory. Keys a
// server lists outside the directory's prefix, or more than one level
// below it, are skipped and logged once: they are not names here.
func (d *dirNode) listAll(ctx context.Context) (map[string]entry, error) {
	entries := map[string]entry{}
	prefix := d.pfx()
	token := ""
	tokens := map[string]bool{}
	empty := 0
	for {
		page, err := d.m.cfg.Store.List(ctx, store.ListInput{Bucket: d.bucket, Prefix: prefix, Delimiter: "/", Token: token, WithContent: d.m.cfg.ListContent != nil})
		if err != nil {
			return nil, err
		}
		for _, raw := range page.Skipped {
			d.m.logOnce("skipping listed key that does not decode or lies outside the directory", d.bucket, raw)
		}
		for _, p := range page.Prefixes {
			rest, ok := strings.CutPrefix(p, prefix)
			name, isDir := strings.CutSuffix(rest, "/")
			if !ok || !isDir || !validName(name) || strings.Contains(name, "/") {
				d.m.logOnce("skipping key that cannot be a file name", d.bucket, p)
				continue
			}
			if old, ok := entries[name]; ok && !old.dir {
				d.m.logOnce("object and directory share a name; showing the directory", d.bucket, prefix+name)
			}
			entries[name] = entry{name: name, dir: true}
		}
		for _, o := range page.Objects {
			if o.Key == prefix {
				continue // this directory's own marker object
			}
			name, ok := strings.CutPrefix(o.Key, prefix)
			if !ok || !validName(name) || strings.Contains(name, "/") {
				d.m.logOnce("skipping key that cannot be a file name", d.bucket, o.Key)
				continue
			}
			if old, ok := entries[name]; ok && old.dir {
				d.m.logOnce("object and directory share a name; showing the directory", d.bucket, o.Key)
				continue
			}
			d.offerContent(&o)
			entries[name] = entry{name: name, obj: o}
		}
		if page.NextToken == "" {
			return entries, nil
		}
		if len(page.Objects) == 0 && len(page.Prefixes) == 0 && len(page.Skipped) == 0 {
			empty++
		} else {
			empty = 0
		}
		if tokens[page.NextToken] || empty > maxEmptyPages {
			return nil, fmt.Errorf("ListObjectsV2 %s/%s: %w", d.bucket, prefix, errEndlessListing)
		}
		tokens[page.NextToken] = true
		token = page.NextToken
	}
}

// childInode returns the inode for e, reusing the existing child so open
// handles and kernel references stay valid, and fills out's attributes.
func (d *dirNode) childInode(ctx context.Context, e entry, out *fuse.EntryOut) *gofs.Inode {
	if e.dir {
		if ch := d.GetChild(e.name); ch != nil {
			// A directory renamed away keeps its old prefix: not reused.
			if sub, ok := ch.Operations().(*dirNode); ok && sub.pfx() == d.pfx()+e.name+"/" {
				if !e.mtime.IsZero() {
					sub.setMtime(e.mtime)
				}
				sub.fillAttr(&out.Attr)
				return ch
			}
		}
		child := &dirNode{base: base{m: d.m}, bucket: d.bucket, prefix: d.pfx() + e.name + "/", mtime: e.mtime}
		ch := d.m.newInode(ctx, &d.Inode, child, fuse.S_IFDIR, d.bucket, child.pfx())
		if sub, ok := ch.Operations().(*dirNode); ok {
			if !e.mtime.IsZero() {
				sub.setMtime(e.mtime)
			}
			sub.fillAttr(&out.Attr)
		} else {
			d.m.dirAttr(&out.Attr, ch.StableAttr().Ino)
		}
		return ch
	}
	key := d.pfx() + e.name
	if ch := d.GetChild(e.name); ch != nil {
		if f, ok := ch.Operations().(*fileNode); ok && f.name() == key {
			f.setMeta(e.obj, e.seen, false)
			f.fillAttr(&out.Attr)
			return ch
		}
	}
	child := &fileNode{base: base{m: d.m}, bucket: d.bucket, key: key, inoKey: key}
	// Attributes go in once the inode exists: setMeta may start goroutines
	// (restore watcher, expiry timer) that use it.
	ino := d.m.newInode(ctx, &d.Inode, child, fuse.S_IFREG, d.bucket, key)
	f := child
	if other, ok := ino.Operations().(*fileNode); ok {
		f = other
	}
	f.setMeta(e.obj, e.seen, false)
	if wr := d.m.cfg.Writer; wr != nil {
		// A file whose write-back upload is pending from an earlier run
		// reads from the journal until it is stored.
		if w := wr.Acquire(d.bucket, key); w != nil {
			f.mu.Lock()
			adopt := f.w == nil
			if adopt {
				f.w = w
			}
			f.mu.Unlock()
			if adopt {
				w.OnStored(f.landed(w))
			} else {
				w.Release()
			}
		}
	}
	f.fillAttr(&out.Attr)
	return ino
}

func (d *dirNode) log() *logrus.Entry {
	return d.m.log.WithFields(logrus.Fields{"bucket": d.bucket, "prefix": d.pfx()})
}
