package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestListInlineContentGarbled: inline content that is not the object's
// exact bytes is never given: base64 that does not decode, content cut
// short or padded (valid base64 of other bytes), an empty ETag, an empty
// Data element for a non-empty object. Content given for an entry of a
// key with XML-escaped characters goes to that key only.
func TestListInlineContentGarbled(t *testing.T) {
	good := []byte("exactly these bytes")
	b64 := base64.StdEncoding.EncodeToString
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		entry := func(key, etag, data string) string {
			return fmt.Sprintf("<Contents><Key>%s</Key><Size>%d</Size><ETag>%s</ETag><Data>%s</Data></Contents>", key, len(good), etag, data)
		}
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix>d/</Prefix><KeyCount>7</KeyCount><IsTruncated>false</IsTruncated>%s%s%s%s%s%s%s
</ListBucketResult>`,
			entry("d/not-base64", md5ETag(good), "!!not base64!!"),
			entry("d/short", md5ETag(good), b64(good[:10])),
			entry("d/long", md5ETag(good), b64(append(append([]byte{}, good...), 'x'))),
			entry("d/no-etag", "", b64(good)),
			entry("d/empty-data", md5ETag(good), ""),
			entry("d/a&amp;b", md5ETag(good), b64(good)),
			entry("d/a&amp;c", `"00000000000000000000000000000000"`, b64(good)))
	}))
	defer srv.Close()
	st := newTestS3(t, srv)
	page, err := st.List(context.Background(), ListInput{Bucket: "b", Prefix: "d/", WithContent: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 7 {
		t.Fatalf("%d objects listed, want 7", len(page.Objects))
	}
	for _, o := range page.Objects {
		want := ""
		if o.Key == "d/a&b" {
			want = string(good)
		}
		if string(o.Content) != want || (want != "") != (o.Content != nil) {
			t.Errorf("%s: content %q, want %q", o.Key, o.Content, want)
		}
	}
}
