package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

// listAllPages follows continuation tokens through a whole listing and
// returns every object key and common prefix in the order S3 would send them
// (sorted, objects and prefixes interleaved), plus the number of pages. It
// fails the test if a page is larger than pageSize or a token repeats.
func listAllPages(t *testing.T, f *Fake, in ListInput, pageSize int) (entries []string, pages int) {
	t.Helper()
	seenTokens := map[string]bool{}
	for {
		page, err := f.List(context.Background(), in)
		if err != nil {
			t.Fatalf("List(%+v): %v", in, err)
		}
		pages++
		var onPage []string
		for _, o := range page.Objects {
			onPage = append(onPage, o.Key)
		}
		onPage = append(onPage, page.Prefixes...)
		if len(onPage) > pageSize {
			t.Fatalf("page %d holds %d entries, more than the page size %d", pages, len(onPage), pageSize)
		}
		if page.NextToken != "" && len(onPage) == 0 {
			t.Fatalf("page %d is empty but has a continuation token", pages)
		}
		sort.Strings(onPage)
		entries = append(entries, onPage...)
		if page.NextToken == "" {
			return entries, pages
		}
		if seenTokens[page.NextToken] {
			t.Fatalf("continuation token %q returned twice", page.NextToken)
		}
		seenTokens[page.NextToken] = true
		in.Token = page.NextToken
		if pages > 100000 {
			t.Fatal("listing does not end")
		}
	}
}

// wantListing is an independent model of ListObjectsV2: the keys under
// prefix, each cut after the first delimiter following the prefix, without
// duplicates, sorted.
func wantListing(keys []string, prefix, delim string) []string {
	set := map[string]bool{}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if delim != "" {
			if i := strings.Index(k[len(prefix):], delim); i >= 0 {
				k = k[:len(prefix)+i+len(delim)]
			}
		}
		set[k] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func newFakeWith(keys ...string) *Fake {
	f := NewFake()
	f.CreateBucket("b")
	for _, k := range keys {
		f.Seed("b", k, []byte("data of "+k))
	}
	return f
}

// TestFakeListDelimiter checks one-page listings: objects directly under the
// prefix are returned as objects, deeper keys are rolled up into common
// prefixes that end with the delimiter, and keys outside the prefix are left
// out.
func TestFakeListDelimiter(t *testing.T) {
	keys := []string{
		"a", "a-b", "a/", "a/b/c", "a/b/d", "a/e", "a/f/", "a/f/g", "a0", "ab/x", "b", "b/c/d",
	}
	tests := []struct {
		name         string
		prefix       string
		delim        string
		wantObjects  []string
		wantPrefixes []string
	}{
		{
			name:         "root with delimiter",
			delim:        "/",
			wantObjects:  []string{"a", "a-b", "a0", "b"},
			wantPrefixes: []string{"a/", "ab/", "b/"},
		},
		{
			name:         "directory prefix with delimiter includes its marker",
			prefix:       "a/",
			delim:        "/",
			wantObjects:  []string{"a/", "a/e"},
			wantPrefixes: []string{"a/b/", "a/f/"},
		},
		{
			name:         "partial name prefix with delimiter",
			prefix:       "a",
			delim:        "/",
			wantObjects:  []string{"a", "a-b", "a0"},
			wantPrefixes: []string{"a/", "ab/"},
		},
		{
			name:        "no delimiter lists every key under the prefix",
			prefix:      "a/",
			wantObjects: []string{"a/", "a/b/c", "a/b/d", "a/e", "a/f/", "a/f/g"},
		},
		{
			name:   "prefix that matches nothing",
			prefix: "zzz/",
			delim:  "/",
		},
	}
	f := newFakeWith(keys...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := f.List(context.Background(), ListInput{Bucket: "b", Prefix: tt.prefix, Delimiter: tt.delim})
			if err != nil {
				t.Fatal(err)
			}
			var gotObjects []string
			for _, o := range page.Objects {
				gotObjects = append(gotObjects, o.Key)
			}
			if !slices.Equal(gotObjects, tt.wantObjects) {
				t.Errorf("objects = %q, want %q", gotObjects, tt.wantObjects)
			}
			if !slices.Equal(page.Prefixes, tt.wantPrefixes) {
				t.Errorf("prefixes = %q, want %q", page.Prefixes, tt.wantPrefixes)
			}
			if page.NextToken != "" {
				t.Errorf("NextToken = %q on a single page", page.NextToken)
			}
		})
	}
}

// TestFakeListObjectAttributes checks that listed objects carry size, ETag,
// modification time and storage class.
func TestFakeListObjectAttributes(t *testing.T) {
	f := NewFake()
	f.SeedObject("b", "cold", []byte("12345"), "GLACIER", nil)
	head, err := f.Head(context.Background(), "b", "cold")
	if err != nil {
		t.Fatal(err)
	}
	page, err := f.List(context.Background(), ListInput{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 1 {
		t.Fatalf("got %d objects, want 1", len(page.Objects))
	}
	o := page.Objects[0]
	if o.Size != 5 || o.ETag != head.ETag || !o.LastModified.Equal(head.LastModified) || o.StorageClass != "GLACIER" {
		t.Errorf("listed %+v, want size 5, ETag %s, mtime %v, class GLACIER", o, head.ETag, head.LastModified)
	}
	if !strings.HasPrefix(o.ETag, `"`) || !strings.HasSuffix(o.ETag, `"`) {
		t.Errorf("ETag %s is not quoted like S3's", o.ETag)
	}
}

// TestFakeListPagination lists data sets whose common prefixes straddle page
// boundaries with many page sizes, and checks that every key and prefix comes
// back exactly once, in order, in pages no larger than the page size and no
// more pages than needed.
func TestFakeListPagination(t *testing.T) {
	var flat []string
	for i := range 2500 {
		flat = append(flat, fmt.Sprintf("k%05d", i))
	}
	// Directories of various sizes between files, so a prefix covers keys
	// on several pages, plus names that sort around "/" ('-' < '/' < '0').
	var mixed []string
	for i := range 40 {
		mixed = append(mixed, fmt.Sprintf("f%02d", i))
		for j := range i % 7 {
			mixed = append(mixed, fmt.Sprintf("f%02d/g%d", i, j))
			mixed = append(mixed, fmt.Sprintf("f%02d/sub/h%d", i, j))
		}
	}
	mixed = append(mixed, "z", "z-", "z/", "z/a", "z/b/c", "z0", "z/a/b")

	tests := []struct {
		name     string
		keys     []string
		prefix   string
		delim    string
		pageSize int32
		maxKeys  int32
	}{
		{name: "2500 flat keys, pages of 1000", keys: flat, delim: "/", pageSize: 1000},
		{name: "2500 flat keys, pages of 3", keys: flat, delim: "/", pageSize: 3},
		{name: "2500 flat keys, MaxKeys 7 below page size", keys: flat, pageSize: 1000, maxKeys: 7},
		{name: "2500 flat keys, MaxKeys above page size is clamped", keys: flat, pageSize: 1000, maxKeys: 5000},
		{name: "mixed, pages of 1", keys: mixed, delim: "/", pageSize: 1},
		{name: "mixed, pages of 2", keys: mixed, delim: "/", pageSize: 2},
		{name: "mixed, pages of 3", keys: mixed, delim: "/", pageSize: 3},
		{name: "mixed, pages of 1000", keys: mixed, delim: "/", pageSize: 1000},
		{name: "mixed under a prefix, pages of 2", keys: mixed, prefix: "z/", delim: "/", pageSize: 2},
		{name: "mixed without delimiter, pages of 3", keys: mixed, pageSize: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeWith(tt.keys...)
			f.SetPageSize(tt.pageSize)
			limit := int(tt.pageSize)
			if tt.maxKeys > 0 && tt.maxKeys < tt.pageSize {
				limit = int(tt.maxKeys)
			}
			got, pages := listAllPages(t, f, ListInput{Bucket: "b", Prefix: tt.prefix, Delimiter: tt.delim, MaxKeys: tt.maxKeys}, limit)
			want := wantListing(tt.keys, tt.prefix, tt.delim)
			if !slices.Equal(got, want) {
				t.Errorf("listing differs from the model:\n got %d entries %q\nwant %d entries %q", len(got), firstN(got), len(want), firstN(want))
			}
			if wantPages := max(1, (len(want)+limit-1)/limit); pages != wantPages {
				t.Errorf("took %d pages, want %d for %d entries in pages of %d", pages, wantPages, len(want), limit)
			}
			if calls := f.Calls("ListObjectsV2"); calls != int64(pages) {
				t.Errorf("Calls(ListObjectsV2) = %d, want %d", calls, pages)
			}
		})
	}
}

func firstN(s []string) []string {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

// TestFakeListMissingBucket checks that listing a bucket that does not exist
// fails with ErrNotFound and the NoSuchBucket code.
func TestFakeListMissingBucket(t *testing.T) {
	f := NewFake()
	_, err := f.List(context.Background(), ListInput{Bucket: "nope"})
	if !errors.Is(err, ErrNotFound) || ErrorCode(err) != "NoSuchBucket" {
		t.Fatalf("List of a missing bucket: %v, want ErrNotFound with code NoSuchBucket", err)
	}
}

// TestFakeListBuckets checks that buckets, empty or not, are listed sorted.
func TestFakeListBuckets(t *testing.T) {
	f := NewFake()
	f.Seed("zeta", "k", nil)
	f.CreateBucket("alpha")
	f.Seed("mid", "k", nil)
	f.CreateBucket("alpha") // twice is harmless and keeps the bucket
	got, err := f.ListBuckets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range got {
		names = append(names, b.Name)
	}
	if want := []string{"alpha", "mid", "zeta"}; !slices.Equal(names, want) {
		t.Errorf("buckets = %q, want %q", names, want)
	}
}

// TestFakeUnnamed: an entry added with PutUnnamed is reported in Skipped,
// in key order and within the page size, never as an object or prefix;
// pages continue past it, and HEAD and GET do not find it.
func TestFakeUnnamed(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "dir/a", []byte("a"))
	f.PutUnnamed("b", "dir/bad%zz")
	f.PutUnnamed("b", "dir/sub/bad%zz")
	f.Seed("b", "dir/c", []byte("c"))
	f.SetPageSize(1)
	var keys, skipped []string
	in := ListInput{Bucket: "b", Prefix: "dir/", Delimiter: "/"}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("listing does not end")
		}
		page, err := f.List(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(page.Objects) + len(page.Prefixes) + len(page.Skipped); n > 1 {
			t.Fatalf("page of %d entries, want at most 1", n)
		}
		for _, o := range page.Objects {
			keys = append(keys, o.Key)
		}
		keys = append(keys, page.Prefixes...)
		skipped = append(skipped, page.Skipped...)
		if page.NextToken == "" {
			break
		}
		in.Token = page.NextToken
	}
	if want := []string{"dir/a", "dir/c"}; !slices.Equal(keys, want) {
		t.Errorf("entries = %q, want %q", keys, want)
	}
	if want := []string{"dir/bad%zz"}; !slices.Equal(skipped, want) {
		t.Errorf("skipped = %q, want %q", skipped, want)
	}
	if _, err := f.Head(ctx, "b", "dir/bad%zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Head of an unnamed entry: %v, want ErrNotFound", err)
	}
	if _, err := f.Get(ctx, GetInput{Bucket: "b", Key: "dir/bad%zz", Length: -1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unnamed entry: %v, want ErrNotFound", err)
	}
}
