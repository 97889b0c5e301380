package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestFakeLatencyAndCancel checks that SetLatency delays requests, that
// cancelling or timing out the context ends a delayed request early with the
// context's error, and that an already-cancelled context fails at once.
func TestFakeLatencyAndCancel(t *testing.T) {
	f := NewFake()
	f.Seed("b", "k", []byte("x"))

	t.Run("latency delays the request", func(t *testing.T) {
		f.SetLatency(50 * time.Millisecond)
		defer f.SetLatency(0)
		start := time.Now()
		if _, err := f.Head(context.Background(), "b", "k"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Errorf("Head took %v with 50ms latency", d)
		}
	})

	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{name: "cancel during latency", wantErr: context.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}},
		{name: "deadline during latency", wantErr: context.DeadlineExceeded, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.SetLatency(time.Minute)
			defer f.SetLatency(0)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1})
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Get returned after %v, want soon after the context ended", d)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get: %v, want %v", err, tt.wantErr)
			}
			var se *Error
			if !errors.As(err, &se) || se.Op != "GetObject" || se.Key != "k" || !errors.Is(err, ErrOther) {
				t.Errorf("error %v is not a GetObject *Error of kind ErrOther", err)
			}
		})
	}

	t.Run("cancelled before the request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		before := f.Calls("ListObjectsV2")
		_, err := f.List(ctx, ListInput{Bucket: "b"})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("List: %v, want context.Canceled", err)
		}
		if got := f.Calls("ListObjectsV2") - before; got != 1 {
			t.Errorf("the failed request counted %d calls, want 1", got)
		}
	})
}

// TestFakeFailureAndCalls checks that the failure hook fails exactly the
// requests it selects and that Calls counts requests per operation,
// successful or not.
func TestFakeFailureAndCalls(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "k", []byte("x"))
	f.Seed("b", "bad", []byte("x"))
	boom := &Error{Op: "GetObject", Status: 503, Code: "SlowDown", Kind: ErrThrottled}
	f.SetFailure(func(op, bucket, key string) error {
		if op == "GetObject" && key == "bad" {
			return boom
		}
		return nil
	})
	if _, err := f.Get(ctx, GetInput{Bucket: "b", Key: "bad", Length: -1}); !errors.Is(err, ErrThrottled) {
		t.Errorf("Get of the failing key: %v, want ErrThrottled", err)
	}
	out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1})
	if err != nil {
		t.Fatalf("Get of another key: %v", err)
	}
	out.Body.Close()
	if _, err := f.Head(ctx, "b", "bad"); err != nil {
		t.Errorf("Head of the failing key: %v, want success", err)
	}
	if _, err := f.ListBuckets(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"GetObject": 2, "HeadObject": 1, "ListBuckets": 1, "ListObjectsV2": 0}
	for op, n := range want {
		if got := f.Calls(op); got != n {
			t.Errorf("Calls(%s) = %d, want %d", op, got, n)
		}
	}
	f.SetFailure(nil)
	if _, err := f.Get(ctx, GetInput{Bucket: "b", Key: "bad", Length: -1}); err != nil {
		t.Errorf("Get after removing the hook: %v", err)
	}
}
