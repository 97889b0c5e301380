package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
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
		f.Put("b", k, []byte("data of "+k))
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
	f.PutObject("b", "cold", []byte("12345"), "GLACIER", nil)
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
	f.Put("zeta", "k", nil)
	f.CreateBucket("alpha")
	f.Put("mid", "k", nil)
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

// TestFakeGetRange reads ranges of a 10-byte object and of an empty one:
// ranges inside the object return exactly their bytes, a length past the end
// is clamped, and a range starting at or after the end fails with
// ErrInvalidRange (HTTP 416), as S3 does; a whole-object read of an empty
// object succeeds.
func TestFakeGetRange(t *testing.T) {
	f := NewFake()
	f.Put("b", "ten", []byte("0123456789"))
	f.Put("b", "empty", nil)
	tests := []struct {
		name    string
		key     string
		off     int64
		length  int64
		want    string
		wantErr error
	}{
		{name: "whole object", key: "ten", off: 0, length: -1, want: "0123456789"},
		{name: "middle", key: "ten", off: 3, length: 4, want: "3456"},
		{name: "first byte", key: "ten", off: 0, length: 1, want: "0"},
		{name: "last byte", key: "ten", off: 9, length: 1, want: "9"},
		{name: "to the end", key: "ten", off: 5, length: -1, want: "56789"},
		{name: "length past the end is clamped", key: "ten", off: 8, length: 100, want: "89"},
		{name: "exact length to the end", key: "ten", off: 4, length: 6, want: "456789"},
		{name: "offset at the end", key: "ten", off: 10, length: 1, wantErr: ErrInvalidRange},
		{name: "open range at the end", key: "ten", off: 10, length: -1, wantErr: ErrInvalidRange},
		{name: "offset past the end", key: "ten", off: 11, length: 5, wantErr: ErrInvalidRange},
		{name: "zero-length range inside", key: "ten", off: 3, length: 0, wantErr: ErrInvalidRange},
		{name: "empty object whole", key: "empty", off: 0, length: -1, want: ""},
		{name: "empty object with a range", key: "empty", off: 0, length: 1, wantErr: ErrInvalidRange},
		{name: "empty object with a zero-length range", key: "empty", off: 0, length: 0, wantErr: ErrInvalidRange},
		{name: "empty object past the end", key: "empty", off: 1, length: -1, wantErr: ErrInvalidRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := f.Get(context.Background(), GetInput{Bucket: "b", Key: tt.key, Offset: tt.off, Length: tt.length})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get: %v, want %v", err, tt.wantErr)
				}
				var se *Error
				if !errors.As(err, &se) || se.Status != 416 || se.Code != "InvalidRange" || se.Op != "GetObject" || se.Key != tt.key {
					t.Errorf("error %#v, want a GetObject *Error with status 416 and code InvalidRange", se)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			defer out.Body.Close()
			got, err := io.ReadAll(out.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
			if wantSize := map[string]int64{"ten": 10, "empty": 0}[tt.key]; out.Object.Size != wantSize {
				t.Errorf("Object.Size = %d, want the whole object's %d", out.Object.Size, wantSize)
			}
			if out.Object.ETag == "" || out.Object.Key != tt.key {
				t.Errorf("Object = %+v, want key %q and an ETag", out.Object, tt.key)
			}
		})
	}
}

// TestFakeGetIfMatch checks that a GET with the object's ETag succeeds, that
// one with another ETag fails with ErrPreconditionFailed (HTTP 412), and
// that overwriting an object invalidates its old ETag.
func TestFakeGetIfMatch(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Put("b", "k", []byte("version one"))
	v1, err := f.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1, IfMatch: v1.ETag})
	if err != nil {
		t.Fatalf("Get with the current ETag: %v", err)
	}
	out.Body.Close()

	f.Put("b", "k", []byte("version two"))
	v2, err := f.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	if v2.ETag == v1.ETag {
		t.Fatalf("new contents kept the ETag %s", v1.ETag)
	}
	_, err = f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1, IfMatch: v1.ETag})
	var se *Error
	if !errors.Is(err, ErrPreconditionFailed) || !errors.As(err, &se) || se.Status != 412 {
		t.Fatalf("Get with the old ETag: %v, want ErrPreconditionFailed with status 412", err)
	}
	out, err = f.Get(ctx, GetInput{Bucket: "b", Key: "k", Offset: 8, Length: 3, IfMatch: v2.ETag})
	if err != nil {
		t.Fatalf("Get with the new ETag: %v", err)
	}
	defer out.Body.Close()
	if got, _ := io.ReadAll(out.Body); string(got) != "two" {
		t.Errorf("read %q, want %q", got, "two")
	}
}

// TestFakeNotFound checks the not-found errors of each operation: the kind,
// S3's error code and status, and the operation, bucket and key they name.
func TestFakeNotFound(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Put("b", "there", []byte("x"))
	f.Put("b", "gone", []byte("x"))
	f.Delete("b", "gone")
	tests := []struct {
		name     string
		call     func() error
		wantOp   string
		wantCode string
	}{
		{name: "head missing key", wantOp: "HeadObject", wantCode: "NotFound", call: func() error {
			_, err := f.Head(ctx, "b", "missing")
			return err
		}},
		{name: "head deleted key", wantOp: "HeadObject", wantCode: "NotFound", call: func() error {
			_, err := f.Head(ctx, "b", "gone")
			return err
		}},
		{name: "get missing key", wantOp: "GetObject", wantCode: "NoSuchKey", call: func() error {
			_, err := f.Get(ctx, GetInput{Bucket: "b", Key: "missing", Length: -1})
			return err
		}},
		{name: "get in missing bucket", wantOp: "GetObject", wantCode: "NoSuchKey", call: func() error {
			_, err := f.Get(ctx, GetInput{Bucket: "nobucket", Key: "there", Length: -1})
			return err
		}},
		{name: "list missing bucket", wantOp: "ListObjectsV2", wantCode: "NoSuchBucket", call: func() error {
			_, err := f.List(ctx, ListInput{Bucket: "nobucket"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("got %v, want ErrNotFound", err)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("%T is not a *store.Error", err)
			}
			if se.Op != tt.wantOp || se.Code != tt.wantCode || se.Status != 404 {
				t.Errorf("got op %q code %q status %d, want %q %q 404", se.Op, se.Code, se.Status, tt.wantOp, tt.wantCode)
			}
		})
	}
}

// TestFakeHeadMetadata checks that HEAD returns user metadata and storage
// class stored with PutObject, and that Put copies the caller's bytes.
func TestFakeHeadMetadata(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	data := []byte("abc")
	f.PutObject("b", "k", data, "STANDARD_IA", map[string]string{"owner": "me"})
	data[0] = 'X'
	o, err := f.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	if o.Size != 3 || o.StorageClass != "STANDARD_IA" || o.Metadata["owner"] != "me" || o.Key != "k" {
		t.Errorf("Head = %+v", o)
	}
	out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	if got, _ := io.ReadAll(out.Body); string(got) != "abc" {
		t.Errorf("read %q after the caller changed its slice, want %q", got, "abc")
	}
}

// TestFakeLatencyAndCancel checks that SetLatency delays requests, that
// cancelling or timing out the context ends a delayed request early with the
// context's error, and that an already-cancelled context fails at once.
func TestFakeLatencyAndCancel(t *testing.T) {
	f := NewFake()
	f.Put("b", "k", []byte("x"))

	t.Run("latency delays the request", func(t *testing.T) {
		f.SetLatency(50 * time.Millisecond)
		defer f.SetLatency(0)
		start := time.Now()
		if _, err := f.Head(context.Background(), "b", "k"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Errorf("Head took %v with 50ms latency", d)
		}
	})

	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{name: "cancel during latency", wantErr: context.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}},
		{name: "deadline during latency", wantErr: context.DeadlineExceeded, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.SetLatency(time.Minute)
			defer f.SetLatency(0)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1})
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Get returned after %v, want soon after the context ended", d)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get: %v, want %v", err, tt.wantErr)
			}
			var se *Error
			if !errors.As(err, &se) || se.Op != "GetObject" || se.Key != "k" || !errors.Is(err, ErrOther) {
				t.Errorf("error %v is not a GetObject *Error of kind ErrOther", err)
			}
		})
	}

	t.Run("cancelled before the request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		before := f.Calls("ListObjectsV2")
		_, err := f.List(ctx, ListInput{Bucket: "b"})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("List: %v, want context.Canceled", err)
		}
		if got := f.Calls("ListObjectsV2") - before; got != 1 {
			t.Errorf("the failed request counted %d calls, want 1", got)
		}
	})
}

// TestFakeFailureAndCalls checks that the failure hook fails exactly the
// requests it selects and that Calls counts requests per operation,
// successful or not.
func TestFakeFailureAndCalls(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Put("b", "k", []byte("x"))
	f.Put("b", "bad", []byte("x"))
	boom := &Error{Op: "GetObject", Status: 503, Code: "SlowDown", Kind: ErrThrottled}
	f.SetFailure(func(op, bucket, key string) error {
		if op == "GetObject" && key == "bad" {
			return boom
		}
		return nil
	})
	if _, err := f.Get(ctx, GetInput{Bucket: "b", Key: "bad", Length: -1}); !errors.Is(err, ErrThrottled) {
		t.Errorf("Get of the failing key: %v, want ErrThrottled", err)
	}
	out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1})
	if err != nil {
		t.Fatalf("Get of another key: %v", err)
	}
	out.Body.Close()
	if _, err := f.Head(ctx, "b", "bad"); err != nil {
		t.Errorf("Head of the failing key: %v, want success", err)
	}
	if _, err := f.ListBuckets(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"GetObject": 2, "HeadObject": 1, "ListBuckets": 1, "ListObjectsV2": 0}
	for op, n := range want {
		if got := f.Calls(op); got != n {
			t.Errorf("Calls(%s) = %d, want %d", op, got, n)
		}
	}
	f.SetFailure(nil)
	if _, err := f.Get(ctx, GetInput{Bucket: "b", Key: "bad", Length: -1}); err != nil {
		t.Errorf("Get after removing the hook: %v", err)
	}
}

// TestFakeArchiveAndRestore walks an object through the archive tier as
// S3 does: GET refused while archived, RestoreObject 202 then 409 while
// running, readable once done, 200 when asked again, and refused again
// after the restored copy expires.
func TestFakeArchiveAndRestore(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Put("b", "set.mp3", []byte("music"))
	f.Put("b", "plain", []byte("x"))
	get := func() error {
		out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "set.mp3", Length: -1})
		if err == nil {
			out.Body.Close()
		}
		return err
	}
	restore := func(key string) (RestoreOutcome, error) {
		return f.Restore(ctx, RestoreInput{Bucket: "b", Key: key, Days: 2})
	}
	if _, err := restore("plain"); !errors.Is(err, ErrInvalidObjectState) {
		t.Errorf("restore of a STANDARD object: %v", err)
	}
	f.Archive("b", "set.mp3", "GLACIER")
	if err := get(); !errors.Is(err, ErrInvalidObjectState) || ErrorCode(err) != "InvalidObjectState" {
		t.Fatalf("GET of archived object: %v", err)
	}
	if out, err := restore("set.mp3"); err != nil || out != RestoreStarted {
		t.Fatalf("first restore: %v %v", out, err)
	}
	if _, err := restore("set.mp3"); !errors.Is(err, ErrRestoreInProgress) {
		t.Fatalf("second restore: %v", err)
	}
	if o, _ := f.Head(ctx, "b", "set.mp3"); !o.Restore.Ongoing || o.StorageClass != "GLACIER" {
		t.Errorf("head while restoring: %+v", o)
	}
	if err := get(); !errors.Is(err, ErrInvalidObjectState) {
		t.Errorf("GET while restoring: %v", err)
	}
	f.FinishRestore("b", "set.mp3", time.Now().Add(time.Hour))
	if err := get(); err != nil {
		t.Errorf("GET after restore: %v", err)
	}
	if out, err := restore("set.mp3"); err != nil || out != RestoreAlreadyDone {
		t.Errorf("restore of a restored object: %v %v", out, err)
	}
	f.FinishRestore("b", "set.mp3", time.Now().Add(-time.Minute))
	if err := get(); !errors.Is(err, ErrInvalidObjectState) {
		t.Errorf("GET after expiry: %v", err)
	}
}

// TestFakeUnnamed: an entry added with PutUnnamed is reported in Skipped,
// in key order and within the page size, never as an object or prefix;
// pages continue past it, and HEAD and GET do not find it.
func TestFakeUnnamed(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Put("b", "dir/a", []byte("a"))
	f.PutUnnamed("b", "dir/bad%zz")
	f.PutUnnamed("b", "dir/sub/bad%zz")
	f.Put("b", "dir/c", []byte("c"))
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

// TestFakeObjectAlike: HEAD, a ranged GET and a listing describe a stored
// object alike; the GET's size is the whole object's, and only the
// listing lacks the user metadata.
func TestFakeObjectAlike(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.PutObject("b", "k", []byte("0123456789"), "STANDARD_IA", map[string]string{"owner": "me"})
	head, err := f.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Offset: 2, Length: 3})
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	page, err := f.List(ctx, ListInput{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 1 {
		t.Fatalf("listed %d objects, want 1", len(page.Objects))
	}
	if head.Size != 10 || head.Metadata["owner"] != "me" {
		t.Errorf("Head = %+v, want size 10 and owner: me", head)
	}
	if !reflect.DeepEqual(out.Object, *head) {
		t.Errorf("ranged Get describes %+v, Head %+v", out.Object, *head)
	}
	listed, want := page.Objects[0], *head
	want.Metadata = nil
	if !reflect.DeepEqual(listed, want) {
		t.Errorf("listed %+v, want %+v", listed, want)
	}
}
