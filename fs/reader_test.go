package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	var key [32]byte
	key[0] = byte(seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// putVersion stores data and returns the version a handle would pin.
func putVersion(t *testing.T, f *store.Fake, bucket, key string, data []byte) ObjectVersion {
	t.Helper()
	f.Seed(bucket, key, data)
	o, err := f.Head(context.Background(), bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	return ObjectVersion{Bucket: bucket, Key: key, ETag: o.ETag, Size: o.Size}
}

// TestDirectReaderReadAt reads a 10,000-byte object at many offsets: each
// read returns exactly the object's bytes, fewer only where the object
// ends, with one GET per read and none for an empty buffer.
func TestDirectReaderReadAt(t *testing.T) {
	data := randomBytes(10000, 1)
	f := store.NewFake()
	v := putVersion(t, f, "b", "k", data)
	r := NewDirectReader(f, v)
	defer r.Close()
	tests := []struct {
		off, size int
		wantN     int
	}{
		{off: 0, size: 1, wantN: 1},
		{off: 0, size: 4096, wantN: 4096},
		{off: 1, size: 4096, wantN: 4096},
		{off: 4095, size: 2, wantN: 2},
		{off: 9999, size: 1, wantN: 1},
		{off: 9990, size: 100, wantN: 10},
		{off: 0, size: 10000, wantN: 10000},
		{off: 0, size: 20000, wantN: 10000},
		{off: 5000, size: 0, wantN: 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d+%d", tt.off, tt.size), func(t *testing.T) {
			before := f.Calls("GetObject")
			p := make([]byte, tt.size)
			n, err := r.ReadAt(context.Background(), p, int64(tt.off))
			if err != nil {
				t.Fatalf("ReadAt: %v", err)
			}
			if n != tt.wantN || !bytes.Equal(p[:n], data[tt.off:tt.off+n]) {
				t.Errorf("read %d bytes, want %d bytes of the object at %d", n, tt.wantN, tt.off)
			}
			wantGets := int64(1)
			if tt.size == 0 {
				wantGets = 0
			}
			if got := f.Calls("GetObject") - before; got != wantGets {
				t.Errorf("%d GET calls, want %d", got, wantGets)
			}
		})
	}
}

// TestDirectReaderChangedObject checks that a reader pinned to one ETag
// fails with ErrPreconditionFailed, and ESTALE, once the object is replaced.
func TestDirectReaderChangedObject(t *testing.T) {
	f := store.NewFake()
	v := putVersion(t, f, "b", "k", []byte("first version"))
	r := NewDirectReader(f, v)
	p := make([]byte, 5)
	if _, err := r.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatal(err)
	}
	f.Seed("b", "k", []byte("second version"))
	_, err := r.ReadAt(context.Background(), p, 0)
	if !errors.Is(err, store.ErrPreconditionFailed) {
		t.Fatalf("ReadAt after the change: %v, want ErrPreconditionFailed", err)
	}
	log, _ := testLog()
	if errno := toErrno(log, err); errno != syscall.ESTALE {
		t.Errorf("errno %v, want ESTALE", errno)
	}
}

// TestDirectReaderCancel checks that cancelling the read's context aborts its
// GET, whether before the request or while it waits on a slow store, and
// that the error becomes EINTR.
func TestDirectReaderCancel(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{name: "cancelled before the read", ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}},
		{name: "cancelled during a slow GET", ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := store.NewFake()
			v := putVersion(t, f, "b", "k", []byte("some data"))
			f.SetLatency(time.Minute)
			r := NewDirectReader(f, v)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			n, err := r.ReadAt(ctx, make([]byte, 4), 0)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("ReadAt returned after %v, not when cancelled", d)
			}
			if n != 0 || !errors.Is(err, context.Canceled) {
				t.Fatalf("ReadAt = %d, %v; want 0, context.Canceled", n, err)
			}
			if got := f.Calls("GetObject"); got != 1 {
				t.Errorf("%d GET calls, want 1", got)
			}
			log, hook := testLog()
			if errno := toErrno(log, err); errno != syscall.EINTR {
				t.Errorf("errno %v, want EINTR", errno)
			}
			if len(hook.AllEntries()) != 0 {
				t.Errorf("an interrupted read was logged: %v", hook.LastEntry().Message)
			}
		})
	}
}
