package integration

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// listingFields are the ListObjectsV2 elements S3 url-encodes when asked.
var listingFields = regexp.MustCompile(`<(Key|Prefix|Delimiter|StartAfter)>([^<]*)</(?:Key|Prefix|Delimiter|StartAfter)>`)

// s3Listings is a proxy in front of versitygw that answers ListObjectsV2 the
// way AWS S3 does for keys XML 1.0 cannot carry. versitygw stores such a key
// byte for byte but ignores encoding-type and writes U+FFFD in its place in
// the XML; the proxy puts back what the test stored (fix maps versitygw's
// text to the real key text) and then renders each key as S3 does: url-
// encoded (with <EncodingType>url</EncodingType>) when the request asked
// for encoding-type=url, else as a character reference such as &#x1;, which
// no XML 1.0 parser accepts. Every other request passes through untouched
// (the Host header too, so signatures stay valid).
func s3Listings(t *testing.T, fix map[string]string) string {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = target.Scheme, target.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			q := resp.Request.URL.Query()
			if resp.Request.Method != http.MethodGet || q.Get("list-type") != "2" || resp.StatusCode != http.StatusOK {
				return nil
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			encode := q.Get("encoding-type") == "url"
			out := listingFields.ReplaceAllStringFunc(string(body), func(el string) string {
				m := listingFields.FindStringSubmatch(el)
				text := html.UnescapeString(m[2])
				if real, ok := fix[text]; ok {
					text = real
				}
				if encode {
					text = url.QueryEscape(text)
				} else {
					text = xmlCharRefs(text)
				}
				return "<" + m[1] + ">" + text + "</" + m[1] + ">"
			})
			if encode {
				out = strings.Replace(out, "<EncodingType></EncodingType>", "", 1)
				out = strings.Replace(out, "</ListBucketResult>", "<EncodingType>url</EncodingType></ListBucketResult>", 1)
			}
			resp.Body = io.NopCloser(strings.NewReader(out))
			resp.ContentLength = int64(len(out))
			resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
			return nil
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// xmlCharRefs escapes s for XML text as S3 does, writing control characters
// as character references.
func xmlCharRefs(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r':
			fmt.Fprintf(&b, "&#x%X;", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestListingKeyXMLCannotCarry mounts a bucket whose directory holds a key
// with U+0001 in its name beside normal files, served through a proxy that
// lists keys as AWS S3 does. Listing the directory must succeed (bucketfs
// asks for url-encoded keys and decodes them), show the odd name as it is,
// and every file, the odd one included, must read back exactly. Without
// url-encoded listings the page holds &#x1;, the SDK's XML parser rejects
// the whole page, and the directory cannot be listed at all.
func TestListingKeyXMLCannotCarry(t *testing.T) {
	odd := "dir/ctl\x01name.txt"
	files := map[string][]byte{
		odd:                   []byte("odd one"),
		"dir/plain.txt":       []byte("plain bytes"),
		"dir/with space+plus": []byte("space and plus"),
		"dir/sub/deep.txt":    []byte("deep"),
	}
	b := newBucket(t, files)
	proxy := s3Listings(t, map[string]string{strings.ReplaceAll(odd, "\x01", "\uFFFD"): odd})
	m := mount(t, "--endpoint", proxy, b)

	ents, err := os.ReadDir(filepath.Join(m.Dir, "dir"))
	if err != nil {
		t.Fatalf("readdir of a directory holding a key with U+0001: %v", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	want := []string{"ctl\x01name.txt", "plain.txt", "sub", "with space+plus"}
	if !slices.Equal(names, want) {
		t.Fatalf("readdir dir = %q, want %q", names, want)
	}
	for key, data := range files {
		got, err := os.ReadFile(filepath.Join(m.Dir, key))
		if err != nil {
			t.Errorf("read %q: %v", key, err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("read %q = %q, want %q", key, got, data)
		}
	}
}
