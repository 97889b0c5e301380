package cache

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func key(i int64) Key { return Key{Bucket: "b", Object: "o", ETag: `"e1"`, Index: i} }

// fillFlight fills a created flight with byte v and finishes it.
func fillFlight(f *Flight, v byte) {
	buf := f.Buffer()
	for i := range buf {
		buf[i] = v
	}
	f.Filled(len(buf))
	f.Finish(nil)
}

// TestJoinDedupsConcurrentMisses: many readers missing the same block at
// once make exactly one flight, and all see its bytes.
func TestJoinDedupsConcurrentMisses(t *testing.T) {
	c, err := New(Config{MemoryBytes: 64 << 20, BlockSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var created atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f, b, mine := c.Join(key(7), 1<<20)
			defer b.Release()
			if mine {
				created.Add(1)
				time.Sleep(10 * time.Millisecond)
				fillFlight(f, 0xAB)
			}
			data, err := f.Wait(context.Background(), 1<<20)
			if err != nil || len(data) != 1<<20 || data[12345] != 0xAB {
				t.Errorf("wait: %v len %d", err, len(data))
			}
		}()
	}
	close(start)
	wg.Wait()
	if created.Load() != 1 {
		t.Errorf("%d flights created, want 1", created.Load())
	}
}

// TestETagIsolation: a block of one ETag never answers for another.
func TestETagIsolation(t *testing.T) {
	c, _ := New(Config{MemoryBytes: 64 << 20, BlockSize: 1 << 10})
	defer c.Close()
	f, b, _ := c.Join(key(0), 1<<10)
	fillFlight(f, 1)
	b.Release()
	if b, ok := c.Get(key(0)); !ok {
		t.Fatal("block not resident")
	} else {
		b.Release()
	}
	other := key(0)
	other.ETag = `"e2"`
	if _, ok := c.Get(other); ok {
		t.Error("block of ETag e1 served for ETag e2")
	}
	if _, b, created := c.Join(other, 1<<10); !created {
		t.Error("Join for a new ETag did not start a flight")
	} else {
		b.Release()
	}
}

// TestResidentBudgetRespected: however many blocks are offered, resident
// bytes stay within the configured size.
func TestResidentBudgetRespected(t *testing.T) {
	const bs, max = 64 << 10, 16 * 64 << 10
	c, _ := New(Config{MemoryBytes: max, BlockSize: bs})
	defer c.Close()
	for i := range int64(500) {
		f, b, created := c.Join(key(i), bs)
		if created {
			fillFlight(f, byte(i))
		}
		b.Release()
		if i%50 == 0 {
			if r := c.Stats.Resident.Load(); r > max {
				t.Fatalf("after %d blocks resident = %d > %d", i, r, max)
			}
		}
	}
	if r := c.Stats.Resident.Load(); r > max || r <= 0 {
		t.Errorf("resident = %d, want in (0, %d]", r, max)
	}
	if c.Stats.Evictions.Load()+c.Stats.Rejected.Load() == 0 {
		t.Error("no evictions or rejections while offering 30x the capacity")
	}
}

// TestHeldBlockNotRecycled: a block a reader still holds keeps its bytes
// even after the cache evicted it and its buffer could have been reused.
func TestHeldBlockNotRecycled(t *testing.T) {
	const bs = 64 << 10
	c, _ := New(Config{MemoryBytes: 4 * bs, BlockSize: bs})
	defer c.Close()
	f, held, _ := c.Join(key(0), bs)
	fillFlight(f, 0x5A)
	want := bytes.Repeat([]byte{0x5A}, bs)
	// Churn: many more blocks than fit, each released at once so their
	// buffers go back to the pool and are rewritten.
	for i := int64(1); i < 200; i++ {
		f, b, created := c.Join(key(i), bs)
		if created {
			fillFlight(f, byte(i))
		}
		b.Release()
	}
	if c.Stats.Reused.Load() == 0 {
		t.Error("no buffer was reused from the pool")
	}
	if !bytes.Equal(held.Bytes(), want) {
		t.Fatal("a held block's bytes changed")
	}
	held.Release()
}

// TestFlightProgressive: a waiter for the first bytes of a block returns
// before the block is complete.
func TestFlightProgressive(t *testing.T) {
	c, _ := New(Config{MemoryBytes: 64 << 20, BlockSize: 1 << 20})
	defer c.Close()
	f, b, _ := c.Join(key(1), 1<<20)
	defer b.Release()
	copy(f.Buffer(), "hello")
	f.Filled(5)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	data, err := f.Wait(ctx, 5)
	if err != nil || string(data) != "hello" {
		t.Fatalf("partial wait: %q %v", data, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := f.Wait(short, 6); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait past the filled bytes: %v, want deadline", err)
	}
	boom := errors.New("boom")
	f.Finish(boom)
	if _, err := f.Wait(context.Background(), 1<<20); !errors.Is(err, boom) {
		t.Errorf("wait after failure: %v", err)
	}
	// A failed flight is gone: the next Join starts afresh.
	if _, b2, created := c.Join(key(1), 1<<20); !created {
		t.Error("failed flight was reused")
	} else {
		b2.Release()
	}
}

// TestKeyStringUnambiguous checks that keys whose fields would run
// together across a NUL render differently.
func TestKeyStringUnambiguous(t *testing.T) {
	a := Key{Bucket: "b", Object: "a\x00b", ETag: "c"}
	b := Key{Bucket: "b", Object: "a", ETag: "b\x00c"}
	if a.String() == b.String() {
		t.Errorf("%q and %q render the same", a, b)
	}
}

// TestAfterLanding: functions given to AfterLanding run once the flight
// ends, whether it succeeds or fails, and at once for an ended flight.
func TestAfterLanding(t *testing.T) {
	const bs = 64 << 10
	c, _ := New(Config{MemoryBytes: 1 << 20, BlockSize: bs})
	defer c.Close()
	for _, fail := range []bool{false, true} {
		f, b, _ := c.Join(key(7), bs)
		ran := 0
		f.AfterLanding(func() { ran++ })
		if ran != 0 {
			t.Fatal("ran before the flight ended")
		}
		if fail {
			f.Finish(errors.New("boom"))
		} else {
			fillFlight(f, 1)
		}
		if ran != 1 {
			t.Fatalf("ran %d times once the flight ended (failed: %v)", ran, fail)
		}
		f.AfterLanding(func() { ran++ })
		if ran != 2 {
			t.Fatal("not run at once for an ended flight")
		}
		b.Release()
		if !fail {
			// Resident now: a later Join gets an ended flight.
			f2, b2, created := c.Join(key(7), bs)
			if created {
				t.Fatal("resident block fetched again")
			}
			f2.AfterLanding(func() { ran++ })
			b2.Release()
			if ran != 3 {
				t.Fatal("not run at once for a resident block")
			}
			c.mem.rc.Del(key(7).String())
			c.mem.rc.Wait()
		}
	}
}
