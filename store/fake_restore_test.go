package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestFakeArchiveAndRestore walks an object through the archive tier as
// S3 does: GET refused while archived, RestoreObject 202 then 409 while
// running, readable once done, 200 when asked again, and refused again
// after the restored copy expires.
func TestFakeArchiveAndRestore(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "set.mp3", []byte("music"))
	f.Seed("b", "plain", []byte("x"))
	get := func() error {
		out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "set.mp3", Length: -1})
		if err == nil {
			out.Body.Close()
		}
		return err
	}
	restore := func(key string) (RestoreOutcome, error) {
		return f.Restore(ctx, RestoreInput{Bucket: "b", Key: key, Days: 2})
	}
	if _, err := restore("plain"); !errors.Is(err, ErrInvalidObjectState) {
		t.Errorf("restore of a STANDARD object: %v", err)
	}
	f.Archive("b", "set.mp3", "GLACIER")
	if err := get(); !errors.Is(err, ErrInvalidObjectState) || ErrorCode(err) != "InvalidObjectState" {
		t.Fatalf("GET of archived object: %v", err)
	}
	if out, err := restore("set.mp3"); err != nil || out != RestoreStarted {
		t.Fatalf("first restore: %v %v", out, err)
	}
	if _, err := restore("set.mp3"); !errors.Is(err, ErrRestoreInProgress) {
		t.Fatalf("second restore: %v", err)
	}
	if o, _ := f.Head(ctx, "b", "set.mp3"); !o.Restore.Ongoing || o.StorageClass != "GLACIER" {
		t.Errorf("head while restoring: %+v", o)
	}
	if err := get(); !errors.Is(err, ErrInvalidObjectState) {
		t.Errorf("GET while restoring: %v", err)
	}
	f.FinishRestore("b", "set.mp3", time.Now().Add(time.Hour))
	if err := get(); err != nil {
		t.Errorf("GET after restore: %v", err)
	}
	if out, err := restore("set.mp3"); err != nil || out != RestoreAlreadyDone {
		t.Errorf("restore of a restored object: %v %v", out, err)
	}
	f.FinishRestore("b", "set.mp3", time.Now().Add(-time.Minute))
	if err := get(); !errors.Is(err, ErrInvalidObjectState) {
		t.Errorf("GET after expiry: %v", err)
	}
}
