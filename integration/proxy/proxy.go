// Package proxy is an HTTP proxy put between bucketfs and the test S3
// server. It forwards every request unchanged (the Host header included, so
// SigV4 signatures stay valid) and can add what a remote object store has
// and a loopback server lacks: a first-byte latency and a per-connection
// bandwidth. It counts requests by operation (Op), the object bytes it
// served and the request body bytes it uploaded, in all and per key
// (UploadedBytes), which is how tests see that a cached block costs no GET
// and that a small write into a large object uploads one part, not the
// object.
//
// It also emulates an archive tier (GLACIER storage classes, RestoreObject,
// see archive.go) and injects faults (errors, resets, stalls, downtime, see
// faults.go). Write requests (IsWrite: PutObject, CopyObject, the multipart
// upload calls, DeleteObject(s)) can be failed by the same error faults,
// limited to writes (Faults.WritesOnly) or to named operations (Faults.Ops),
// or refused altogether while a test says so (RefuseWrites, see writes.go).
// A request the proxy answers itself, refused or failed, never reaches the
// server, so a failed upload leaves no partial object behind.
//
// Lock order: there are four mutexes, archive.mu, faults.mu, faults.downMu
// and uploads.mu, and each is a leaf: none is held while another is taken.
package proxy

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"
)

// Stats counts what went through the proxy. Request counts include the
// requests the proxy answered itself (faults, refusals, archive errors);
// byte counts are what actually went between client and server.
type Stats struct {
	Gets      int64 // GetObject requests
	Heads     int64 // HeadObject requests
	Lists     int64 // ListObjectsV2 / ListBuckets requests
	Puts      int64 // PutObject and UploadPart requests
	Copies    int64 // CopyObject and UploadPartCopy requests
	Deletes   int64 // DeleteObject and DeleteObjects requests
	Completes int64 // CompleteMultipartUpload requests
	Aborts    int64 // AbortMultipartUpload requests
	Others    int64 // everything else: CreateMultipartUpload, ListMultipartUploads, RestoreObject, ...
	GetBytes  int64 // body bytes of GetObject responses
	PutBytes  int64 // request body bytes of PutObject and UploadPart forwarded to the server
}

// Proxy is a running proxy.
type Proxy struct {
	// Constant data
	URL  string // http://127.0.0.1:PORT
	addr string // 127.0.0.1:PORT
	srv  *http.Server
	rp   *httputil.ReverseProxy
	l    net.Listener // nil while down. GUARDED_BY(f.downMu)

	// Mutable state (atomics)
	latency                                  atomic.Int64 // nanoseconds before a request is forwarded
	bandwidth                                atomic.Int64 // bytes per second per response; 0 = unlimited
	refuse                                   atomic.Int64 // status every write request gets; 0 = none. See writes.go
	gets, heads, lists, others, getBytes     atomic.Int64
	puts, copies, deletes, completes, aborts atomic.Int64
	putBytes                                 atomic.Int64

	arch archive     // archive-tier emulation, see archive.go
	lc   listContent // Tigris's inline listing content, see tigris_list.go
	f    faults      // injected failures, see faults.go
	up   uploads     // request body bytes per key, see writes.go
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "http://" + l.Addr().String(), addr: l.Addr().String(), l: l}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // signed by the client
			r.Out.URL.RawPath = r.In.URL.RawPath
			r.Out.URL.Path = r.In.URL.Path
		},
		Transport: &http.Transport{
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			DisableCompression:  true,
		},
		FlushInterval:  -1,
		ModifyResponse: p.modifyResponse,
		// Injected resets abort handlers; they are not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{Handler: p, ConnState: p.trackConn, ErrorLog: log.New(io.Discard, "", 0)}
	go p.srv.Serve(l)
	return p, nil
}

// SetLatency sets the delay added before each request is forwarded.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// SetBandwidth limits each response body to bps bytes per second (0: no limit).
func (p *Proxy) SetBandwidth(bps int64) { p.bandwidth.Store(bps) }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Gets: p.gets.Load(), Heads: p.heads.Load(), Lists: p.lists.Load(),
		Puts: p.puts.Load(), Copies: p.copies.Load(), Deletes: p.deletes.Load(),
		Completes: p.completes.Load(), Aborts: p.aborts.Load(), Others: p.others.Load(),
		GetBytes: p.getBytes.Load(), PutBytes: p.putBytes.Load(),
	}
}

// Reset zeroes the counters (RestoreRequests and UploadedBytes included).
// It leaves faults, refusals and the archive state as they are.
func (p *Proxy) Reset() {
	for _, c := range []*atomic.Int64{&p.gets, &p.heads, &p.lists, &p.others, &p.getBytes,
		&p.puts, &p.copies, &p.deletes, &p.completes, &p.aborts, &p.putBytes} {
		c.Store(0)
	}
	p.arch.resetCounters()
	p.up.reset()
}

// Close stops the proxy.
func (p *Proxy) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p.srv.Shutdown(ctx)
	p.srv.Close()
}

// Op classifies a path-style S3 request (/bucket/key?query):
//
//	GET    /bucket                          List (ListObjectsV2; ListBuckets on /)
//	GET    /bucket?uploads                  ListMultipartUploads
//	GET    /bucket/key                      GetObject (not with ?uploadId, ?tagging, ?acl)
//	HEAD   /bucket/key                      HeadObject
//	PUT    /bucket/key                      PutObject; CopyObject with x-amz-copy-source
//	PUT    /bucket/key?partNumber&uploadId  UploadPart; UploadPartCopy with x-amz-copy-source
//	POST   /bucket/key?uploads              CreateMultipartUpload
//	POST   /bucket/key?uploadId             CompleteMultipartUpload
//	POST   /bucket?delete                   DeleteObjects
//	DELETE /bucket/key?uploadId             AbortMultipartUpload
//	DELETE /bucket/key                      DeleteObject
//
// A PUT or DELETE on a key with another subresource (?tagging, ?acl,
// ?retention, ...), RestoreObject and everything else is "Other".
func Op(r *http.Request) string {
	bucket, key := splitPath(r.URL.Path)
	q := r.URL.Query()
	copySource := r.Header.Get("X-Amz-Copy-Source") != ""
	switch r.Method {
	case http.MethodGet:
		switch {
		case key == "" && bucket != "" && q.Has("uploads"):
			return "ListMultipartUploads"
		case key == "":
			return "List"
		case !q.Has("uploadId") && !q.Has("tagging") && !q.Has("acl"):
			return "GetObject"
		}
	case http.MethodHead:
		if key != "" {
			return "HeadObject"
		}
	case http.MethodPut:
		switch {
		case key == "":
		case q.Has("uploadId") && q.Has("partNumber") && copySource:
			return "UploadPartCopy"
		case q.Has("uploadId") && q.Has("partNumber"):
			return "UploadPart"
		case !plainObjectRequest(q) || q.Has("partNumber"):
		case copySource:
			return "CopyObject"
		default:
			return "PutObject"
		}
	case http.MethodPost:
		switch {
		case key == "" && bucket != "" && q.Has("delete"):
			return "DeleteObjects"
		case key == "":
		case q.Has("uploads"):
			return "CreateMultipartUpload"
		case q.Has("uploadId"):
			return "CompleteMultipartUpload"
		}
	case http.MethodDelete:
		switch {
		case key == "":
		case q.Has("uploadId"):
			return "AbortMultipartUpload"
		case plainObjectRequest(q):
			return "DeleteObject"
		}
	}
	return "Other"
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := Op(r)
	switch op {
	case "GetObject":
		p.gets.Add(1)
	case "HeadObject":
		p.heads.Add(1)
	case "List":
		p.lists.Add(1)
	case "PutObject", "UploadPart":
		p.puts.Add(1)
	case "CopyObject", "UploadPartCopy":
		p.copies.Add(1)
	case "DeleteObject", "DeleteObjects":
		p.deletes.Add(1)
	case "CompleteMultipartUpload":
		p.completes.Add(1)
	case "AbortMultipartUpload":
		p.aborts.Add(1)
	default:
		p.others.Add(1)
	}
	if d := time.Duration(p.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if status := p.refusal(op); status != 0 {
		p.answerError(w, r, status)
		return
	}
	status, resetAt, stallAt, stallFor := p.draw(op)
	if status != 0 {
		p.answerError(w, r, status)
		return
	}
	if p.serveArchive(w, r) {
		return
	}
	if resetAt >= 0 || stallAt >= 0 {
		w = &faultWriter{ResponseWriter: w, p: p, done: r.Context().Done(), resetAt: resetAt, stallAt: stallAt, stallFor: stallFor}
	}
	cw := &countingWriter{ResponseWriter: w, bps: p.bandwidth.Load(), start: time.Now()}
	if op == "GetObject" {
		cw.count = &p.getBytes
	}
	if op == "PutObject" || op == "UploadPart" {
		r = p.countUpload(r)
	}
	p.rp.ServeHTTP(cw, r)
}

// countingWriter counts body bytes and paces them to a bandwidth.
type countingWriter struct {
	http.ResponseWriter
	count   *atomic.Int64
	bps     int64
	start   time.Time
	written int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.written += int64(n)
	if c.count != nil {
		c.count.Add(int64(n))
	}
	if c.bps > 0 {
		due := c.start.Add(time.Duration(float64(c.written) / float64(c.bps) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
	}
	return n, err
}

// Flush lets the reverse proxy stream.
func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
