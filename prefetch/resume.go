package prefetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/jonboulle/clockwork"
)

// errStalled marks a GET body that sent nothing for the stall timeout.
var errStalled = errors.New("prefetch: GET body stalled")

// body is a GET's body that survives its connection: when the body stalls
// (no bytes for Config.StallTimeout) or breaks off (connection reset,
// server gone), it sends a new GET for the bytes still missing and carries
// on, after a short backoff, up to Config.MaxRetries times in a row without
// progress. Bytes already received are never fetched twice. The SDK retries
// each request that fails before its body starts; this covers the body.
type body struct {
	m     *Manager
	ctx   context.Context // the caller's: its end is final
	v     store.Version
	pos   int64 // next byte to read
	end   int64
	fails int // attempts in a row that brought no byte

	cur     io.ReadCloser
	cancel  context.CancelFunc // ends cur's request
	timer   clockwork.Timer    // fires when cur stalls
	stalled atomic.Bool
}

// open starts a GET of length bytes at off, pinned to v's ETag. The
// request's error is returned as is (the SDK has retried it already).
func (m *Manager) open(ctx context.Context, v store.Version, off, length int64) (io.ReadCloser, error) {
	b := &body{m: m, ctx: ctx, v: v, pos: off, end: off + length}
	if err := b.start(); err != nil {
		return nil, err
	}
	return b, nil
}

// start sends the GET for [pos, end). Waiting for the answer is bounded
// by the store (its request timeout, retried by the SDK); the stall timer
// covers the body.
func (b *body) start() error {
	m := b.m
	m.Stats.Gets.Add(1)
	m.Stats.InflightGets.Add(1)
	gctx, cancel := context.WithCancel(b.ctx)
	out, err := m.st.Get(gctx, store.GetInput{Bucket: b.v.Bucket, Key: b.v.Key, Offset: b.pos, Length: b.end - b.pos, IfMatch: b.v.ETag})
	if err != nil {
		cancel()
		m.Stats.InflightGets.Add(-1)
		return err
	}
	b.stalled.Store(false)
	b.cur, b.cancel = out.Body, cancel
	b.timer = m.clock.AfterFunc(m.stallTimeout(), func() {
		b.stalled.Store(true)
		cancel()
	})
	b.timer.Stop() // armed only while a Read waits
	return nil
}

// Read implements io.Reader.
func (b *body) Read(p []byte) (int, error) {
	for {
		if b.pos >= b.end {
			return 0, io.EOF
		}
		if b.cur == nil {
			if err := b.retry(); err != nil {
				return 0, err
			}
			continue
		}
		// Only waiting for the server counts towards a stall.
		b.timer.Reset(b.m.stallTimeout())
		n, err := b.cur.Read(p[:min(int64(len(p)), b.end-b.pos)])
		b.timer.Stop()
		b.pos += int64(n)
		if n > 0 {
			b.fails = 0
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF && b.pos >= b.end:
			b.close()
			return n, io.EOF
		case b.ctx.Err() != nil:
			b.close()
			return n, errors.Join(b.ctx.Err(), err)
		}
		// Stalled, cut short or reset: go on with a new request.
		if b.stalled.Load() {
			err = errStalled
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.close()
		b.m.Stats.Resumes.Add(1)
		if b.fails++; b.fails > b.m.cfg.MaxRetries {
			return n, fmt.Errorf("GET %s/%s at byte %d: %w (%d attempts without progress)", b.v.Bucket, b.v.Key, b.pos, err, b.fails)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// retry waits a backoff and sends a new GET for the missing bytes. Its
// failure is final: the SDK has retried that request already.
func (b *body) retry() error {
	if err := sleepCtx(b.ctx, b.m.clock, backoff(b.fails)); err != nil {
		return err
	}
	return b.start()
}

// backoff is the wait before attempt n+1 of a body: capped exponential
// with full jitter.
func backoff(n int) time.Duration {
	d := min(50*time.Millisecond<<min(n, 6), 2*time.Second)
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

func sleepCtx(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *body) close() {
	if b.cur == nil {
		return
	}
	b.timer.Stop()
	b.cancel()
	b.cur.Close()
	b.cur = nil
	b.m.Stats.InflightGets.Add(-1)
}

// Close implements io.Closer.
func (b *body) Close() error {
	b.close()
	return nil
}
