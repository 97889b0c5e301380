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
					f.Seed("b", k, make([]byte, n))
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
				f.Seed("b", "dir/"+name, make([]byte, i%13))
				want[name] = fmt.Sprintf("file:%d", i%13)
			}
			f.Seed("b", "dir/d1/x", nil)
			f.Seed("b", "dir/f1000/y", nil) // clashes with the file f1000
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
		f.Seed("b", fmt.Sprintf("k%d", i), nil)
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
	f.Seed("b", "p/zeta", []byte("z"))
	f.Seed("b", "p/alpha", []byte("a"))
	f.Seed("b", "p/mid/x", []byte("x"))
	f.Seed("b", "p/", nil)
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

// TestListingSkippedKeys checks that keys the store could not name (it
// reports them in ListPage.Skipped) leave the rest of the directory listed.
func TestListingSkippedKeys(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "d/ok", []byte("x"))
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
	f.Seed("b", "d/a", []byte("x"))
	f.Seed("b", "d/b", []byte("y"))
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
