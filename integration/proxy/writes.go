package proxy

// Write requests: which operations change what the store holds (IsWrite),
// refusing all of them for a while (RefuseWrites), answering a write the
// proxy fails itself without leaving its connection unusable, and counting
// the request body bytes that went to the server, in all and per key
// (UploadedBytes).

import (
	"io"
	"net/http"
	"strings"
	"sync"
)

// writeOps are the classes of Op that change what the store holds.
var writeOps = map[string]bool{
	"PutObject":               true,
	"CopyObject":              true,
	"CreateMultipartUpload":   true,
	"UploadPart":              true,
	"UploadPartCopy":          true,
	"CompleteMultipartUpload": true,
	"AbortMultipartUpload":    true,
	"DeleteObject":            true,
	"DeleteObjects":           true,
}

// IsWrite says whether op, a class returned by Op, changes what the store
// holds: PutObject, CopyObject, CreateMultipartUpload, UploadPart,
// UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload,
// DeleteObject and DeleteObjects. Reads, listings (ListMultipartUploads
// included), RestoreObject and "Other" are not writes.
func IsWrite(op string) bool { return writeOps[op] }

// RefuseWrites makes every write request (IsWrite) fail at once with status
// until it is called with 0, as a store that refuses writes for a while:
// 503 answers SlowDown, 403 AccessDenied, 500 InternalError (any other
// status as Faults.ErrorStatus does), each with an S3 XML error body and a
// request id, as injected errors have. A refused
// request is not forwarded and its body is not uploaded; reads go on as
// before. Refusals count in Injected, not in Faults.Count.
func (p *Proxy) RefuseWrites(status int) { p.refuse.Store(int64(status)) }

// refusal returns the status a request of class op is refused with, or 0.
func (p *Proxy) refusal(op string) int {
	if !IsWrite(op) {
		return 0
	}
	return int(p.refuse.Load())
}

// maxDiscard bounds the request body the proxy reads and drops before it
// answers a request itself; a longer one costs the connection.
const maxDiscard = 1 << 30

// answerError answers r with an injected S3 error, not forwarding it.
//
// The request body is dealt with first, so the client neither hangs nor
// loses the answer: a client that waits for "100 Continue" has sent no
// body and is answered at once, as S3 does (net/http then closes that
// connection, since the client may still send the body on it); any other
// body is read to its end and dropped, so the connection stays usable
// (net/http itself drops only 256 KiB and then closes, which can reset the
// connection while the client still writes, losing the answer).
func (p *Proxy) answerError(w http.ResponseWriter, r *http.Request, status int) {
	if r.Body != nil && r.Body != http.NoBody && !strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		n, err := io.Copy(io.Discard, io.LimitReader(r.Body, maxDiscard+1))
		if err != nil || n > maxDiscard {
			w.Header().Set("Connection", "close")
		}
		r.Body.Close()
	}
	p.writeError(w, status)
}

// uploads counts request body bytes forwarded by object key.
type uploads struct {
	mu    sync.Mutex
	bytes map[string]int64 // key → PutObject and UploadPart body bytes since Reset. GUARDED_BY(mu)
}

func (u *uploads) add(key string, n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.bytes == nil {
		u.bytes = map[string]int64{}
	}
	u.bytes[key] += n
}

func (u *uploads) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.bytes = nil
}

// UploadedBytes returns the request body bytes of PutObject and UploadPart
// requests for key (the object key, in any bucket) that the proxy
// forwarded to the server since the last Reset. Refused or failed requests
// add nothing. The bytes are those of the HTTP body: a client that sends
// aws-chunked bodies adds its chunk framing.
func (p *Proxy) UploadedBytes(key string) int64 {
	p.up.mu.Lock()
	defer p.up.mu.Unlock()
	return p.up.bytes[key]
}

// countUpload returns r (a PutObject or UploadPart) with a body that counts
// the bytes read from it, that is the bytes forwarded, into PutBytes and
// UploadedBytes. r itself is not changed: net/http still owns its body.
func (p *Proxy) countUpload(r *http.Request) *http.Request {
	if r.Body == nil || r.Body == http.NoBody {
		return r
	}
	_, key := splitPath(r.URL.Path)
	out := r.WithContext(r.Context()) // a shallow copy
	out.Body = &countingBody{ReadCloser: r.Body, p: p, key: key}
	return out
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	p   *Proxy
	key string
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.p.putBytes.Add(int64(n))
		b.p.up.add(b.key, int64(n))
	}
	return n, err
}
