package store

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// encodedPage is a ListObjectsV2 page as S3 writes it for encoding-type=url:
// names percent-encoded as a query string ('+' is a space, %2B a plus), one
// key with U+0001, one name that does not decode, one key outside the
// requested prefix, and a continuation token, which S3 never encodes.
const encodedPage = `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix>dir%2F</Prefix><Delimiter>%2F</Delimiter><MaxKeys>1000</MaxKeys>
<EncodingType>url</EncodingType><KeyCount>9</KeyCount><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok%2F+1</NextContinuationToken>
<Contents><Key>dir%2Fctl%01name.txt</Key><Size>1</Size><ETag>"e1"</ETag></Contents>
<Contents><Key>dir%2Fwith+space</Key><Size>2</Size><ETag>"e2"</ETag></Contents>
<Contents><Key>dir%2Fplus%2Bsign</Key><Size>3</Size><ETag>"e3"</ETag></Contents>
<Contents><Key>dir%2F100%25</Key><Size>4</Size><ETag>"e4"</ETag></Contents>
<Contents><Key>dir%2Fbad%zz</Key><Size>5</Size><ETag>"e5"</ETag></Contents>
<Contents><Key>other%2Fx</Key><Size>6</Size><ETag>"e6"</ETag></Contents>
<CommonPrefixes><Prefix>dir%2Fsub%2F</Prefix></CommonPrefixes>
<CommonPrefixes><Prefix>dir%2Fctl%01sub%2F</Prefix></CommonPrefixes>
<CommonPrefixes><Prefix>dir%2Fbad%G0%2F</Prefix></CommonPrefixes>
</ListBucketResult>`

// rawPage is the same kind of page from a server that ignores
// encoding-type: no EncodingType element, names as stored, so '+' and '%'
// are themselves.
const rawPage = `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix>raw/</Prefix><Delimiter>/</Delimiter><MaxKeys>1000</MaxKeys>
<KeyCount>3</KeyCount><IsTruncated>false</IsTruncated>
<Contents><Key>raw/a+b</Key><Size>1</Size><ETag>"e1"</ETag></Contents>
<Contents><Key>raw/100%25</Key><Size>2</Size><ETag>"e2"</ETag></Contents>
<Contents><Key>raw/x%zz</Key><Size>3</Size><ETag>"e3"</ETag></Contents>
<CommonPrefixes><Prefix>raw/p%2F/</Prefix></CommonPrefixes>
</ListBucketResult>`

// TestListURLEncoded lists through a server returning hand-written pages.
// bucketfs must ask for encoding-type=url; an encoded page is decoded (U+0001,
// a space from '+', a plus from %2B, '/' from %2F, a literal '%'), a name
// that does not decode or lies outside the prefix is left out and reported
// in Skipped as sent, and the token passes untouched. A raw page (the server
// ignored the parameter) is taken as it is, never decoded.
func TestListURLEncoded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("encoding-type") != "url" {
			t.Errorf("listing asked with encoding-type=%q, want url", q.Get("encoding-type"))
		}
		w.Header().Set("Content-Type", "application/xml")
		if q.Get("prefix") == "raw/" {
			w.Write([]byte(rawPage))
			return
		}
		w.Write([]byte(encodedPage))
	}))
	defer srv.Close()
	st := newTestS3(t, srv)

	tests := []struct {
		prefix       string
		wantKeys     []string
		wantPrefixes []string
		wantSkipped  []string
		wantToken    string
	}{
		{
			prefix:       "dir/",
			wantKeys:     []string{"dir/ctl\x01name.txt", "dir/with space", "dir/plus+sign", "dir/100%"},
			wantPrefixes: []string{"dir/sub/", "dir/ctl\x01sub/"},
			wantSkipped:  []string{"dir%2Fbad%zz", "other%2Fx", "dir%2Fbad%G0%2F"},
			wantToken:    "tok%2F+1",
		},
		{
			prefix:       "raw/",
			wantKeys:     []string{"raw/a+b", "raw/100%25", "raw/x%zz"},
			wantPrefixes: []string{"raw/p%2F/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			page, err := st.List(context.Background(), ListInput{Bucket: "b", Prefix: tt.prefix, Delimiter: "/"})
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, o := range page.Objects {
				keys = append(keys, o.Key)
			}
			if !slices.Equal(keys, tt.wantKeys) {
				t.Errorf("keys = %q, want %q", keys, tt.wantKeys)
			}
			if !slices.Equal(page.Prefixes, tt.wantPrefixes) {
				t.Errorf("prefixes = %q, want %q", page.Prefixes, tt.wantPrefixes)
			}
			if !slices.Equal(page.Skipped, tt.wantSkipped) {
				t.Errorf("skipped = %q, want %q", page.Skipped, tt.wantSkipped)
			}
			if page.NextToken != tt.wantToken {
				t.Errorf("next token = %q, want %q", page.NextToken, tt.wantToken)
			}
		})
	}
}
