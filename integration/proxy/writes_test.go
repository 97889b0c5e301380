package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a backend that reads every request body to its end and
// records the requests that reached it.
type recorder struct {
	mu   sync.Mutex
	seen []string // "Op METHOD path?query"
}

func (rec *recorder) requests() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.seen...)
}

// writeBackend starts a proxy in front of a recorder that answers every
// request with 200 and a small XML body.
func writeBackend(t *testing.T) (*Proxy, *recorder) {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, Op(r)+" "+r.Method+" "+r.URL.RequestURI())
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		io.WriteString(w, "<ok/>")
	}))
	t.Cleanup(srv.Close)
	px, err := Start(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	return px, rec
}

// s3req is one request of a kind the proxy tells apart.
type s3req struct {
	method, target, copySource string
	body                       []byte
}

// writeReqs are requests of every class the write tests send, by class.
var writeReqs = map[string]s3req{
	"GetObject":               {method: "GET", target: "/b/k"},
	"HeadObject":              {method: "HEAD", target: "/b/k"},
	"List":                    {method: "GET", target: "/b?list-type=2"},
	"ListMultipartUploads":    {method: "GET", target: "/b?uploads"},
	"PutObject":               {method: "PUT", target: "/b/k", body: []byte("0123456789")},
	"CopyObject":              {method: "PUT", target: "/b/k", copySource: "/b/src"},
	"CreateMultipartUpload":   {method: "POST", target: "/b/k?uploads"},
	"UploadPart":              {method: "PUT", target: "/b/k?partNumber=1&uploadId=u", body: bytes.Repeat([]byte("p"), 100)},
	"UploadPartCopy":          {method: "PUT", target: "/b/k?partNumber=2&uploadId=u", copySource: "/b/src"},
	"CompleteMultipartUpload": {method: "POST", target: "/b/k?uploadId=u", body: []byte("<CompleteMultipartUpload/>")},
	"AbortMultipartUpload":    {method: "DELETE", target: "/b/k?uploadId=u"},
	"DeleteObject":            {method: "DELETE", target: "/b/k"},
	"DeleteObjects":           {method: "POST", target: "/b?delete", body: []byte("<Delete/>")},
}

// send sends q through px with c and returns the status and body.
func send(t *testing.T, c *http.Client, px *Proxy, q s3req) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(q.method, px.URL+q.target, bytes.NewReader(q.body))
	if err != nil {
		t.Fatal(err)
	}
	if q.body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	if q.copySource != "" {
		req.Header.Set("X-Amz-Copy-Source", q.copySource)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", q.method, q.target, err)
	}
	return resp, b
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
}

// TestOpClassification: Op tells every S3 request bucketfs sends apart by
// method, subresource and x-amz-copy-source, and IsWrite picks the ones
// that change the store.
func TestOpClassification(t *testing.T) {
	for _, tc := range []struct {
		method, target, copySource string
		want                       string
		write                      bool
	}{
		{"GET", "/", "", "List", false},
		{"GET", "/b", "", "List", false},
		{"GET", "/b/", "", "List", false},
		{"GET", "/b?list-type=2&prefix=a%2F&delimiter=%2F", "", "List", false},
		{"GET", "/b?location", "", "List", false},
		{"GET", "/b?uploads", "", "ListMultipartUploads", false},
		{"GET", "/b?uploads&prefix=k", "", "ListMultipartUploads", false},
		{"GET", "/b/k", "", "GetObject", false},
		{"GET", "/b/dir/k%20x", "", "GetObject", false},
		{"GET", "/b/k?partNumber=2", "", "GetObject", false},
		{"GET", "/b/k?uploadId=u", "", "Other", false}, // ListParts
		{"GET", "/b/k?tagging", "", "Other", false},
		{"GET", "/b/k?acl", "", "Other", false},
		{"HEAD", "/b/k", "", "HeadObject", false},
		{"HEAD", "/b", "", "Other", false},
		{"PUT", "/b", "", "Other", false}, // CreateBucket
		{"PUT", "/b/k", "", "PutObject", true},
		{"PUT", "/b/dir/k%20x", "", "PutObject", true},
		{"PUT", "/b/k?x-id=PutObject", "", "PutObject", true},
		{"PUT", "/b/k", "/b/src", "CopyObject", true},
		{"PUT", "/b/k", "b/dir/src%20x?versionId=3", "CopyObject", true},
		{"PUT", "/b/k?partNumber=1&uploadId=u", "", "UploadPart", true},
		{"PUT", "/b/k?uploadId=u&partNumber=10000", "", "UploadPart", true},
		{"PUT", "/b/k?partNumber=1&uploadId=u", "/b/src", "UploadPartCopy", true},
		{"PUT", "/b/k?partNumber=1", "", "Other", false},
		{"PUT", "/b/k?uploadId=u", "", "Other", false},
		{"PUT", "/b/k?tagging", "", "Other", false},
		{"PUT", "/b/k?acl", "", "Other", false},
		{"PUT", "/b/k?retention", "", "Other", false},
		{"POST", "/b/k?uploads", "", "CreateMultipartUpload", true},
		{"POST", "/b/k?uploadId=u", "", "CompleteMultipartUpload", true},
		{"POST", "/b/k?restore", "", "Other", false},
		{"POST", "/b?delete", "", "DeleteObjects", true},
		{"POST", "/b", "", "Other", false},
		{"DELETE", "/b/k?uploadId=u", "", "AbortMultipartUpload", true},
		{"DELETE", "/b/k", "", "DeleteObject", true},
		{"DELETE", "/b/k?versionId=v", "", "DeleteObject", true},
		{"DELETE", "/b/k?tagging", "", "Other", false},
		{"DELETE", "/b", "", "Other", false}, // DeleteBucket
		{"OPTIONS", "/b/k", "", "Other", false},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.copySource != "" {
			r.Header.Set("X-Amz-Copy-Source", tc.copySource)
		}
		got := Op(r)
		if got != tc.want || IsWrite(got) != tc.write {
			t.Errorf("%s %s (copy source %q): Op %q, IsWrite %v; want %q, %v",
				tc.method, tc.target, tc.copySource, got, IsWrite(got), tc.want, tc.write)
		}
	}
	for op, q := range writeReqs {
		r := httptest.NewRequest(q.method, q.target, nil)
		if q.copySource != "" {
			r.Header.Set("X-Amz-Copy-Source", q.copySource)
		}
		if got := Op(r); got != op {
			t.Errorf("writeReqs[%q] is classified %q", op, got)
		}
	}
}

// TestRefuseWrites: while writes are refused, every write request gets the
// status with an S3 error body and never reaches the server, and reads go
// on; RefuseWrites(0) lets writes through again.
func TestRefuseWrites(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{http.StatusServiceUnavailable, "SlowDown"},
		{http.StatusForbidden, "AccessDenied"},
		{http.StatusInternalServerError, "InternalError"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			px, rec := writeBackend(t)
			c := newClient()
			px.RefuseWrites(tc.status)
			reads := 0
			for op, q := range writeReqs {
				resp, body := send(t, c, px, q)
				if !IsWrite(op) {
					reads++
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s while writes are refused: %d, want 200", op, resp.StatusCode)
					}
					continue
				}
				id := resp.Header.Get("X-Amz-Request-Id")
				if resp.StatusCode != tc.status || id == "" || resp.Header.Get("Content-Type") != "application/xml" ||
					!strings.Contains(string(body), "<Code>"+tc.code+"</Code>") ||
					!strings.Contains(string(body), "<RequestId>"+id+"</RequestId>") {
					t.Errorf("%s refused: %d (request id %q) %q; want %d with Code %s and the request id",
						op, resp.StatusCode, id, body, tc.status, tc.code)
				}
			}
			if got := rec.requests(); len(got) != reads {
				t.Fatalf("the server saw %q; want only the %d reads", got, reads)
			}
			writes := int64(len(writeReqs) - reads)
			if px.Injected() != writes {
				t.Errorf("Injected %d, want %d", px.Injected(), writes)
			}
			if st := px.Stats(); st.PutBytes != 0 || px.UploadedBytes("k") != 0 {
				t.Errorf("refused uploads counted as uploaded: PutBytes %d, UploadedBytes %d", st.PutBytes, px.UploadedBytes("k"))
			}

			px.RefuseWrites(0)
			if resp, _ := send(t, c, px, writeReqs["PutObject"]); resp.StatusCode != http.StatusOK {
				t.Fatalf("PutObject after RefuseWrites(0): %d", resp.StatusCode)
			}
			if got := rec.requests(); len(got) != reads+1 || !strings.HasPrefix(got[reads], "PutObject ") {
				t.Fatalf("the server saw %q; want the PutObject last", got)
			}
		})
	}
}

// countingReader counts the bytes a client sent of a request body.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// TestRefusedBodyKeepsConnection: a refused upload leaves the client's
// connection usable. A body sent whole (larger than the 256 KiB net/http
// drops by itself) is read and dropped, and the next request reuses the
// connection; a client waiting for 100 Continue is answered at once and
// never sends its body.
func TestRefusedBodyKeepsConnection(t *testing.T) {
	px, rec := writeBackend(t)
	c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 20 * time.Second}, Timeout: 30 * time.Second}
	px.RefuseWrites(http.StatusServiceUnavailable)
	body := bytes.Repeat([]byte("b"), 4<<20)

	put := func(expect bool) (*http.Response, *countingReader, time.Duration) {
		t.Helper()
		cr := &countingReader{r: bytes.NewReader(body)}
		req, err := http.NewRequest("PUT", px.URL+"/b/big?partNumber=1&uploadId=u", cr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(body))
		if expect {
			req.Header.Set("Expect", "100-continue")
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("refused PUT (Expect %v): %v", expect, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, cr, time.Since(start)
	}
	reused := func() bool {
		t.Helper()
		var got bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { got = i.Reused }}
		req, err := http.NewRequest("GET", px.URL+"/b/k", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		if err != nil {
			t.Fatalf("GET after a refused PUT: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET after a refused PUT: %d", resp.StatusCode)
		}
		return got
	}

	reused() // open the connection
	for range 3 {
		if resp, _, _ := put(false); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("refused PUT: %d", resp.StatusCode)
		}
		if !reused() {
			t.Fatal("the connection of a refused PUT was not reused")
		}
	}

	resp, cr, took := put(true)
	if resp.StatusCode != http.StatusServiceUnavailable || cr.n != 0 || took > 10*time.Second {
		t.Fatalf("refused PUT with Expect: 100-continue: %d after %v, %d body bytes sent; want 503 at once and none sent",
			resp.StatusCode, took, cr.n)
	}
	reused()

	for _, r := range rec.requests() {
		if !strings.HasPrefix(r, "GetObject ") {
			t.Fatalf("the server saw %q", r)
		}
	}
}

// TestWriteFaultSelection: WritesOnly and Ops choose which requests error
// faults hit, together and with Count; a faulted request never reaches
// the server.
func TestWriteFaultSelection(t *testing.T) {
	type step struct {
		op   string
		want int
	}
	all := func(want func(op string) int) []step {
		var s []step
		for op := range writeReqs {
			s = append(s, step{op, want(op)})
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		f     Faults
		steps []step
	}{
		{"WritesOnly", Faults{ErrorRate: 1, WritesOnly: true}, all(func(op string) int {
			if IsWrite(op) {
				return 503
			}
			return 200
		})},
		{"Ops", Faults{ErrorRate: 1, ErrorStatus: 500, Ops: []string{"UploadPart", "CompleteMultipartUpload"}}, all(func(op string) int {
			if op == "UploadPart" || op == "CompleteMultipartUpload" {
				return 500
			}
			return 200
		})},
		{"WritesOnly and Ops", Faults{ErrorRate: 1, ErrorStatus: 403, WritesOnly: true, Ops: []string{"GetObject", "DeleteObject"}},
			[]step{{"GetObject", 200}, {"DeleteObject", 403}, {"PutObject", 200}, {"DeleteObject", 403}}},
		{"GetsOnly and WritesOnly", Faults{ErrorRate: 1, GetsOnly: true, WritesOnly: true},
			[]step{{"GetObject", 200}, {"PutObject", 200}}},
		{"Count", Faults{ErrorRate: 1, Ops: []string{"UploadPart"}, Count: 2},
			[]step{{"PutObject", 200}, {"UploadPart", 503}, {"GetObject", 200}, {"UploadPart", 503}, {"UploadPart", 200}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px, rec := writeBackend(t)
			c := newClient()
			px.SetFaults(tc.f)
			var forwarded []string
			for _, s := range tc.steps {
				resp, body := send(t, c, px, writeReqs[s.op])
				if resp.StatusCode != s.want {
					t.Errorf("%s: %d %q, want %d", s.op, resp.StatusCode, body, s.want)
				}
				if resp.StatusCode == http.StatusOK {
					forwarded = append(forwarded, s.op)
				}
			}
			got := rec.requests()
			for i := range got {
				got[i], _, _ = strings.Cut(got[i], " ")
			}
			if strings.Join(got, ",") != strings.Join(forwarded, ",") {
				t.Fatalf("the server saw %v, want %v", got, forwarded)
			}
			if want := int64(len(tc.steps) - len(forwarded)); px.Injected() != want {
				t.Errorf("Injected %d, want %d", px.Injected(), want)
			}
		})
	}
}

// TestWriteCounters: Stats counts write requests by kind and the body bytes
// of PutObject and UploadPart that reached the server, UploadedBytes splits
// those by key, refused uploads add no bytes, and Reset zeroes it all.
func TestWriteCounters(t *testing.T) {
	px, _ := writeBackend(t)
	c := newClient()
	part := bytes.Repeat([]byte("p"), 1000)
	for _, q := range []s3req{
		{method: "PUT", target: "/b/small", body: []byte("0123456789")},
		{method: "POST", target: "/b/dir/big?uploads"},
		{method: "PUT", target: "/b/dir/big?partNumber=1&uploadId=u", body: part},
		{method: "PUT", target: "/b/dir/big?partNumber=2&uploadId=u", body: part[:300]},
		{method: "PUT", target: "/b/dir/big?partNumber=3&uploadId=u", copySource: "/b/small"},
		{method: "POST", target: "/b/dir/big?uploadId=u", body: []byte("<CompleteMultipartUpload/>")},
		{method: "PUT", target: "/other/small", body: []byte("abc")},
		{method: "PUT", target: "/b/copy", copySource: "/b/small"},
		{method: "PUT", target: "/b/empty"},
		{method: "DELETE", target: "/b/copy"},
		{method: "POST", target: "/b?delete", body: []byte("<Delete/>")},
		{method: "DELETE", target: "/b/gone?uploadId=v"},
		{method: "GET", target: "/b?uploads"},
		{method: "GET", target: "/b/small"},
		{method: "PUT", target: "/b/small?tagging", body: []byte("<Tagging/>")},
	} {
		if resp, _ := send(t, c, px, q); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", q.method, q.target, resp.StatusCode)
		}
	}
	want := Stats{Gets: 1, Puts: 5, Copies: 2, Deletes: 2, Completes: 1, Aborts: 1, Others: 3,
		GetBytes: int64(len("<ok/>")), PutBytes: 10 + 1300 + 3}
	if st := px.Stats(); st != want {
		t.Fatalf("Stats\n got %+v\nwant %+v", st, want)
	}
	for key, n := range map[string]int64{"small": 13, "dir/big": 1300, "copy": 0, "empty": 0, "big": 0} {
		if got := px.UploadedBytes(key); got != n {
			t.Errorf("UploadedBytes(%q) = %d, want %d", key, got, n)
		}
	}

	// Refused and failed uploads are counted as requests, not as bytes.
	px.RefuseWrites(http.StatusServiceUnavailable)
	send(t, c, px, s3req{method: "PUT", target: "/b/small", body: part})
	px.RefuseWrites(0)
	px.SetFaults(Faults{ErrorRate: 1, Ops: []string{"UploadPart"}})
	send(t, c, px, s3req{method: "PUT", target: "/b/dir/big?partNumber=4&uploadId=u", body: part})
	px.SetFaults(Faults{})
	want.Puts += 2
	if st := px.Stats(); st != want || px.UploadedBytes("small") != 13 || px.UploadedBytes("dir/big") != 1300 {
		t.Fatalf("after a refused and a failed upload: %+v, UploadedBytes small %d dir/big %d",
			st, px.UploadedBytes("small"), px.UploadedBytes("dir/big"))
	}

	px.Reset()
	if st := px.Stats(); st != (Stats{}) || px.UploadedBytes("small") != 0 || px.UploadedBytes("dir/big") != 0 {
		t.Fatalf("after Reset: %+v, UploadedBytes small %d dir/big %d", st, px.UploadedBytes("small"), px.UploadedBytes("dir/big"))
	}
	send(t, c, px, s3req{method: "PUT", target: "/b/small", body: []byte("xy")})
	if st := px.Stats(); st.Puts != 1 || st.PutBytes != 2 || px.UploadedBytes("small") != 2 {
		t.Fatalf("after Reset and a PUT: %+v, UploadedBytes %d", st, px.UploadedBytes("small"))
	}
}
