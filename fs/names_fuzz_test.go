package fs

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// listStore answers every List with one fixed page.
type listStore struct {
	store.Store
	page store.ListPage
}

func (s *listStore) List(context.Context, store.ListInput) (*store.ListPage, error) {
	return &s.page, nil
}

// FuzzListingNames feeds arbitrary keys (as a server could list them for
// the prefix "dir/", including keys outside it, which a misbehaving server
// sends) through the key-to-name mapping: every name shown must be a valid
// file name, one path component, and map back to a key or a prefix the
// server listed under the prefix, so nothing resolves outside the mount.
func FuzzListingNames(f *testing.F) {
	for _, seed := range []string{
		"dir/a.mp3\x01dir/sub/\x01dir/../etc/passwd\x01dir/./x\x01dir//y",
		"dir/\x01dir/a\x00b\x01dir/" + strings.Repeat("n", 300) + "\x01dir/ünï cödé.txt",
		"/abs\x01dir/..\x01dir/.\x01dir/a/b/c\x01other/x\x01x\x01dir",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		st := &listStore{}
		listed := map[string]bool{}
		for _, k := range strings.Split(joined, "\x01") {
			rest, under := strings.CutPrefix(k, "dir/")
			if i := strings.IndexByte(rest, '/'); under && i >= 0 {
				p := "dir/" + rest[:i+1]
				st.page.Prefixes = append(st.page.Prefixes, p)
				listed[p] = true
			} else {
				st.page.Objects = append(st.page.Objects, store.Object{Key: k})
				listed[k] = true
			}
		}
		root := NewRoot(Config{Store: st, Bucket: "b", Prefix: "dir/", Log: discardLog()}).(*dirNode)
		entries, err := root.listAll(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		checkListedNames(t, entries, listed)
	})
}

func discardLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// pagesStore answers the i-th List call with pages[i], and the last page
// for every call after that (a server that never ends its listing).
type pagesStore struct {
	store.Store
	pages []store.ListPage
	calls int
}

func (s *pagesStore) List(context.Context, store.ListInput) (*store.ListPage, error) {
	p := s.pages[min(s.calls, len(s.pages)-1)]
	s.calls++
	return &p, nil
}

// FuzzListingPages feeds whole hostile listing pages for the directory
// "dir/": keys and common prefixes outside the prefix, deeper than one level,
// duplicated, clashing as file and directory, empty, "." and "..", NUL,
// continuation tokens that repeat or never end. The listing must end (with
// the entries or an error), never panic, and every name it shows must be
// one valid component that maps back to a key or prefix listed under
// "dir/". Pages are separated by \x02 and entries by \x01; an entry
// "P:x" is a common prefix x, "T:x" the page's continuation token, anything
// else an object key.
func FuzzListingPages(f *testing.F) {
	for _, seed := range []string{
		"dir/a\x01P:dir/sub/\x01T:t1\x02dir/b\x01P:other/\x01../x",
		"T:same\x02dir/x\x01T:same",
		"P:dir/a/b/\x01P:dir/\x01P:dir//\x01P:dir/../\x01P:dir/c\x01dir/c\x01dir/c/",
		"T:t\x02T:u\x02T:v",
		"P:d\x01dir\x01d\x01\x01P:\x01dir/\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		st := &pagesStore{}
		listed := map[string]bool{}
		for _, raw := range strings.Split(in, "\x02") {
			var page store.ListPage
			for _, e := range strings.Split(raw, "\x01") {
				switch {
				case strings.HasPrefix(e, "P:"):
					page.Prefixes = append(page.Prefixes, e[2:])
					listed[e[2:]] = true
				case strings.HasPrefix(e, "T:"):
					page.NextToken = e[2:]
				default:
					page.Objects = append(page.Objects, store.Object{Key: e})
					listed[e] = true
				}
			}
			st.pages = append(st.pages, page)
		}
		root := NewRoot(Config{Store: st, Bucket: "b", Prefix: "dir/", Log: discardLog()}).(*dirNode)
		entries, err := root.listAll(context.Background())
		if err != nil {
			if !errors.Is(err, errEndlessListing) {
				t.Fatalf("listAll: %v", err)
			}
			return
		}
		checkListedNames(t, entries, listed)
	})
}

// checkListedNames fails t for a name of entries that is not one valid
// component, or that maps back to no key or prefix listed under "dir/".
func checkListedNames(t *testing.T, entries map[string]entry, listed map[string]bool) {
	t.Helper()
	for name, e := range entries {
		if !validName(name) || strings.Contains(name, "/") {
			t.Errorf("listing shows %q", name)
		}
		key := "dir/" + name
		if e.dir {
			key += "/"
		}
		if !listed[key] {
			t.Errorf("name %q maps to %q, which the server did not list", name, key)
		}
	}
}
