package store

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// seenRequest is what a test server got.
type seenRequest struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
}

// recordingServer answers every request with answer and records it.
type recordingServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest // GUARDED_BY(mu)
}

func newRecordingServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *recordingServer {
	t.Helper()
	rs := &recordingServer{}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the request body: %v", err)
		}
		rs.mu.Lock()
		rs.seen = append(rs.seen, seenRequest{method: r.Method, path: r.URL.Path, query: r.URL.Query(), header: r.Header.Clone(), body: body})
		n := len(rs.seen)
		rs.mu.Unlock()
		w.Header().Set("x-amz-request-id", fmt.Sprintf("REQ-%d", n))
		answer(w, r, n)
	}))
	t.Cleanup(rs.Close)
	return rs
}

// requests returns the requests the server got so far.
func (rs *recordingServer) requests() []seenRequest {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]seenRequest(nil), rs.seen...)
}

// newRetryingTestS3 returns an S3 client for srv that retries up to
// retries times.
func newRetryingTestS3(t *testing.T, url string, retries int) *S3 {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	st, err := NewS3(context.Background(), S3Config{Endpoint: url, PathStyle: true, Region: "us-east-1", MaxRetries: retries})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// s3Error writes an S3 error document.
func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}

func xmlAnswer(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>`+body)
}

// TestS3WriteRequests sends each write call to a recording server and
// checks the request it makes (method, path, query, the headers that carry
// its options, the body) and what it makes of the answer.
func TestS3WriteRequests(t *testing.T) {
	ctx := context.Background()
	lastModified := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	body := []byte("0123456789")
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
		call   func(st *S3) (any, error)
		method string
		path   string
		query  []string          // query keys that must be there
		header map[string]string // header values, "" for absent
		body   []byte            // nil: not checked
		check  func(t *testing.T, req seenRequest, got any)
	}{
		{
			name: "Put with every option",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("ETag", `"put-etag"`)
			},
			call: func(st *S3) (any, error) {
				return st.Put(ctx, PutInput{Bucket: "b", Key: "dir/k", Body: bytes.NewReader(body), Size: int64(len(body)),
					Metadata: map[string]string{"mtime": "1700000000"}, StorageClass: "STANDARD_IA", IfNoneMatch: true})
			},
			method: "PUT", path: "/b/dir/k",
			header: map[string]string{"If-None-Match": "*", "x-amz-meta-mtime": "1700000000", "x-amz-storage-class": "STANDARD_IA", "Content-Length": "10"},
			body:   body,
			check: func(t *testing.T, _ seenRequest, got any) {
				o := got.(*Object)
				if o.ETag != `"put-etag"` || o.Size != 10 || o.Key != "dir/k" || o.StorageClass != "STANDARD_IA" || o.Metadata["mtime"] != "1700000000" || time.Since(o.LastModified) > time.Minute {
					t.Errorf("Put returned %+v", o)
				}
			},
		},
		{
			name:   "plain Put",
			answer: func(w http.ResponseWriter) { w.Header().Set("ETag", `"e"`) },
			call: func(st *S3) (any, error) {
				return st.Put(ctx, PutInput{Bucket: "b", Key: "k", Body: bytes.NewReader(body), Size: int64(len(body))})
			},
			method: "PUT", path: "/b/k",
			header: map[string]string{"If-None-Match": "", "x-amz-storage-class": "", "x-amz-meta-mtime": ""},
			body:   body,
		},
		{
			name:   "empty Put",
			answer: func(w http.ResponseWriter) { w.Header().Set("ETag", `"d41d8cd98f00b204e9800998ecf8427e"`) },
			call: func(st *S3) (any, error) {
				return st.Put(ctx, PutInput{Bucket: "b", Key: "empty", Body: bytes.NewReader(nil)})
			},
			method: "PUT", path: "/b/empty",
			body: []byte{},
		},
		{
			name: "CreateMultipart",
			answer: func(w http.ResponseWriter) {
				xmlAnswer(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>UP-1</UploadId></InitiateMultipartUploadResult>`)
			},
			call: func(st *S3) (any, error) {
				return st.CreateMultipart(ctx, CreateMultipartInput{Bucket: "b", Key: "k", Metadata: map[string]string{"mtime": "5"}, StorageClass: "GLACIER_IR"})
			},
			method: "POST", path: "/b/k", query: []string{"uploads"},
			header: map[string]string{"x-amz-meta-mtime": "5", "x-amz-storage-class": "GLACIER_IR"},
			check: func(t *testing.T, _ seenRequest, got any) {
				if got != "UP-1" {
					t.Errorf("upload id %q, want UP-1", got)
				}
			},
		},
		{
			name:   "UploadPart",
			answer: func(w http.ResponseWriter) { w.Header().Set("ETag", `"part-3"`) },
			call: func(st *S3) (any, error) {
				return st.UploadPart(ctx, UploadPartInput{Bucket: "b", Key: "k", UploadID: "UP-1", Part: 3, Body: bytes.NewReader(body), Size: int64(len(body))})
			},
			method: "PUT", path: "/b/k",
			header: map[string]string{"Content-Length": "10"},
			body:   body,
			check: func(t *testing.T, req seenRequest, got any) {
				if q := req.query; q.Get("partNumber") != "3" || q.Get("uploadId") != "UP-1" {
					t.Errorf("query %v, want partNumber=3 uploadId=UP-1", q)
				}
				if got != `"part-3"` {
					t.Errorf("ETag %q", got)
				}
			},
		},
		{
			name: "UploadPartCopy of a key that needs escaping",
			answer: func(w http.ResponseWriter) {
				xmlAnswer(w, `<CopyPartResult><ETag>"copied-2"</ETag><LastModified>2024-01-02T03:04:05.000Z</LastModified></CopyPartResult>`)
			},
			call: func(st *S3) (any, error) {
				return st.UploadPartCopy(ctx, UploadPartCopyInput{Bucket: "b", Key: "k", UploadID: "UP-1", Part: 2,
					SrcBucket: "src", SrcKey: "dir/a b+c?d%e#f~é", SrcETag: `"src-etag"`, Offset: 5 << 20, Length: 5 << 20})
			},
			method: "PUT", path: "/b/k",
			header: map[string]string{
				"x-amz-copy-source":          "src/dir/a%20b%2Bc%3Fd%25e%23f~%C3%A9",
				"x-amz-copy-source-range":    "bytes=5242880-10485759",
				"x-amz-copy-source-if-match": `"src-etag"`,
			},
			check: func(t *testing.T, req seenRequest, got any) {
				if q := req.query; q.Get("partNumber") != "2" || q.Get("uploadId") != "UP-1" {
					t.Errorf("query %v", q)
				}
				if got != `"copied-2"` {
					t.Errorf("ETag %q", got)
				}
			},
		},
		{
			name: "CompleteMultipart with IfNoneMatch",
			answer: func(w http.ResponseWriter) {
				xmlAnswer(w, `<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"multi-2"</ETag></CompleteMultipartUploadResult>`)
			},
			call: func(st *S3) (any, error) {
				return st.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "k", UploadID: "UP-1",
					Parts: []CompletedPart{{Part: 1, ETag: `"e1"`}, {Part: 2, ETag: `"e2"`}}, Size: 12 << 20, IfNoneMatch: true})
			},
			method: "POST", path: "/b/k",
			header: map[string]string{"If-None-Match": "*"},
			check: func(t *testing.T, req seenRequest, got any) {
				if req.query.Get("uploadId") != "UP-1" {
					t.Errorf("query %v", req.query)
				}
				var doc struct {
					Parts []struct {
						PartNumber int32
						ETag       string
					} `xml:"Part"`
				}
				if err := xml.Unmarshal(req.body, &doc); err != nil {
					t.Fatalf("body %q: %v", req.body, err)
				}
				if fmt.Sprint(doc.Parts) != `[{1 "e1"} {2 "e2"}]` {
					t.Errorf("parts sent %v", doc.Parts)
				}
				if o := got.(*Object); o.ETag != `"multi-2"` || o.Size != 12<<20 {
					t.Errorf("CompleteMultipart returned %+v", o)
				}
			},
		},
		{
			name:   "AbortMultipart",
			answer: func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) },
			call: func(st *S3) (any, error) {
				return nil, st.AbortMultipart(ctx, "b", "k", "UP-1")
			},
			method: "DELETE", path: "/b/k",
			check: func(t *testing.T, req seenRequest, _ any) {
				if req.query.Get("uploadId") != "UP-1" {
					t.Errorf("query %v", req.query)
				}
			},
		},
		{
			name: "Copy as a Tigris rename with new metadata",
			answer: func(w http.ResponseWriter) {
				xmlAnswer(w, `<CopyObjectResult><ETag>"copy-etag"</ETag><LastModified>2024-01-02T03:04:05.000Z</LastModified></CopyObjectResult>`)
			},
			call: func(st *S3) (any, error) {
				return st.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "old name", SrcETag: `"src"`, Bucket: "b", Key: "new",
					ReplaceMetadata: true, Metadata: map[string]string{"mtime": "7"}, StorageClass: "STANDARD", Rename: true})
			},
			method: "PUT", path: "/b/new",
			header: map[string]string{
				"x-amz-copy-source": "b/old%20name", "x-amz-copy-source-if-match": `"src"`,
				"x-amz-metadata-directive": "REPLACE", "x-amz-meta-mtime": "7", "x-amz-storage-class": "STANDARD",
				"X-Tigris-Rename": "true",
			},
			check: func(t *testing.T, _ seenRequest, got any) {
				o := got.(*Object)
				if o.ETag != `"copy-etag"` || o.Size != -1 || !o.LastModified.Equal(lastModified) || o.Metadata["mtime"] != "7" {
					t.Errorf("Copy returned %+v", o)
				}
			},
		},
		{
			name: "plain Copy",
			answer: func(w http.ResponseWriter) {
				xmlAnswer(w, `<CopyObjectResult><ETag>"c"</ETag><LastModified>2024-01-02T03:04:05.000Z</LastModified></CopyObjectResult>`)
			},
			call: func(st *S3) (any, error) {
				return st.Copy(ctx, CopyInput{SrcBucket: "s", SrcKey: "a", Bucket: "b", Key: "c"})
			},
			method: "PUT", path: "/b/c",
			header: map[string]string{
				"x-amz-copy-source": "s/a", "x-amz-copy-source-if-match": "", "x-amz-metadata-directive": "",
				"x-amz-storage-class": "", "X-Tigris-Rename": "",
			},
		},
		{
			name:   "Delete",
			answer: func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) },
			call:   func(st *S3) (any, error) { return nil, st.Delete(ctx, "b", "dir/k") },
			method: "DELETE", path: "/b/dir/k",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecordingServer(t, func(w http.ResponseWriter, r *http.Request, n int) { tt.answer(w) })
			st := newTestS3(t, srv.Server)
			got, err := tt.call(st)
			if err != nil {
				t.Fatalf("call failed: %v", err)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if req.method != tt.method || req.path != tt.path {
				t.Errorf("request %s %s, want %s %s", req.method, req.path, tt.method, tt.path)
			}
			for _, k := range tt.query {
				if _, ok := req.query[k]; !ok {
					t.Errorf("query %v lacks %q", req.query, k)
				}
			}
			for h, want := range tt.header {
				if got := req.header.Get(h); got != want {
					t.Errorf("header %s = %q, want %q", h, got, want)
				}
			}
			if tt.body != nil && !bytes.Equal(req.body, tt.body) {
				t.Errorf("body %q, want %q", req.body, tt.body)
			}
			if tt.check != nil {
				tt.check(t, req, got)
			}
		})
	}
}

// TestS3WriteErrors answers write calls with S3 errors and checks the
// kind, code and request id the caller gets, and that removals of what is
// gone already succeed.
func TestS3WriteErrors(t *testing.T) {
	ctx := context.Background()
	put := func(st *S3) error {
		_, err := st.Put(ctx, PutInput{Bucket: "b", Key: "k", Body: strings.NewReader("x"), Size: 1, IfNoneMatch: true})
		return err
	}
	tests := []struct {
		name     string
		status   int
		code     string
		msg      string
		call     func(st *S3) error
		wantKind error // nil: success
	}{
		{name: "Put 412", status: 412, code: "PreconditionFailed", call: put, wantKind: ErrPreconditionFailed},
		{name: "Put 501", status: 501, code: "NotImplemented", msg: "A header you provided implies functionality that is not implemented", call: put, wantKind: ErrNotImplemented},
		{name: "Put 400 naming If-None-Match", status: 400, code: "InvalidArgument", msg: "If-None-Match is not supported", call: put, wantKind: ErrNotImplemented},
		{name: "Put 403", status: 403, code: "AccessDenied", call: put, wantKind: ErrAccessDenied},
		{name: "Put 409 with no retry left", status: 409, code: "ConditionalRequestConflict", call: put, wantKind: ErrOther},
		{name: "Put 400 EntityTooLarge", status: 400, code: "EntityTooLarge", call: put, wantKind: ErrOther},
		{name: "UploadPart 404 NoSuchUpload", status: 404, code: "NoSuchUpload", wantKind: ErrNotFound, call: func(st *S3) error {
			_, err := st.UploadPart(ctx, UploadPartInput{Bucket: "b", Key: "k", UploadID: "U", Part: 1, Body: strings.NewReader("x"), Size: 1})
			return err
		}},
		{name: "UploadPartCopy 412", status: 412, code: "PreconditionFailed", wantKind: ErrPreconditionFailed, call: func(st *S3) error {
			_, err := st.UploadPartCopy(ctx, UploadPartCopyInput{Bucket: "b", Key: "k", UploadID: "U", Part: 1, SrcBucket: "b", SrcKey: "s", SrcETag: `"x"`, Length: 1})
			return err
		}},
		{name: "CompleteMultipart 400 EntityTooSmall", status: 400, code: "EntityTooSmall", wantKind: ErrOther, call: func(st *S3) error {
			_, err := st.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "k", UploadID: "U", Parts: []CompletedPart{{1, `"a"`}, {2, `"b"`}}})
			return err
		}},
		{name: "CompleteMultipart NoSuchUpload at once", status: 404, code: "NoSuchUpload", wantKind: ErrNotFound, call: func(st *S3) error {
			_, err := st.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "k", UploadID: "U", Parts: []CompletedPart{{1, `"a"`}}})
			return err
		}},
		{name: "Copy 403", status: 403, code: "AccessDenied", wantKind: ErrAccessDenied, call: func(st *S3) error {
			_, err := st.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "s", Bucket: "b", Key: "k"})
			return err
		}},
		{name: "Copy of a missing source", status: 404, code: "NoSuchKey", wantKind: ErrNotFound, call: func(st *S3) error {
			_, err := st.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "s", SrcETag: `"e"`, Bucket: "b", Key: "k", Rename: true})
			return err
		}},
		{name: "Delete of a missing key", status: 404, code: "NoSuchKey", call: func(st *S3) error { return st.Delete(ctx, "b", "k") }},
		{name: "Delete in a missing bucket", status: 404, code: "NoSuchBucket", wantKind: ErrNotFound, call: func(st *S3) error { return st.Delete(ctx, "b", "k") }},
		{name: "Delete 403", status: 403, code: "AccessDenied", wantKind: ErrAccessDenied, call: func(st *S3) error { return st.Delete(ctx, "b", "k") }},
		{name: "AbortMultipart of a gone upload", status: 404, code: "NoSuchUpload", call: func(st *S3) error { return st.AbortMultipart(ctx, "b", "k", "U") }},
		{name: "AbortMultipart 403", status: 403, code: "AccessDenied", wantKind: ErrAccessDenied, call: func(st *S3) error { return st.AbortMultipart(ctx, "b", "k", "U") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecordingServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == "HEAD" {
					t.Errorf("a first-attempt failure sent a HEAD")
				}
				s3Error(w, tt.status, tt.code, tt.msg)
			})
			err := tt.call(newTestS3(t, srv.Server))
			if tt.wantKind == nil {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tt.wantKind) {
				t.Fatalf("got %v, want kind %v", err, tt.wantKind)
			}
			var se *Error
			if !errors.As(err, &se) || se.Status != tt.status || se.Code != tt.code || se.RequestID != "REQ-1" {
				t.Fatalf("error %#v, want status %d code %s request id REQ-1", err, tt.status, tt.code)
			}
			if !strings.Contains(err.Error(), "request-id=REQ-1") || !strings.Contains(err.Error(), tt.code) {
				t.Errorf("message %q lacks the code or the request id", err)
			}
		})
	}
}

// TestS3PutRetryResendsBody: a Put answered 503 is sent again with the
// whole body, read again from where it started (not from offset 0 of the
// reader), and then succeeds.
func TestS3PutRetryResendsBody(t *testing.T) {
	srv := newRecordingServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			s3Error(w, 503, "SlowDown", "slow down")
			return
		}
		w.Header().Set("ETag", `"e"`)
	})
	st := newRetryingTestS3(t, srv.URL, 2)
	data := bytes.Repeat([]byte("bucketfs "), 10_000)
	body := bytes.NewReader(append([]byte("HEADER"), data...))
	body.Seek(6, io.SeekStart)
	if _, err := st.Put(context.Background(), PutInput{Bucket: "b", Key: "k", Body: body, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if !bytes.Equal(r.body, data) {
			t.Errorf("attempt %d sent %d bytes starting %q, want the %d bytes of the body", i+1, len(r.body), r.body[:min(len(r.body), 10)], len(data))
		}
	}
	if got := st.Retries.Load(); got != 1 {
		t.Errorf("Retries = %d, want 1", got)
	}
}

// lostAnswerServer acts on the first request that matches first and then
// drops the connection without an answer, as if the response was lost;
// later requests get then's answer.
func lostAnswerServer(t *testing.T, then func(w http.ResponseWriter, r *http.Request)) *recordingServer {
	return newRecordingServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
			return
		}
		then(w, r)
	})
}

// TestS3LostAnswers: a write whose first answer was lost (the connection
// dropped after the server acted) is retried; when the retry fails the way
// a write that already happened makes it fail, a HEAD decides: the write
// succeeds when the object has the ETag it would have, and the retry's
// error stands otherwise.
func TestS3LostAnswers(t *testing.T) {
	ctx := context.Background()
	parts := []CompletedPart{{Part: 1, ETag: `"9e107d9d372bb6826bd81d3542a419d6"`}, {Part: 2, ETag: `"e4d909c290d0fb1ca068ffaddf22cbd0"`}}
	multi, err := multipartETag(parts)
	if err != nil {
		t.Fatal(err)
	}
	complete := func(ifNoneMatch bool) func(st *S3) (*Object, error) {
		return func(st *S3) (*Object, error) {
			return st.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "k", UploadID: "U", Parts: parts, Size: 42, IfNoneMatch: ifNoneMatch})
		}
	}
	body := []byte("the quick brown fox")
	put := func(st *S3) (*Object, error) {
		return st.Put(ctx, PutInput{Bucket: "b", Key: "k", Body: bytes.NewReader(body), Size: int64(len(body)), IfNoneMatch: true})
	}
	rename := func(st *S3) (*Object, error) {
		return st.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "old", SrcETag: `"src"`, Bucket: "b", Key: "k", Rename: true})
	}
	tests := []struct {
		name     string
		call     func(st *S3) (*Object, error)
		status   int
		code     string
		headETag string // "": the HEAD finds nothing
		wantETag string // "": the call fails with the retry's error
		wantKind error
	}{
		{name: "Complete done", call: complete(false), status: 404, code: "NoSuchUpload", headETag: multi, wantETag: multi},
		{name: "Complete done, ETag unquoted", call: complete(false), status: 404, code: "NoSuchUpload", headETag: strings.Trim(multi, `"`), wantETag: multi},
		{name: "Complete not done", call: complete(false), status: 404, code: "NoSuchUpload", headETag: `"other-2"`, wantKind: ErrNotFound},
		{name: "Complete, no object", call: complete(false), status: 404, code: "NoSuchUpload", wantKind: ErrNotFound},
		{name: "Complete IfNoneMatch done", call: complete(true), status: 412, code: "PreconditionFailed", headETag: multi, wantETag: multi},
		{name: "Complete IfNoneMatch, someone else's", call: complete(true), status: 412, code: "PreconditionFailed", headETag: `"other"`, wantKind: ErrPreconditionFailed},
		{name: "Put IfNoneMatch done", call: put, status: 412, code: "PreconditionFailed", headETag: md5ETag(body), wantETag: md5ETag(body)},
		{name: "Put IfNoneMatch, someone else's", call: put, status: 412, code: "PreconditionFailed", headETag: md5ETag([]byte("other")), wantKind: ErrPreconditionFailed},
		{name: "rename done", call: rename, status: 404, code: "NoSuchKey", headETag: `"src"`, wantETag: `"src"`},
		{name: "rename, source gone elsewhere", call: rename, status: 404, code: "NoSuchKey", wantKind: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := lostAnswerServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != "HEAD" {
					s3Error(w, tt.status, tt.code, "")
					return
				}
				if tt.headETag == "" {
					w.WriteHeader(404)
					return
				}
				w.Header().Set("ETag", tt.headETag)
				w.Header().Set("Content-Length", "42")
			})
			st := newRetryingTestS3(t, srv.URL, 2)
			obj, err := tt.call(st)
			if tt.wantETag != "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				if obj.ETag != tt.wantETag {
					t.Errorf("ETag %s, want %s", obj.ETag, tt.wantETag)
				}
			} else if !errors.Is(err, tt.wantKind) || ErrorCode(err) != tt.code {
				t.Fatalf("got %v, want %v (%s)", err, tt.wantKind, tt.code)
			}
			var methods []string
			for _, r := range srv.requests() {
				methods = append(methods, r.method)
			}
			if len(methods) != 3 || methods[2] != "HEAD" {
				t.Errorf("requests %v, want the call twice and a HEAD", methods)
			}
		})
	}
}

// TestMultipartETag checks the multipart ETag against one versitygw
// computed for a 5 MiB + 16000 byte part and "world", and its refusals.
func TestMultipartETag(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), MinPartSize/16+1000)
	parts := []CompletedPart{{Part: 1, ETag: md5ETag(big)}, {Part: 2, ETag: strings.Trim(md5ETag([]byte("world")), `"`)}}
	got, err := multipartETag(parts)
	if err != nil || got != `"bd410e55c923334e3981cc6ba8997d60-2"` {
		t.Errorf("multipartETag = %s, %v; want \"bd410e55c923334e3981cc6ba8997d60-2\"", got, err)
	}
	for _, bad := range [][]CompletedPart{
		nil,
		{{Part: 1, ETag: `"bd410e55c923334e3981cc6ba8997d60-2"`}},
		{{Part: 1, ETag: `"not hex at all, not hex at all!"`}},
		{{Part: 1, ETag: `"abcd"`}},
	} {
		if got, err := multipartETag(bad); err == nil {
			t.Errorf("multipartETag(%v) = %s, want an error", bad, got)
		}
	}
	if !sameETag(`"abc"`, "abc") || sameETag(`"abc"`, `"abd"`) || sameETag("", "") {
		t.Error("sameETag compares wrongly")
	}
}

// TestCopySource checks the x-amz-copy-source encoding: RFC 3986's
// unreserved characters and '/' as they are, every other byte escaped.
func TestCopySource(t *testing.T) {
	tests := []struct{ bucket, key, want string }{
		{"b", "plain/key-1_2.txt~", "b/plain/key-1_2.txt~"},
		{"b", "a b+c", "b/a%20b%2Bc"},
		{"b", "q?x=1&y#z%", "b/q%3Fx%3D1%26y%23z%25"},
		{"b", "ümlaut", "b/%C3%BCmlaut"},
		{"b", "//double", "b///double"},
	}
	for _, tt := range tests {
		if got := copySource(tt.bucket, tt.key); got != tt.want {
			t.Errorf("copySource(%q, %q) = %q, want %q", tt.bucket, tt.key, got, tt.want)
		}
	}
}

// TestS3Tigris: the client knows Tigris by its host names before any
// request, and by a Server header naming Tigris once an answer, even an
// error, carried one.
func TestS3Tigris(t *testing.T) {
	for _, tt := range []struct {
		endpoint string
		want     bool
	}{
		{"https://t3.storage.dev", true},
		{"https://fly.storage.tigris.dev", true},
		{"https://bucket.t3.storage.dev:443", true},
		{"https://T3.STORAGE.DEV", true},
		{"https://s3.us-east-1.amazonaws.com", false},
		{"https://storage.dev.example.com", false},
		{"https://notstorage.dev", false},
		{"http://127.0.0.1:9000", false},
		{"", false},
	} {
		if got := tigrisEndpoint(tt.endpoint); got != tt.want {
			t.Errorf("tigrisEndpoint(%q) = %v, want %v", tt.endpoint, got, tt.want)
		}
	}

	t.Run("host name", func(t *testing.T) {
		st := newRetryingTestS3(t, "https://t3.storage.dev", -1)
		if !st.Tigris() {
			t.Error("a client of t3.storage.dev is not Tigris")
		}
	})
	for _, tt := range []struct {
		name, server string
		want         bool
	}{
		{name: "Server: Tigris", server: "Tigris", want: true},
		{name: "Server: tigris-os/1.2", server: "tigris-os/1.2", want: true},
		{name: "Server: AmazonS3", server: "AmazonS3"},
		{name: "no Server header"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecordingServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if tt.server != "" {
					w.Header().Set("Server", tt.server)
				}
				w.WriteHeader(404)
			})
			st := newTestS3(t, srv.Server)
			if st.Tigris() {
				t.Fatal("Tigris before any answer")
			}
			if _, err := st.Head(context.Background(), "b", "k"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Head: %v", err)
			}
			if got := st.Tigris(); got != tt.want {
				t.Errorf("Tigris() = %v after an answer from Server %q, want %v", got, tt.server, tt.want)
			}
		})
	}
}
