package prefetch

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/store"
)

// flakyStore cuts or stalls the bodies of its first GETs.
type flakyStore struct {
	store.Store
	mu     sync.Mutex
	faults int           // GETs still to spoil
	after  int64         // body bytes served before the fault
	stall  time.Duration // 0: cut the body (connection reset); else stall this long
	starts []int64       // offset of every GET
}

var errReset = errors.New("connection reset by peer")

func (s *flakyStore) Get(ctx context.Context, in store.GetInput) (*store.GetOutput, error) {
	s.mu.Lock()
	s.starts = append(s.starts, in.Offset)
	spoil := s.faults > 0
	if spoil {
		s.faults--
	}
	s.mu.Unlock()
	out, err := s.Store.Get(ctx, in)
	if err != nil || !spoil {
		return out, err
	}
	out.Body = &spoiledBody{ReadCloser: out.Body, left: s.after, stall: s.stall, ctx: ctx}
	return out, nil
}

type spoiledBody struct {
	io.ReadCloser
	left  int64
	stall time.Duration
	ctx   context.Context
}

func (b *spoiledBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		if b.stall == 0 {
			return 0, errReset
		}
		select {
		case <-time.After(b.stall):
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
		b.stall = 0
		return 0, errReset
	}
	n, err := b.ReadCloser.Read(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	return n, err
}

func flakyFixture(t *testing.T, fs *flakyStore, size int, stall time.Duration) *fixture {
	t.Helper()
	fx := newFixture(t, size, 0, 32*mib)
	fs.Store = fx.st
	c, err := cache.New(cache.Config{MemoryBytes: 64 * mib, BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	fx.m = newManager(fs, c, 32*mib, Options{BlockSize: bs, MaxReadahead: 8 * mib, MaxGets: 8, MaxRetries: 3, StallTimeout: stall})
	return fx
}

// TestBodyCutIsResumed: bodies cut mid-way are resumed from the byte where
// they stopped; the reader sees exact bytes and nothing is fetched twice.
func TestBodyCutIsResumed(t *testing.T) {
	fs := &flakyStore{faults: 3, after: 300 << 10}
	fx := flakyFixture(t, fs, 6*mib+7, time.Second)
	fx.readAll(t)
	if got := fx.m.Stats.BytesFetched.Load(); got != int64(len(fx.data)) {
		t.Errorf("fetched %d bytes for %d", got, len(fx.data))
	}
	if got := fx.m.Stats.Resumes.Load(); got != 3 {
		t.Errorf("%d resumes, want 3", got)
	}
	// Each resumed GET starts where its predecessor's bytes ended.
	fs.mu.Lock()
	defer fs.mu.Unlock()
	resumedAt := map[int64]bool{}
	for _, off := range fs.starts {
		resumedAt[off] = true
	}
	if !resumedAt[300<<10] {
		t.Errorf("no GET resumed at byte %d: starts %v", 300<<10, fs.starts)
	}
}

// TestBodyStallIsResumed: a body that stops sending is cancelled after the
// stall timeout and resumed, well before the stall would have ended.
func TestBodyStallIsResumed(t *testing.T) {
	fs := &flakyStore{faults: 1, after: 100 << 10, stall: time.Minute}
	fx := flakyFixture(t, fs, 2*mib, 200*time.Millisecond)
	start := time.Now()
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	fx.read(t, r, 0, 2*mib)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stalled read took %v", d)
	}
	if fx.m.Stats.Resumes.Load() != 1 {
		t.Errorf("%d resumes, want 1", fx.m.Stats.Resumes.Load())
	}
}

// TestBodyGivesUpAfterMaxRetries: a body that keeps breaking without
// progress fails the read after MaxRetries resumes, with the cause.
func TestBodyGivesUpAfterMaxRetries(t *testing.T) {
	fs := &flakyStore{faults: 100, after: 0}
	fx := flakyFixture(t, fs, 512<<10, time.Second)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	_, err := r.ReadAt(context.Background(), make([]byte, 4096), 100<<10)
	if !errors.Is(err, errReset) {
		t.Fatalf("read of a body that always breaks: %v", err)
	}
	fs.mu.Lock()
	n := len(fs.starts)
	fs.mu.Unlock()
	if n != 4 {
		t.Errorf("%d GETs, want 1 + 3 retries", n)
	}
}

// TestBodyCancelIsFinal: a cancelled read does not resume.
func TestBodyCancelIsFinal(t *testing.T) {
	fs := &flakyStore{faults: 1, after: 64 << 10, stall: time.Minute}
	fx := flakyFixture(t, fs, 512<<10, time.Minute)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := r.ReadAt(ctx, make([]byte, 4096), 200<<10)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled read: %v", err)
	}
	if fx.m.Stats.Resumes.Load() != 0 {
		t.Errorf("a cancelled read was resumed")
	}
}
