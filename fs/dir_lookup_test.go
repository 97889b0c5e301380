package fs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/hanwen/go-fuse/v2/fuse"
)

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
		return func(f *store.Fake) { f.Seed("b", key, []byte(data)) }
	}
	del := func(key string) func(f *store.Fake) {
		return func(f *store.Fake) { f.Remove("b", key) }
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
			// The marker's HEAD reads the directory's mtime.
			{name: "m", wantFound: true, wantDir: true, wantHeads: 2, wantLists: 1},
		}},
		{name: "a directory wins over an object of its name", steps: []step{
			{name: "both", wantFound: true, wantDir: true, wantHeads: 1, wantLists: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := store.NewFake()
			f.Seed("b", "f", []byte("hello"))
			f.Seed("b", "d/x", []byte("x"))
			f.Seed("b", "m/", nil)
			f.Seed("b", "both", []byte("obj"))
			f.Seed("b", "both/inner", []byte("x"))
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
	f.Seed("b", "both", []byte("obj"))
	f.Seed("b", "both/inner", []byte("x"))
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
	f.Seed("b", "f", []byte("hello"))
	f.Seed("b", "d/x", []byte("x"))
	cfg, clock, _ := testConfig(f, "b")
	d := testDir(t, cfg)

	// A miss is cached for NegativeTTL...
	if _, found, err := d.lookupEntry(context.Background(), "new"); err != nil || found {
		t.Fatalf("lookup of new before it exists: found=%v err=%v", found, err)
	}
	f.Seed("b", "new", []byte("n"))
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
			f.Seed("b", "f", []byte("x"))
			f.Seed("b", "secret", []byte("x"))
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
	f.Seed("b", "late", []byte("x"))
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
	f.Seed("b", "old", []byte("o"))
	cfg, clock, _ := testConfig(f, "b")
	d := testDir(t, cfg)
	if _, _, err := d.listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.Seed("b", "new", []byte("n"))
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
