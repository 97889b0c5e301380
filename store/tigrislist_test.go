package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestListInlineContent lists through a server that inlines content as
// Tigris does when asked (X-Tigris-List-Content): content matching the
// listed size and MD5 ETag is given, content that does not match, or
// whose ETag is not a plain MD5, is not; without WithContent the header is
// not sent and no content is given.
func TestListInlineContent(t *testing.T) {
	good := []byte("hello, small file")
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		data := func(b []byte) string { return "" }
		if r.Header.Get(HeaderListContent) == "true" {
			asked.Add(1)
			data = func(b []byte) string { return "<Data>" + b64(b) + "</Data>" }
		}
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix>d%%2F</Prefix><EncodingType>url</EncodingType><KeyCount>5</KeyCount><IsTruncated>false</IsTruncated>
<Contents><Key>d%%2Fgood</Key><Size>%d</Size><ETag>%s</ETag>%s</Contents>
<Contents><Key>d%%2Fwrong-md5</Key><Size>%d</Size><ETag>"00000000000000000000000000000000"</ETag>%s</Contents>
<Contents><Key>d%%2Fwrong-size</Key><Size>3</Size><ETag>%s</ETag>%s</Contents>
<Contents><Key>d%%2Fmultipart</Key><Size>%d</Size><ETag>"0123456789abcdef0123456789abcdef-2"</ETag>%s</Contents>
<Contents><Key>d%%2Fnot-inlined</Key><Size>5</Size><ETag>"e5"</ETag></Contents>
</ListBucketResult>`, len(good), md5ETag(good), data(good), len(good), data(good), md5ETag(good), data(good), len(good), data(good))
	}))
	defer srv.Close()
	st := newTestS3(t, srv)

	page, err := st.List(context.Background(), ListInput{Bucket: "b", Prefix: "d/", WithContent: true})
	if err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 1 {
		t.Fatalf("%s sent %d times for one listing", HeaderListContent, asked.Load())
	}
	want := map[string][]byte{"d/good": good}
	if len(page.Objects) != 5 {
		t.Fatalf("%d objects listed, want 5", len(page.Objects))
	}
	for _, o := range page.Objects {
		if !bytes.Equal(o.Content, want[o.Key]) || (o.Content == nil) != (want[o.Key] == nil) {
			t.Errorf("%s: content %q, want %q", o.Key, o.Content, want[o.Key])
		}
	}

	page, err = st.List(context.Background(), ListInput{Bucket: "b", Prefix: "d/"})
	if err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 1 {
		t.Fatalf("%s sent without WithContent", HeaderListContent)
	}
	for _, o := range page.Objects {
		if o.Content != nil {
			t.Errorf("%s: content given without WithContent", o.Key)
		}
	}
}
