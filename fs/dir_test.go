package fs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// subdir returns the directory node for prefix in the same mount as root.
func subdir(root *dirNode, prefix string) *dirNode {
	return &dirNode{base: base{m: root.m}, bucket: root.bucket, prefix: prefix}
}

// describe renders entries as name -> "dir" or "file:<size>".
func describe(entries map[string]entry) map[string]string {
	out := map[string]string{}
	for n, e := range entries {
		if e.name != n {
			out[n] = "entry named " + e.name
			continue
		}
		if e.dir {
			out[n] = "dir"
		} else {
			out[n] = fmt.Sprintf("file:%d", e.obj.Size)
		}
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// TestListAll lists directories against the fake and checks which keys
// become files and directories: directory marker objects are not files, a
// directory wins over an object of the same name (logged once), and keys
// whose component cannot be a file name (empty, ".", "..", over 255 bytes)
// are skipped and logged, whatever the page size.
func TestListAll(t *testing.T) {
	long255 := strings.Repeat("x", 255)
	long256 := strings.Repeat("y", 256)
	tests := []struct {
		name       string
		keys       map[string]int // key -> size
		prefix     string
		want       map[string]string
		wantClash  []string // keys logged as file/dir clashes
		wantBadKey []string // keys logged as skipped
	}{
		{
			name:   "markers at the root are directories, not files",
			keys:   map[string]int{"dir/": 0, "dir/a": 3, "empty/": 0, "f": 5},
			prefix: "",
			want:   map[string]string{"dir": "dir", "empty": "dir", "f": "file:5"},
		},
		{
			name:   "a directory's own marker is not listed in it",
			keys:   map[string]int{"dir/": 0, "dir/a": 3, "dir/sub/": 0, "dir/zero": 0},
			prefix: "dir/",
			want:   map[string]string{"a": "file:3", "sub": "dir", "zero": "file:0"},
		},
		{
			name:   "a marker-only directory is empty",
			keys:   map[string]int{"empty/": 0, "f": 1},
			prefix: "empty/",
			want:   map[string]string{},
		},
		{
			name:      "object and directory of one name: the directory wins",
			keys:      map[string]int{"a": 1, "a/b": 2, "c": 3},
			want:      map[string]string{"a": "dir", "c": "file:3"},
			wantClash: []string{"a"},
		},
		{
			name:      "clash inside a directory",
			keys:      map[string]int{"p/": 0, "p/x": 1, "p/x/y": 2},
			prefix:    "p/",
			want:      map[string]string{"x": "dir"},
			wantClash: []string{"p/x"},
		},
		{
			name:       "bad components at the root",
			keys:       map[string]int{"a//b": 1, "./x": 1, "../y": 1, "ok": 2, long255: 7, long256: 8, long256 + "/z": 9, "..": 1, ".": 1},
			want:       map[string]string{"a": "dir", "ok": "file:2", long255: "file:7"},
			wantBadKey: []string{".", "..", "../", "./", long256, long256 + "/"},
		},
		{
			name:       "empty component inside a directory",
			keys:       map[string]int{"a//b": 1, "a/c": 2, "a/./d": 3, "a/../e": 4},
			prefix:     "a/",
			want:       map[string]string{"c": "file:2"},
			wantBadKey: []string{"a/../", "a/./", "a//"},
		},
		{
			name:   "spaces and unicode are kept",
			keys:   map[string]int{"with space": 1, "日本/x": 2, " lead": 3},
			want:   map[string]string{"with space": "file:1", "日本": "dir", " lead": "file:3"},
			prefix: "",
		},
	}
	for _, tt := range tests {
		for _, pageSize := range []int32{1000, 2, 1} {
			t.Run(fmt.Sprintf("%s/pages of %d", tt.name, pageSize), func(t *testing.T) {
				f := store.NewFake()
				f.CreateBucket("b")
				for k, n := range tt.keys {
					f.Put("b", k, make([]byte, n))
				}
				f.SetPageSize(pageSize)
				cfg, _, hook := testConfig(f, "b")
				d := subdir(testDir(t, cfg), tt.prefix)

				// List twice: the second listing must log nothing new.
				for range 2 {
					entries, err := d.listAll(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if got := describe(entries); !maps.Equal(got, tt.want) {
						t.Fatalf("entries = %v, want %v", got, tt.want)
					}
				}
				for _, c := range []struct {
					msg  string
					want []string
				}{{msgClash, tt.wantClash}, {msgBadKey, tt.wantBadKey}} {
					var keys []string
					for _, e := range logged(hook, c.msg) {
						keys = append(keys, fmt.Sprint(e.Data["key"]))
						if e.Data["bucket"] != "b" {
							t.Errorf("log entry %q has bucket %v, want b", e.Message, e.Data["bucket"])
						}
					}
					if !slices.Equal(sorted(keys), sorted(c.want)) {
						t.Errorf("logged %q for keys %q, want %q", c.msg, keys, c.want)
					}
				}
			})
		}
	}
}

// TestListAllPagination lists a directory of 2,500 files and two
// subdirectories through pages of 1000 and of 7, and checks that every entry
// appears once and that the listing took exactly one LIST per page.
func TestListAllPagination(t *testing.T) {
	for _, pageSize := range []int32{1000, 7} {
		t.Run(fmt.Sprintf("pages of %d", pageSize), func(t *testing.T) {
			f := store.NewFake()
			want := map[string]string{}
			for i := range 2500 {
				name := fmt.Sprintf("f%04d", i)
				f.Put("b", "dir/"+name, make([]byte, i%13))
				want[name] = fmt.Sprintf("file:%d", i%13)
			}
			f.Put("b", "dir/d1/x", nil)
			f.Put("b", "dir/f1000/y", nil) // clashes with the file f1000
			want["d1"] = "dir"
			want["f1000"] = "dir"
			f.SetPageSize(pageSize)
			cfg, _, _ := testConfig(f, "b")
			d := subdir(testDir(t, cfg), "dir/")
			entries, err := d.listAll(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(entries); !maps.Equal(got, want) {
				t.Errorf("got %d entries, want %d", len(got), len(want))
				for n, w := range want {
					if got[n] != w {
						t.Errorf("entry %q = %q, want %q", n, got[n], w)
					}
				}
			}
			// 2,501 distinct names on pages (f1000 is listed as an object
			// and a prefix: 2,502 listing entries).
			wantPages := int64((2502 + int(pageSize) - 1) / int(pageSize))
			if got := f.Calls("ListObjectsV2"); got != wantPages {
				t.Errorf("listing took %d LIST calls, want %d", got, wantPages)
			}
		})
	}
}

// TestListAllError checks that a failing page fails the whole listing and
// that a listing error maps to the right errno in Readdir.
func TestListAllError(t *testing.T) {
	f := store.NewFake()
	for i := range 5 {
		f.Put("b", fmt.Sprintf("k%d", i), nil)
	}
	f.SetPageSize(2)
	f.SetFailure(func(op, bucket, key string) error {
		if op == "ListObjectsV2" && f.Calls(op) == 2 {
			return &store.Error{Op: op, Status: 403, Kind: store.ErrAccessDenied}
		}
		return nil
	})
	cfg, _, _ := testConfig(f, "b")
	if _, err := testDir(t, cfg).listAll(context.Background()); !errors.Is(err, store.ErrAccessDenied) {
		t.Fatalf("listAll with the second page denied: %v, want ErrAccessDenied", err)
	}
	f.SetFailure(func(op, bucket, key string) error {
		return &store.Error{Op: op, Status: 403, Kind: store.ErrAccessDenied}
	})
	cfg, _, _ = testConfig(f, "b")
	if _, errno := testDir(t, cfg).Readdir(context.Background()); errno != syscall.EACCES {
		t.Errorf("Readdir with LIST denied: errno %v, want EACCES", errno)
	}
}

// TestReaddir checks the entries Readdir returns: sorted names, file and
// directory modes, and the stable inode numbers lookups also use.
func TestReaddir(t *testing.T) {
	f := store.NewFake()
	f.Put("b", "p/zeta", []byte("z"))
	f.Put("b", "p/alpha", []byte("a"))
	f.Put("b", "p/mid/x", []byte("x"))
	f.Put("b", "p/", nil)
	cfg, _, _ := testConfig(f, "b")
	cfg.Prefix = "p/"
	d := testDir(t, cfg)
	stream, errno := d.Readdir(context.Background())
	if errno != 0 {
		t.Fatalf("Readdir: %v", errno)
	}
	var got []fuse.DirEntry
	for stream.HasNext() {
		e, errno := stream.Next()
		if errno != 0 {
			t.Fatalf("Next: %v", errno)
		}
		got = append(got, e)
	}
	want := []fuse.DirEntry{
		{Name: "alpha", Mode: fuse.S_IFREG, Ino: d.m.ino("b", "p/alpha")},
		{Name: "mid", Mode: fuse.S_IFDIR, Ino: d.m.ino("b", "p/mid/")},
		{Name: "zeta", Mode: fuse.S_IFREG, Ino: d.m.ino("b", "p/zeta")},
	}
	if len(got) != len(want) {
		t.Fatalf("Readdir = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Mode != want[i].Mode || got[i].Ino != want[i].Ino {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestLookupCache drives single-name lookups with a fake clock and checks
// when they reach the store: a found name is remembered for MetadataTTL, a
// missing one for NegativeTTL, and each remote lookup costs one HEAD and one
// LIST.
func TestLookupCache(t *testing.T) {
	const ttl, negTTL = time.Minute, 10 * time.Second
	type step struct {
		advance   time.Duration
		before    func(f *store.Fake) // changes the bucket before the lookup
		name      string
		wantFound bool
		wantDir   bool
		wantSize  int64
		wantHeads int64 // cumulative
		wantLists int64 // cumulative
	}
	put := func(key, data string) func(f *store.Fake) {
		return func(f *store.Fake) { f.Put("b", key, []byte(data)) }
	}
	del := func(key string) func(f *store.Fake) {
		return func(f *store.Fake) { f.Delete("b", key) }
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "a found file is cached for MetadataTTL", steps: []step{
			{name: "f", wantFound: true, wantSize: 5, wantHeads: 1, wantLists: 1},
			{advance: ttl - time.Nanosecond, name: "f", wantFound: true, wantSize: 5, wantHeads: 1, wantLists: 1},
			{advance: time.Nanosecond, name: "f", wantFound: true, wantSize: 5, wantHeads: 2, wantLists: 2},
		}},
		{name: "a cached file hides changes until MetadataTTL", steps: []step{
			{name: "f", wantFound: true, wantSize: 5, wantHeads: 1, wantLists: 1},
			{before: put("f", "longer data"), advance: ttl / 2, name: "f", wantFound: true, wantSize: 5, wantHeads: 1, wantLists: 1},
			{advance: ttl / 2, name: "f", wantFound: true, wantSize: 11, wantHeads: 2, wantLists: 2},
		}},
		{name: "a deleted file is found until MetadataTTL", steps: []step{
			{name: "f", wantFound: true, wantSize: 5, wantHeads: 1, wantLists: 1},
			{before: del("f"), advance: ttl - time.Nanosecond, name: "f", wantFound: true, wantSize: 5, wantHeads: 1, wantLists: 1},
			{advance: time.Nanosecond, name: "f", wantFound: false, wantHeads: 2, wantLists: 2},
		}},
		{name: "a miss is cached for NegativeTTL", steps: []step{
			{name: "nope", wantHeads: 1, wantLists: 1},
			{advance: negTTL - time.Nanosecond, name: "nope", wantHeads: 1, wantLists: 1},
			{advance: time.Nanosecond, name: "nope", wantHeads: 2, wantLists: 2},
		}},
		{name: "a new object appears after NegativeTTL", steps: []step{
			{name: "late", wantHeads: 1, wantLists: 1},
			{before: put("late", "hi"), advance: negTTL - time.Nanosecond, name: "late", wantHeads: 1, wantLists: 1},
			{advance: time.Nanosecond, name: "late", wantFound: true, wantSize: 2, wantHeads: 2, wantLists: 2},
		}},
		{name: "names are cached separately", steps: []step{
			{name: "f", wantFound: true, wantSize: 5, wantHeads: 1, wantLists: 1},
			{name: "nope", wantHeads: 2, wantLists: 2},
			{name: "d", wantFound: true, wantDir: true, wantHeads: 3, wantLists: 3},
			{name: "f", wantFound: true, wantSize: 5, wantHeads: 3, wantLists: 3},
		}},
		{name: "a directory", steps: []step{
			{name: "d", wantFound: true, wantDir: true, wantHeads: 1, wantLists: 1},
			{advance: ttl - time.Nanosecond, name: "d", wantFound: true, wantDir: true, wantHeads: 1, wantLists: 1},
		}},
		{name: "a marker-only directory", steps: []step{
			{name: "m", wantFound: true, wantDir: true, wantHeads: 1, wantLists: 1},
		}},
		{name: "a directory wins over an object of its name", steps: []step{
			{name: "both", wantFound: true, wantDir: true, wantHeads: 1, wantLists: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := store.NewFake()
			f.Put("b", "f", []byte("hello"))
			f.Put("b", "d/x", []byte("x"))
			f.Put("b", "m/", nil)
			f.Put("b", "both", []byte("obj"))
			f.Put("b", "both/inner", []byte("x"))
			cfg, clock, _ := testConfig(f, "b")
			cfg.MetadataTTL, cfg.NegativeTTL = ttl, negTTL
			d := testDir(t, cfg)
			for i, s := range tt.steps {
				if s.before != nil {
					s.before(f)
				}
				clock.Advance(s.advance)
				e, found, err := d.lookupEntry(context.Background(), s.name)
				if err != nil {
					t.Fatalf("step %d: lookup %q: %v", i, s.name, err)
				}
				if found != s.wantFound || (found && (e.dir != s.wantDir || e.name != s.name)) {
					t.Fatalf("step %d: lookup %q = %+v found=%v, want found=%v dir=%v", i, s.name, e, found, s.wantFound, s.wantDir)
				}
				if found && !e.dir && e.obj.Size != s.wantSize {
					t.Errorf("step %d: size %d, want %d", i, e.obj.Size, s.wantSize)
				}
				c := callsOf(f)
				if c.head != s.wantHeads || c.list != s.wantLists {
					t.Errorf("step %d: %d HEAD and %d LIST so far, want %d and %d", i, c.head, c.list, s.wantHeads, s.wantLists)
				}
			}
		})
	}
}

// TestLookupClashLoggedOnce checks that a name that is both an object and a
// directory resolves to the directory and is logged once per mount, however
// often it is looked up.
func TestLookupClashLoggedOnce(t *testing.T) {
	f := store.NewFake()
	f.Put("b", "both", []byte("obj"))
	f.Put("b", "both/inner", []byte("x"))
	cfg, clock, hook := testConfig(f, "b")
	d := testDir(t, cfg)
	for range 3 {
		e, found, err := d.lookupEntry(context.Background(), "both")
		if err != nil || !found || !e.dir {
			t.Fatalf("lookup = %+v, %v, %v; want a directory", e, found, err)
		}
		clock.Advance(cfg.MetadataTTL) // force a remote lookup each time
	}
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(logged(hook, msgClash)); got != 1 {
		t.Errorf("clash logged %d times, want once", got)
	}
	if got := f.Calls("HeadObject"); got != 3 {
		t.Errorf("%d HEAD calls, want 3 (one per expired lookup)", got)
	}
}

// TestFreshListingAnswersLookups checks that while a directory listing is
// younger than MetadataTTL, lookups of names in it and of names missing
// from it cost no request at all, that a listing replaces cached
// single-name answers, and that an expired listing no longer answers.
func TestFreshListingAnswersLookups(t *testing.T) {
	f := store.NewFake()
	f.Put("b", "f", []byte("hello"))
	f.Put("b", "d/x", []byte("x"))
	cfg, clock, _ := testConfig(f, "b")
	d := testDir(t, cfg)

	// A miss is cached for NegativeTTL...
	if _, found, err := d.lookupEntry(context.Background(), "new"); err != nil || found {
		t.Fatalf("lookup of new before it exists: found=%v err=%v", found, err)
	}
	f.Put("b", "new", []byte("n"))
	clock.Advance(time.Second)
	// ...but a listing made afterwards supersedes it.
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := callsOf(f)
	for _, c := range []struct {
		name      string
		wantFound bool
		wantDir   bool
	}{
		{"f", true, false}, {"d", true, true}, {"new", true, false}, {"missing", false, false}, {"x", false, false},
	} {
		e, found, err := d.lookupEntry(context.Background(), c.name)
		if err != nil || found != c.wantFound || e.dir != c.wantDir {
			t.Errorf("lookup %q = %+v found=%v err=%v; want found=%v dir=%v", c.name, e, found, err, c.wantFound, c.wantDir)
		}
	}
	clock.Advance(cfg.MetadataTTL - time.Nanosecond)
	if _, found, _ := d.lookupEntry(context.Background(), "f"); !found {
		t.Error("f not found just before the listing expires")
	}
	if got := callsOf(f).sub(before); got != (calls{}) {
		t.Errorf("lookups in a fresh listing made requests: %+v", got)
	}
	// A second listing within the TTL is served from memory too.
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := callsOf(f).sub(before); got != (calls{}) {
		t.Errorf("a fresh listing was fetched again: %+v", got)
	}

	clock.Advance(time.Nanosecond)
	if _, found, err := d.lookupEntry(context.Background(), "f"); err != nil || !found {
		t.Fatalf("lookup after expiry: found=%v err=%v", found, err)
	}
	if got := callsOf(f).sub(before); got != (calls{head: 1, list: 1}) {
		t.Errorf("lookup after the listing expired made %+v, want one HEAD and one LIST", got)
	}
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := callsOf(f).sub(before); got.list != 2 {
		t.Errorf("listing after expiry: %d LIST calls since the first listing, want 2 (the lookup's and the new listing's)", got.list)
	}
}

// TestLookupErrors checks that failed remote lookups are not cached and map
// to errnos, that a LIST failure fails the lookup even if HEAD worked, and
// that names that cannot exist are refused without a request.
func TestLookupErrors(t *testing.T) {
	denied := &store.Error{Op: "HeadObject", Status: 403, Code: "AccessDenied", Kind: store.ErrAccessDenied}
	throttled := &store.Error{Op: "ListObjectsV2", Status: 503, Code: "SlowDown", Kind: store.ErrThrottled}
	tests := []struct {
		name      string
		fail      func(op, bucket, key string) error
		lookup    string
		wantErr   error
		wantErrno syscall.Errno
	}{
		{name: "HEAD denied", lookup: "secret", wantErr: store.ErrAccessDenied, wantErrno: syscall.EACCES,
			fail: func(op, _, key string) error {
				if op == "HeadObject" {
					return denied
				}
				return nil
			}},
		{name: "LIST throttled", lookup: "f", wantErr: store.ErrThrottled, wantErrno: syscall.EAGAIN,
			fail: func(op, _, _ string) error {
				if op == "ListObjectsV2" {
					return throttled
				}
				return nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := store.NewFake()
			f.Put("b", "f", []byte("x"))
			f.Put("b", "secret", []byte("x"))
			f.SetFailure(tt.fail)
			cfg, _, _ := testConfig(f, "b")
			d := testDir(t, cfg)
			for i := range 2 {
				if _, _, err := d.lookupEntry(context.Background(), tt.lookup); !errors.Is(err, tt.wantErr) {
					t.Fatalf("lookup %d: %v, want %v", i, err, tt.wantErr)
				}
			}
			if got := f.Calls("HeadObject"); got != 2 {
				t.Errorf("%d HEAD calls for two failing lookups, want 2 (errors are not cached)", got)
			}
			if _, errno := d.Lookup(context.Background(), tt.lookup, &fuse.EntryOut{}); errno != tt.wantErrno {
				t.Errorf("Lookup errno = %v, want %v", errno, tt.wantErrno)
			}
		})
	}

	t.Run("invalid names", func(t *testing.T) {
		f := store.NewFake()
		f.CreateBucket("b")
		cfg, _, _ := testConfig(f, "b")
		d := testDir(t, cfg)
		for _, name := range []string{"", ".", "..", strings.Repeat("n", 256), "a\x00b"} {
			if _, errno := d.Lookup(context.Background(), name, &fuse.EntryOut{}); errno != syscall.ENOENT {
				t.Errorf("Lookup(%q) = %v, want ENOENT", name, errno)
			}
		}
		if got := callsOf(f); got != (calls{}) {
			t.Errorf("invalid names made requests: %+v", got)
		}
	})

	t.Run("missing name", func(t *testing.T) {
		f := store.NewFake()
		f.CreateBucket("b")
		cfg, _, _ := testConfig(f, "b")
		if _, errno := testDir(t, cfg).Lookup(context.Background(), "nope", &fuse.EntryOut{}); errno != syscall.ENOENT {
			t.Errorf("Lookup(nope) = %v, want ENOENT", errno)
		}
	})
}

// TestListingSupersedesLookups checks that a full listing replaces cached
// single-name answers: with a NegativeTTL longer than the MetadataTTL, a
// miss cached before a listing that found the name must not come back once
// the listing expires.
func TestListingSupersedesLookups(t *testing.T) {
	f := store.NewFake()
	f.CreateBucket("b")
	cfg, clock, _ := testConfig(f, "b")
	cfg.MetadataTTL, cfg.NegativeTTL = time.Minute, time.Hour
	d := testDir(t, cfg)
	if _, found, err := d.lookupEntry(context.Background(), "late"); err != nil || found {
		t.Fatalf("first lookup: found=%v err=%v", found, err)
	}
	f.Put("b", "late", []byte("x"))
	clock.Advance(time.Second)
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(cfg.MetadataTTL)
	if _, found, err := d.lookupEntry(context.Background(), "late"); err != nil || !found {
		t.Errorf("lookup after the listing expired: found=%v err=%v; want the object the listing saw", found, err)
	}
}

// TestNewUploadVisibleAfterNegativeTTL: a name missing from a listing is
// trusted missing only for NegativeTTL, even while the listing itself is
// still fresh, so a new upload shows up within the negative TTL.
func TestNewUploadVisibleAfterNegativeTTL(t *testing.T) {
	f := store.NewFake()
	f.Put("b", "old", []byte("o"))
	cfg, clock, _ := testConfig(f, "b")
	d := testDir(t, cfg)
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.Put("b", "new", []byte("n"))
	clock.Advance(cfg.NegativeTTL / 2)
	if _, found, _ := d.lookupEntry(context.Background(), "new"); found {
		t.Fatal("new found before the negative TTL passed without asking the store")
	}
	clock.Advance(cfg.NegativeTTL)
	if clock.Now().Sub(d.listedAt) >= cfg.MetadataTTL {
		t.Fatal("test needs the listing still fresh")
	}
	if _, found, err := d.lookupEntry(context.Background(), "new"); err != nil || !found {
		t.Errorf("new upload after the negative TTL: found=%v err=%v", found, err)
	}
}

// tokensStore answers every List with an empty page and a new continuation
// token: a server whose listing never ends.
type tokensStore struct {
	store.Store
	calls int
}

func (s *tokensStore) List(context.Context, store.ListInput) (*store.ListPage, error) {
	s.calls++
	return &store.ListPage{NextToken: fmt.Sprint("t", s.calls)}, nil
}

// TestEndlessListingFails checks that a listing of empty pages with ever
// new tokens fails after maxEmptyPages instead of looping, and that Readdir
// turns it into EIO.
func TestEndlessListingFails(t *testing.T) {
	st := &tokensStore{}
	d := testDir(t, Config{Store: st, Bucket: "b", Prefix: "dir/", Log: discardLog()})
	if _, errno := d.Readdir(context.Background()); errno != syscall.EIO {
		t.Errorf("Readdir = %v, want EIO", errno)
	}
	if st.calls != maxEmptyPages+1 {
		t.Errorf("%d LIST calls, want %d", st.calls, maxEmptyPages+1)
	}
}

// TestLogOnceBounded checks that the log-once set stops growing at
// maxLoggedOnce and counts the warnings it no longer logs.
func TestLogOnceBounded(t *testing.T) {
	d := testDir(t, Config{Store: store.NewFake(), Bucket: "b", Log: discardLog()})
	for i := range maxLoggedOnce + 100 {
		d.m.logOnce("bad key", "b", fmt.Sprint(i))
	}
	d.m.logOnce("bad key", "b", "0") // remembered: neither logged nor counted
	if n := len(d.m.logged); n != maxLoggedOnce {
		t.Errorf("log-once set holds %d, want %d", n, maxLoggedOnce)
	}
	if n := d.m.cfg.Counters.WarningsSuppressed.Load(); n != 100 {
		t.Errorf("%d warnings suppressed, want 100", n)
	}
}

// TestListingSkippedKeys checks that keys the store could not name (it
// reports them in ListPage.Skipped) leave the rest of the directory listed.
func TestListingSkippedKeys(t *testing.T) {
	f := store.NewFake()
	f.Put("b", "d/ok", []byte("x"))
	f.PutUnnamed("b", "d/bad%zz")
	d := testDir(t, Config{Store: f, Bucket: "b", Prefix: "d/", Log: discardLog()})
	entries, err := d.listAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries["ok"].obj.Key != "d/ok" {
		t.Errorf("entries %v, want only ok", entries)
	}
	if !d.m.logged["skipping listed key that does not decode or lies outside the directory\x00b\x00d/bad%zz"] {
		t.Errorf("skipped key not logged: %v", d.m.logged)
	}
}

// blockingStore counts List calls and holds each until release is closed.
type blockingStore struct {
	*store.Fake
	lists   atomic.Int64
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStore) List(ctx context.Context, in store.ListInput) (*store.ListPage, error) {
	s.lists.Add(1)
	s.entered <- struct{}{}
	<-s.release
	return s.Fake.List(ctx, in)
}

// TestConcurrentListingsShareOneList lists a directory from five callers
// at once: one LIST reaches the store and all five get its entries.
func TestConcurrentListingsShareOneList(t *testing.T) {
	f := store.NewFake()
	f.Put("b", "d/a", []byte("x"))
	f.Put("b", "d/b", []byte("y"))
	st := &blockingStore{Fake: f, entered: make(chan struct{}, 10), release: make(chan struct{})}
	d := testDir(t, Config{Store: st, Bucket: "b", Prefix: "d/", Log: discardLog(), MetadataTTL: time.Minute})
	var wg sync.WaitGroup
	results := make(chan int, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, names, err := d.listing(context.Background())
			if err != nil {
				t.Error(err)
			}
			results <- len(names)
		}()
	}
	<-st.entered
	// Give the other callers time to reach the listing; any that starts
	// its own LIST would show in the count.
	time.Sleep(50 * time.Millisecond)
	close(st.release)
	wg.Wait()
	close(results)
	for n := range results {
		if n != 2 {
			t.Errorf("a caller got %d names, want 2", n)
		}
	}
	if n := st.lists.Load(); n != 1 {
		t.Errorf("%d LIST calls for five concurrent listings, want 1", n)
	}
}

// TestListingsBoundedInBytes lists eight directories of 100 names each with
// a budget that holds about three listings: the bytes held never pass the
// budget, the listings read longest ago are dropped first (listed again from
// the store when read), and the most recent stay.
func TestListingsBoundedInBytes(t *testing.T) {
	f := store.NewFake()
	for d := range 8 {
		for i := range 100 {
			f.Put("b", fmt.Sprintf("d%d/file-%03d.mp3", d, i), nil)
		}
	}
	cfg := Config{Store: f, Bucket: "b", Log: discardLog(), MetadataTTL: time.Hour}
	root := testDir(t, cfg)
	dirs := make([]*dirNode, 8)
	for i := range dirs {
		dirs[i] = &dirNode{base: base{m: root.m}, bucket: "b", prefix: fmt.Sprintf("d%d/", i)}
	}
	if _, _, err := dirs[0].listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	one := root.m.listings.usedBytes()
	root.m.listings.budget = 3*one + one/2
	for _, d := range dirs[1:] {
		if _, _, err := d.listing(context.Background()); err != nil {
			t.Fatal(err)
		}
		if used := root.m.listings.usedBytes(); used > root.m.listings.budget {
			t.Fatalf("listings hold %d bytes, budget %d", used, root.m.listings.budget)
		}
	}
	held := func(d *dirNode) bool { d.mu.Lock(); defer d.mu.Unlock(); return d.entries != nil }
	for i, d := range dirs {
		if want := i >= 5; held(d) != want {
			t.Errorf("d%d holds its listing: %v, want %v", i, held(d), want)
		}
	}
	lists := f.Calls("ListObjectsV2")
	if _, names, err := dirs[0].listing(context.Background()); err != nil || len(names) != 100 {
		t.Fatalf("relisting a dropped directory: %d names, %v", len(names), err)
	}
	if f.Calls("ListObjectsV2") == lists {
		t.Error("a dropped listing was served without listing again")
	}
}

// TestLookupsBounded looks up more names than a directory keeps, all within
// their TTL: the per-name cache stays at maxLookups.
func TestLookupsBounded(t *testing.T) {
	f := store.NewFake()
	cfg, _, _ := testConfig(f, "b")
	d := testDir(t, cfg)
	for i := range maxLookups + 50 {
		if _, _, err := d.lookupEntry(context.Background(), fmt.Sprint("missing-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(d.lookups); n > maxLookups {
		t.Errorf("%d single-name answers kept, want at most %d", n, maxLookups)
	}
}
