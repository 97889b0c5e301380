package store

import (
	"strings"
	"testing"
	"time"
)

// TestParseRestore covers the forms servers send and broken input.
func TestParseRestore(t *testing.T) {
	dec := time.Date(2012, 12, 21, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		in   string
		ok   bool
		want RestoreState
	}{
		{"aws ongoing", `ongoing-request="true"`, true, RestoreState{Requested: true, Ongoing: true}},
		{"aws done", `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`, true, RestoreState{Requested: true, Expiry: dec}},
		{"tigris done, no comma", `ongoing-request="false" expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`, true, RestoreState{Requested: true, Expiry: dec}},
		{"versitygw archived, no date", `ongoing-request="false"`, true, RestoreState{Requested: true}},
		{"ongoing with a stray date", `ongoing-request="true", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`, true, RestoreState{Requested: true, Ongoing: true}},
		{"bad date", `ongoing-request="false", expiry-date="tomorrow"`, true, RestoreState{Requested: true}},
		{"empty", ``, false, RestoreState{}},
		{"garbage", `hello world`, false, RestoreState{}},
		{"truncated value", `ongoing-request="fal`, false, RestoreState{}},
		{"truncated date", `ongoing-request="false", expiry-date="Fri, 21 Dec`, true, RestoreState{Requested: true}},
		{"odd value", `ongoing-request="maybe"`, false, RestoreState{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := ParseRestore(c.in)
			if ok != c.ok || got.Requested != c.want.Requested || got.Ongoing != c.want.Ongoing || !got.Expiry.Equal(c.want.Expiry) {
				t.Errorf("ParseRestore(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
			}
		})
	}
}

// TestRestoreReadable: only a finished restore whose expiry is ahead is
// readable.
func TestRestoreReadable(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		st   RestoreState
		want bool
	}{
		{RestoreState{}, false},
		{RestoreState{Requested: true, Ongoing: true}, false},
		{RestoreState{Requested: true}, false},
		{RestoreState{Requested: true, Expiry: now.Add(time.Hour)}, true},
		{RestoreState{Requested: true, Expiry: now.Add(-time.Hour)}, false},
	} {
		if got := c.st.Readable(now); got != c.want {
			t.Errorf("%+v.Readable = %v", c.st, got)
		}
	}
}

// FuzzParseRestore: any input parses without panicking, and a result is
// consistent: ongoing restores have no expiry, readable ones are done.
func FuzzParseRestore(f *testing.F) {
	for _, s := range []string{
		`ongoing-request="true"`,
		`ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`,
		`ongoing-request="false" expiry-date="Fri, 01 Nov 2024 02:00:00 GMT"`,
		`ongoing-request="false"`, ``, `"`, `ongoing-request="`, `expiry-date="x" ongoing-request="false"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		st, ok := ParseRestore(h)
		if !ok && (st.Requested || st.Ongoing || !st.Expiry.IsZero()) {
			t.Fatalf("not ok but state %+v", st)
		}
		if ok && !st.Requested {
			t.Fatalf("ok without Requested for %q", h)
		}
		if st.Ongoing && !st.Expiry.IsZero() {
			t.Fatalf("ongoing restore with an expiry for %q", h)
		}
		if ok && !strings.Contains(h, "ongoing-request=") {
			t.Fatalf("parsed %q without an ongoing-request field", h)
		}
	})
}
