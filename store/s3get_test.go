package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testObject is the object the test servers hold: every offset has its own
// byte (mod 251), so bytes from the wrong offset never pass for the right
// ones.
var testObject = func() []byte {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

// newTestS3 returns an S3 client for srv that does not retry.
func newTestS3(t *testing.T, srv *httptest.Server) *S3 {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	st, err := NewS3(context.Background(), S3Config{Endpoint: srv.URL, PathStyle: true, Region: "us-east-1", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// requestedRange parses the test client's Range header; without one it is
// the whole object.
func requestedRange(t *testing.T, r *http.Request) (first, last int64) {
	h := r.Header.Get("Range")
	if h == "" {
		return 0, int64(len(testObject)) - 1
	}
	last = int64(len(testObject)) - 1
	if _, err := fmt.Sscanf(h, "bytes=%d-%d", &first, &last); err != nil && !strings.HasSuffix(h, "-") {
		t.Errorf("unexpected Range %q", h)
	}
	return first, min(last, int64(len(testObject))-1)
}

// rawResponse writes head (status line and headers, each ending in CRLF)
// and body straight to the connection and closes it, so a test can send
// what net/http would not: a body shorter or longer than announced.
func rawResponse(t *testing.T, w http.ResponseWriter, head string, body []byte) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	buf.WriteString(head + "Connection: close\r\n\r\n")
	buf.Write(body)
	buf.Flush()
}

// serve206 answers correctly, with a whole-object checksum header that a
// client validating response checksums would reject for a range.
func serve206(w http.ResponseWriter, first, last int64) {
	w.Header().Set("x-amz-request-id", "REQ-1")
	w.Header().Set("x-amz-checksum-crc32", "AAAAAA==")
	w.Header().Set("ETag", `"e"`)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(testObject)))
	w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(testObject[first : last+1])
}

// readBody reads the body as its consumers do: exactly the bytes asked for
// (io.ReadFull) or everything until the body ends (io.ReadAll).
var readBodies = map[string]func(io.Reader, int64) ([]byte, error){
	"ReadFull": func(r io.Reader, n int64) ([]byte, error) {
		b := make([]byte, n)
		k, err := io.ReadFull(r, b)
		return b[:k], err
	},
	"ReadAll": func(r io.Reader, _ int64) ([]byte, error) { return io.ReadAll(r) },
}

// TestGetChecksAnswer sends a ranged GET to servers that answer it wrongly:
// one ignores Range (200 and the whole object), one answers 206 for bytes
// elsewhere, one announces a length that disagrees with its range, one
// cuts the body short (Content-Length lie, then the connection closes), one
// sends a body longer than its range with no Content-Length. Each must fail
// with ErrBadResponse naming the request id, at Get or while the body is
// read, and never hand out a byte that is not the object's byte at that
// offset. A correct 206 (carrying a whole-object checksum header the SDK
// must not check) still reads.
func TestGetChecksAnswer(t *testing.T) {
	const off, length = 1000, 500
	want := testObject[off : off+length]
	tests := []struct {
		name  string
		serve func(t *testing.T, w http.ResponseWriter, first, last int64)
		ok    bool
	}{
		{name: "correct 206", ok: true, serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			serve206(w, first, last)
		}},
		{name: "200 ignoring Range", serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			w.Header().Set("x-amz-request-id", "REQ-1")
			w.Header().Set("Content-Length", fmt.Sprint(len(testObject)))
			w.Write(testObject)
		}},
		{name: "206 starting elsewhere", serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			serve206(w, 0, last-first)
		}},
		{name: "206 ending elsewhere", serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			serve206(w, first, last+1)
		}},
		{name: "Content-Length disagrees with Content-Range", serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			rawResponse(t, w, fmt.Sprintf("HTTP/1.1 206 Partial Content\r\nx-amz-request-id: REQ-1\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n",
				first, last, len(testObject), last-first+2), testObject[first:last+2])
		}},
		{name: "short body", serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			rawResponse(t, w, fmt.Sprintf("HTTP/1.1 206 Partial Content\r\nx-amz-request-id: REQ-1\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n",
				first, last, len(testObject), last-first+1), testObject[first:first+(last-first)/2])
		}},
		{name: "short body without Content-Length", serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			rawResponse(t, w, fmt.Sprintf("HTTP/1.1 206 Partial Content\r\nx-amz-request-id: REQ-1\r\nContent-Range: bytes %d-%d/%d\r\n",
				first, last, len(testObject)), testObject[first:last])
		}},
		{name: "long body without Content-Length", serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			rawResponse(t, w, fmt.Sprintf("HTTP/1.1 206 Partial Content\r\nx-amz-request-id: REQ-1\r\nContent-Range: bytes %d-%d/%d\r\n",
				first, last, len(testObject)), testObject[first:last+100])
		}},
		{name: "204", serve: func(t *testing.T, w http.ResponseWriter, first, last int64) {
			w.Header().Set("x-amz-request-id", "REQ-1")
			w.WriteHeader(http.StatusNoContent)
		}},
	}
	for _, tt := range tests {
		for rname, read := range readBodies {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					first, last := requestedRange(t, r)
					tt.serve(t, w, first, last)
				}))
				defer srv.Close()
				st := newTestS3(t, srv)
				got, err := getBytes(st, off, length, read)
				if !bytes.Equal(got, want[:min(len(got), len(want))]) || len(got) > len(want) {
					t.Fatalf("served %d bytes that are not the object's bytes at %d", len(got), off)
				}
				if tt.ok {
					if err != nil || len(got) != length {
						t.Fatalf("got %d bytes, %v; want %d bytes", len(got), err, length)
					}
					return
				}
				if err == nil {
					t.Fatalf("got %d bytes and no error; want ErrBadResponse", len(got))
				}
				if !errors.Is(err, ErrBadResponse) || errors.Is(err, io.EOF) {
					t.Fatalf("error %v: want ErrBadResponse, not io.EOF", err)
				}
				if !strings.Contains(err.Error(), "request-id=REQ-1") {
					t.Errorf("error %q does not name the request id", err)
				}
			})
		}
	}
}

// getBytes opens a GET and reads its body with read.
func getBytes(st *S3, off, length int64, read func(io.Reader, int64) ([]byte, error)) ([]byte, error) {
	out, err := st.Get(context.Background(), GetInput{Bucket: "b", Key: "k", Offset: off, Length: length})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return read(out.Body, length)
}

// TestGet200 covers the answers of 200 to a GET: expected without Range;
// accepted for a ranged request from offset 0 that covers the whole object
// (the whole object is then exactly the bytes asked for); refused for one
// from offset 0 that asks for less, and for any other offset.
func TestGet200(t *testing.T) {
	size := int64(len(testObject))
	tests := []struct {
		off, length int64
		ok          bool
	}{
		{off: 0, length: -1, ok: true},
		{off: 0, length: size, ok: true},
		{off: 0, length: size + 1000, ok: true},
		{off: 0, length: size - 1},
		{off: 0, length: 1},
		{off: 1, length: -1},
		{off: 1, length: size - 1},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(testObject)))
		w.Write(testObject)
	}))
	defer srv.Close()
	st := newTestS3(t, srv)
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d+%d", tt.off, tt.length), func(t *testing.T) {
			out, err := st.Get(context.Background(), GetInput{Bucket: "b", Key: "k", Offset: tt.off, Length: tt.length})
			if !tt.ok {
				if !errors.Is(err, ErrBadResponse) {
					t.Fatalf("Get = %v, want ErrBadResponse", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer out.Body.Close()
			got, err := io.ReadAll(out.Body)
			if err != nil || !bytes.Equal(got, testObject) || out.Object.Size != size {
				t.Fatalf("read %d bytes (size %d), %v; want the whole object of %d", len(got), out.Object.Size, err, size)
			}
		})
	}
}

// TestGetZeroLength: a read of no bytes fails with ErrInvalidRange and
// sends nothing (its Range header would be malformed).
func TestGetZeroLength(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(testObject)))
		w.Write(testObject)
	}))
	defer srv.Close()
	st := newTestS3(t, srv)
	if _, err := st.Get(context.Background(), GetInput{Bucket: "b", Key: "k", Offset: 5, Length: 0}); !errors.Is(err, ErrInvalidRange) {
		t.Errorf("Get of 0 bytes: %v, want ErrInvalidRange", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

// TestGetClampedRange: a range running past the end comes back clamped
// (206 up to the last byte), which is correct, and the body ends there.
func TestGetClampedRange(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first, last := requestedRange(t, r)
		serve206(w, first, last)
	}))
	defer srv.Close()
	st := newTestS3(t, srv)
	size := int64(len(testObject))
	for _, length := range []int64{-1, 100, 1 << 20} {
		out, err := st.Get(context.Background(), GetInput{Bucket: "b", Key: "k", Offset: size - 10, Length: length})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || !bytes.Equal(got, testObject[size-10:]) || out.Object.Size != size {
			t.Errorf("length %d: read %d bytes (size %d), %v; want the last 10 of %d", length, len(got), out.Object.Size, err, size)
		}
	}
}

// fakeBody is a body that hands out data in reads of at most chunk bytes.
type fakeBody struct {
	data  []byte
	chunk int
}

func (b *fakeBody) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), b.chunk)], b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *fakeBody) Close() error { return nil }

// TestCheckedBody reads bodies of every length around the promise in
// chunks of several sizes: exactly the promise ends in io.EOF with all
// bytes; a shorter body fails (not io.EOF) after its bytes; a longer one
// fails without handing out the bytes that would have completed it.
func TestCheckedBody(t *testing.T) {
	const promised = 10
	data := testObject[:promised+3]
	for _, n := range []int{0, 1, promised - 1, promised, promised + 1, promised + 3} {
		for _, chunk := range []int{1, 3, promised, 64} {
			t.Run(fmt.Sprintf("body %d chunk %d", n, chunk), func(t *testing.T) {
				b := &checkedBody{rc: &fakeBody{data: data[:n], chunk: chunk}, promised: promised, left: promised,
					fail: func(err error) error { return &Error{Op: "GetObject", Kind: ErrBadResponse, Err: err} }}
				got, err := io.ReadAll(b)
				switch {
				case n == promised:
					if err != nil || !bytes.Equal(got, data[:promised]) {
						t.Fatalf("read %d bytes, %v; want %d and no error", len(got), err, promised)
					}
				case n < promised:
					if !errors.Is(err, ErrBadResponse) || !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, data[:n]) {
						t.Fatalf("read %d bytes, %v; want the %d bytes and a short-body error", len(got), err, n)
					}
				default:
					if !errors.Is(err, ErrBadResponse) || len(got) >= promised || !bytes.Equal(got, data[:len(got)]) {
						t.Fatalf("read %d bytes, %v; want fewer than %d and an error", len(got), err, promised)
					}
				}
				// The failure, or the end, stays.
				if k, again := b.Read(make([]byte, 4)); k != 0 || (again == nil) {
					t.Errorf("read after the end: %d, %v", k, again)
				}
			})
		}
	}
}

// TestHeadAndGetDescribeObject: a HEAD and a ranged GET of one object,
// answered with the same headers, describe it alike: ETag, modification
// time, storage class, restore state and user metadata, and the whole
// object's size (for the GET, the total of its Content-Range).
func TestHeadAndGetDescribeObject(t *testing.T) {
	const modified = "Mon, 02 Jan 2006 15:04:05 GMT"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("ETag", `"e"`) // as serve206 sends it
		h.Set("Last-Modified", modified)
		h.Set("x-amz-storage-class", "GLACIER")
		h.Set("x-amz-restore", `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`)
		h.Set("x-amz-meta-owner", "me")
		if r.Method == http.MethodHead {
			h.Set("Content-Length", fmt.Sprint(len(testObject)))
			return
		}
		first, last := requestedRange(t, r)
		serve206(w, first, last)
	}))
	defer srv.Close()
	st := newTestS3(t, srv)
	ctx := context.Background()
	head, err := st.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.Get(ctx, GetInput{Bucket: "b", Key: "k", Offset: 10, Length: 100})
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	wantModified, _ := time.Parse(time.RFC1123, modified)
	wantExpiry, _ := time.Parse(time.RFC1123, "Fri, 21 Dec 2012 00:00:00 GMT")
	for name, o := range map[string]Object{"Head": *head, "Get": out.Object} {
		if o.Key != "k" || o.Size != int64(len(testObject)) || o.ETag != `"e"` || !o.LastModified.Equal(wantModified) || o.StorageClass != "GLACIER" {
			t.Errorf("%s = %+v; want key k, size %d, ETag \"e\", modified %s, class GLACIER", name, o, len(testObject), modified)
		}
		if r := o.Restore; !r.Requested || r.Ongoing || !r.Expiry.Equal(wantExpiry) {
			t.Errorf("%s restore = %+v, want done, expiring %s", name, r, wantExpiry)
		}
		if o.Metadata["owner"] != "me" {
			t.Errorf("%s metadata = %v, want owner: me", name, o.Metadata)
		}
	}
}

// TestGetIfMatchIgnored: a server (or a gateway in front of it) that
// ignores If-Match answers a GET for a version that was overwritten with
// the bytes of the new one. The answer's ETag tells: such an answer fails
// with ErrPreconditionFailed, as the 412 the server owed, rather than mix
// the new version's bytes into the old one's. An answer whose ETag is the
// one asked for, quoted or not, reads; so does one without an ETag.
func TestGetIfMatchIgnored(t *testing.T) {
	var etag atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first, last := requestedRange(t, r)
		if e := etag.Load().(string); e != "" {
			w.Header().Set("ETag", e)
		}
		w.Header().Set("x-amz-request-id", "REQ-1")
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(testObject)))
		w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(testObject[first : last+1])
	}))
	defer srv.Close()
	st := newTestS3(t, srv)
	for _, tt := range []struct {
		answer string
		ok     bool
	}{
		{answer: `"new"`},
		{answer: `"e"`, ok: true},
		{answer: `e`, ok: true},
		{answer: "", ok: true},
	} {
		etag.Store(tt.answer)
		out, err := st.Get(context.Background(), GetInput{Bucket: "b", Key: "k", Offset: 100, Length: 50, IfMatch: `"e"`})
		if !tt.ok {
			if err == nil {
				out.Body.Close()
				t.Errorf("answer with ETag %s to If-Match \"e\" accepted", tt.answer)
			} else if !errors.Is(err, ErrPreconditionFailed) {
				t.Errorf("answer with ETag %s to If-Match \"e\": %v, want ErrPreconditionFailed", tt.answer, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("answer with ETag %q: %v", tt.answer, err)
			continue
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || !bytes.Equal(got, testObject[100:150]) {
			t.Errorf("answer with ETag %q: %d bytes, %v", tt.answer, len(got), err)
		}
	}
}
