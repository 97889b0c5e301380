package fs

import (
	"context"
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

// FuzzListingNames feeds arbitrary keys (as a server could list them under
// the prefix "dir/") through the key-to-name mapping: every name shown must
// be a valid file name, one path component, and map back to a key or a
// prefix the server listed, so nothing resolves outside the mount.
func FuzzListingNames(f *testing.F) {
	for _, seed := range []string{
		"dir/a.mp3\x01dir/sub/\x01dir/../etc/passwd\x01dir/./x\x01dir//y",
		"dir/\x01dir/a\x00b\x01dir/" + strings.Repeat("n", 300) + "\x01dir/ünï cödé.txt",
		"/abs\x01dir/..\x01dir/.\x01dir/a/b/c\x01other/x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		st := &listStore{}
		listed := map[string]bool{}
		for _, k := range strings.Split(joined, "\x01") {
			rest, ok := strings.CutPrefix(k, "dir/")
			if !ok {
				continue // a server lists only keys under the prefix
			}
			if i := strings.IndexByte(rest, '/'); i >= 0 {
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
	})
}

func discardLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}
