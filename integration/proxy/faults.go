package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Faults are failures the proxy injects, as an object store and the
// network between have them. The zero value injects none.
//
// GetsOnly, WritesOnly and Ops choose the requests that can fail; a request
// must pass every one that is set. Write requests (IsWrite) can only fail
// with an error: resets and stalls cut response bodies of GETs.
type Faults struct {
	// ErrorRate is the fraction of requests answered at once with
	// ErrorStatus instead of being forwarded: the server never sees them,
	// so a failed write changes nothing there.
	ErrorRate float64
	// ErrorStatus is 500 (InternalError), 503 (SlowDown, the default),
	// 429 (SlowDown, as some stores send) or 403 (AccessDenied, as for a
	// key without the permission).
	ErrorStatus int
	// ResetRate is the fraction of GETs whose connection is cut after
	// ResetAfter body bytes.
	ResetRate  float64
	ResetAfter int64
	// StallRate is the fraction of GETs whose body stops for StallFor
	// after StallAfter bytes.
	StallRate  float64
	StallAfter int64
	StallFor   time.Duration
	// GetsOnly limits the faults to GetObject requests.
	GetsOnly bool
	// WritesOnly limits the faults to write requests (see IsWrite).
	WritesOnly bool
	// Ops, when not empty, limits the faults to requests of these classes
	// of Op, e.g. {"UploadPart", "CompleteMultipartUpload"}.
	Ops []string
	// Count, when not 0, is how many faults to inject in all.
	Count int64
}

// faults is the proxy's fault state.
type faults struct {
	mu       sync.Mutex
	cfg      Faults     // GUARDED_BY(mu)
	rng      *rand.Rand // GUARDED_BY(mu)
	drawn    int64      // faults decided since SetFaults. GUARDED_BY(mu)
	injected atomic.Int64

	// Down: the listener is closed and every connection cut.
	downMu sync.Mutex
	conns  map[net.Conn]struct{} // GUARDED_BY(downMu)
}

// SetFaults sets the faults to inject from now on.
func (p *Proxy) SetFaults(f Faults) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if f.ErrorStatus == 0 {
		f.ErrorStatus = http.StatusServiceUnavailable
	}
	f.Ops = slices.Clone(f.Ops)
	p.f.cfg = f
	p.f.drawn = 0
	if p.f.rng == nil {
		p.f.rng = rand.New(rand.NewPCG(1, 2))
	}
}

// Injected returns how many faults were injected so far.
func (p *Proxy) Injected() int64 { return p.f.injected.Load() }

// draw decides the faults of one request.
func (p *Proxy) draw(op string) (status int, resetAt, stallAt int64, stallFor time.Duration) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	c := p.f.cfg
	if p.f.rng == nil || !c.selects(op) || (c.Count > 0 && p.f.drawn >= c.Count) {
		return 0, -1, -1, 0
	}
	defer func() {
		if status != 0 || resetAt >= 0 || stallAt >= 0 {
			p.f.drawn++
		}
	}()
	resetAt, stallAt = -1, -1
	if c.ErrorRate > 0 && p.f.rng.Float64() < c.ErrorRate {
		return c.ErrorStatus, -1, -1, 0
	}
	if op == "GetObject" {
		if c.ResetRate > 0 && p.f.rng.Float64() < c.ResetRate {
			resetAt = c.ResetAfter
		}
		if c.StallRate > 0 && p.f.rng.Float64() < c.StallRate {
			stallAt, stallFor = c.StallAfter, c.StallFor
		}
	}
	return 0, resetAt, stallAt, stallFor
}

// selects says whether requests of class op can fail.
func (c *Faults) selects(op string) bool {
	return !(c.GetsOnly && op != "GetObject") &&
		!(c.WritesOnly && !IsWrite(op)) &&
		(len(c.Ops) == 0 || slices.Contains(c.Ops, op))
}

// writeError answers like S3 does, with a request id tests can look for.
func (p *Proxy) writeError(w http.ResponseWriter, status int) {
	n := p.f.injected.Add(1)
	code := "SlowDown"
	switch status {
	case http.StatusInternalServerError:
		code = "InternalError"
	case http.StatusForbidden:
		code = "AccessDenied"
	}
	id := fmt.Sprintf("FAULT%06d", n)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-amz-request-id", id)
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by the test proxy</Message><RequestId>%s</RequestId></Error>`, code, id)
}

var errInjectedReset = errors.New("proxy: injected connection reset")

// faultWriter cuts or stalls a response body at a given byte.
type faultWriter struct {
	http.ResponseWriter
	p        *Proxy
	done     <-chan struct{}
	written  int64
	resetAt  int64 // -1: never
	stallAt  int64 // -1: never
	stallFor time.Duration
}

func (f *faultWriter) Write(b []byte) (int, error) {
	if f.stallAt >= 0 && f.written+int64(len(b)) > f.stallAt {
		head := max(f.stallAt-f.written, 0)
		n, err := f.ResponseWriter.Write(b[:head])
		f.written += int64(n)
		if err != nil {
			return n, err
		}
		f.Flush()
		f.stallAt = -1
		f.p.f.injected.Add(1)
		t := time.NewTimer(f.stallFor)
		select {
		case <-t.C:
		case <-f.done:
			t.Stop()
			return n, errInjectedReset
		}
		m, err := f.Write(b[head:])
		return n + m, err
	}
	if f.resetAt >= 0 && f.written+int64(len(b)) > f.resetAt {
		head := max(f.resetAt-f.written, 0)
		n, _ := f.ResponseWriter.Write(b[:head])
		f.written += int64(n)
		f.Flush()
		f.p.f.injected.Add(1)
		// The reverse proxy aborts the handler on a write error, which
		// closes the connection mid-body.
		return n, errInjectedReset
	}
	n, err := f.ResponseWriter.Write(b)
	f.written += int64(n)
	return n, err
}

// Flush lets the reverse proxy stream.
func (f *faultWriter) Flush() {
	if fl, ok := f.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

// SetDown takes the proxy off the network (true: its port refuses
// connections and open ones are cut, as when a server dies) or brings it
// back on the same port.
func (p *Proxy) SetDown(down bool) error {
	p.f.downMu.Lock()
	defer p.f.downMu.Unlock()
	if down {
		if p.l == nil {
			return nil
		}
		p.l.Close()
		p.l = nil
		for c := range p.f.conns {
			c.Close()
		}
		return nil
	}
	if p.l != nil {
		return nil
	}
	var l net.Listener
	var err error
	for range 50 { // the port may linger briefly
		if l, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	p.l = l
	go p.srv.Serve(l)
	return nil
}

// trackConn records open connections so SetDown can cut them.
func (p *Proxy) trackConn(c net.Conn, s http.ConnState) {
	p.f.downMu.Lock()
	defer p.f.downMu.Unlock()
	if p.f.conns == nil {
		p.f.conns = map[net.Conn]struct{}{}
	}
	switch s {
	case http.StateNew:
		p.f.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(p.f.conns, c)
	}
}
