package store

import (
	"context"
	"errors"
	"io"
	"reflect"
	"testing"
)

// TestFakeGetRange reads ranges of a 10-byte object and of an empty one:
// ranges inside the object return exactly their bytes, a length past the end
// is clamped, and a range starting at or after the end fails with
// ErrInvalidRange (HTTP 416), as S3 does; a whole-object read of an empty
// object succeeds.
func TestFakeGetRange(t *testing.T) {
	f := NewFake()
	f.Seed("b", "ten", []byte("0123456789"))
	f.Seed("b", "empty", nil)
	tests := []struct {
		name    string
		key     string
		off     int64
		length  int64
		want    string
		wantErr error
	}{
		{name: "whole object", key: "ten", off: 0, length: -1, want: "0123456789"},
		{name: "middle", key: "ten", off: 3, length: 4, want: "3456"},
		{name: "first byte", key: "ten", off: 0, length: 1, want: "0"},
		{name: "last byte", key: "ten", off: 9, length: 1, want: "9"},
		{name: "to the end", key: "ten", off: 5, length: -1, want: "56789"},
		{name: "length past the end is clamped", key: "ten", off: 8, length: 100, want: "89"},
		{name: "exact length to the end", key: "ten", off: 4, length: 6, want: "456789"},
		{name: "offset at the end", key: "ten", off: 10, length: 1, wantErr: ErrInvalidRange},
		{name: "open range at the end", key: "ten", off: 10, length: -1, wantErr: ErrInvalidRange},
		{name: "offset past the end", key: "ten", off: 11, length: 5, wantErr: ErrInvalidRange},
		{name: "zero-length range inside", key: "ten", off: 3, length: 0, wantErr: ErrInvalidRange},
		{name: "empty object whole", key: "empty", off: 0, length: -1, want: ""},
		{name: "empty object with a range", key: "empty", off: 0, length: 1, wantErr: ErrInvalidRange},
		{name: "empty object with a zero-length range", key: "empty", off: 0, length: 0, wantErr: ErrInvalidRange},
		{name: "empty object past the end", key: "empty", off: 1, length: -1, wantErr: ErrInvalidRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := f.Get(context.Background(), GetInput{Bucket: "b", Key: tt.key, Offset: tt.off, Length: tt.length})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get: %v, want %v", err, tt.wantErr)
				}
				var se *Error
				if !errors.As(err, &se) || se.Status != 416 || se.Code != "InvalidRange" || se.Op != "GetObject" || se.Key != tt.key {
					t.Errorf("error %#v, want a GetObject *Error with status 416 and code InvalidRange", se)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			defer out.Body.Close()
			got, err := io.ReadAll(out.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
			if wantSize := map[string]int64{"ten": 10, "empty": 0}[tt.key]; out.Object.Size != wantSize {
				t.Errorf("Object.Size = %d, want the whole object's %d", out.Object.Size, wantSize)
			}
			if out.Object.ETag == "" || out.Object.Key != tt.key {
				t.Errorf("Object = %+v, want key %q and an ETag", out.Object, tt.key)
			}
		})
	}
}

// TestFakeGetIfMatch checks that a GET with the object's ETag succeeds, that
// one with another ETag fails with ErrPreconditionFailed (HTTP 412), and
// that overwriting an object invalidates its old ETag.
func TestFakeGetIfMatch(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "k", []byte("version one"))
	v1, err := f.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1, IfMatch: v1.ETag})
	if err != nil {
		t.Fatalf("Get with the current ETag: %v", err)
	}
	out.Body.Close()

	f.Seed("b", "k", []byte("version two"))
	v2, err := f.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	if v2.ETag == v1.ETag {
		t.Fatalf("new contents kept the ETag %s", v1.ETag)
	}
	_, err = f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1, IfMatch: v1.ETag})
	var se *Error
	if !errors.Is(err, ErrPreconditionFailed) || !errors.As(err, &se) || se.Status != 412 {
		t.Fatalf("Get with the old ETag: %v, want ErrPreconditionFailed with status 412", err)
	}
	out, err = f.Get(ctx, GetInput{Bucket: "b", Key: "k", Offset: 8, Length: 3, IfMatch: v2.ETag})
	if err != nil {
		t.Fatalf("Get with the new ETag: %v", err)
	}
	defer out.Body.Close()
	if got, _ := io.ReadAll(out.Body); string(got) != "two" {
		t.Errorf("read %q, want %q", got, "two")
	}
}

// TestFakeNotFound checks the not-found errors of each operation: the kind,
// S3's error code and status, and the operation, bucket and key they name.
func TestFakeNotFound(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "there", []byte("x"))
	f.Seed("b", "gone", []byte("x"))
	f.Remove("b", "gone")
	tests := []struct {
		name     string
		call     func() error
		wantOp   string
		wantCode string
	}{
		{name: "head missing key", wantOp: "HeadObject", wantCode: "NotFound", call: func() error {
			_, err := f.Head(ctx, "b", "missing")
			return err
		}},
		{name: "head deleted key", wantOp: "HeadObject", wantCode: "NotFound", call: func() error {
			_, err := f.Head(ctx, "b", "gone")
			return err
		}},
		{name: "get missing key", wantOp: "GetObject", wantCode: "NoSuchKey", call: func() error {
			_, err := f.Get(ctx, GetInput{Bucket: "b", Key: "missing", Length: -1})
			return err
		}},
		{name: "get in missing bucket", wantOp: "GetObject", wantCode: "NoSuchKey", call: func() error {
			_, err := f.Get(ctx, GetInput{Bucket: "nobucket", Key: "there", Length: -1})
			return err
		}},
		{name: "list missing bucket", wantOp: "ListObjectsV2", wantCode: "NoSuchBucket", call: func() error {
			_, err := f.List(ctx, ListInput{Bucket: "nobucket"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("got %v, want ErrNotFound", err)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("%T is not a *store.Error", err)
			}
			if se.Op != tt.wantOp || se.Code != tt.wantCode || se.Status != 404 {
				t.Errorf("got op %q code %q status %d, want %q %q 404", se.Op, se.Code, se.Status, tt.wantOp, tt.wantCode)
			}
		})
	}
}

// TestFakeHeadMetadata checks that HEAD returns user metadata and storage
// class stored with PutObject, and that Put copies the caller's bytes.
func TestFakeHeadMetadata(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	data := []byte("abc")
	f.SeedObject("b", "k", data, "STANDARD_IA", map[string]string{"owner": "me"})
	data[0] = 'X'
	o, err := f.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	if o.Size != 3 || o.StorageClass != "STANDARD_IA" || o.Metadata["owner"] != "me" || o.Key != "k" {
		t.Errorf("Head = %+v", o)
	}
	out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	if got, _ := io.ReadAll(out.Body); string(got) != "abc" {
		t.Errorf("read %q after the caller changed its slice, want %q", got, "abc")
	}
}

// TestFakeObjectAlike: HEAD, a ranged GET and a listing describe a stored
// object alike; the GET's size is the whole object's, and only the
// listing lacks the user metadata.
func TestFakeObjectAlike(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.SeedObject("b", "k", []byte("0123456789"), "STANDARD_IA", map[string]string{"owner": "me"})
	head, err := f.Head(ctx, "b", "k")
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.Get(ctx, GetInput{Bucket: "b", Key: "k", Offset: 2, Length: 3})
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	page, err := f.List(ctx, ListInput{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 1 {
		t.Fatalf("listed %d objects, want 1", len(page.Objects))
	}
	if head.Size != 10 || head.Metadata["owner"] != "me" {
		t.Errorf("Head = %+v, want size 10 and owner: me", head)
	}
	if !reflect.DeepEqual(out.Object, *head) {
		t.Errorf("ranged Get describes %+v, Head %+v", out.Object, *head)
	}
	listed, want := page.Objects[0], *head
	want.Metadata = nil
	if !reflect.DeepEqual(listed, want) {
		t.Errorf("listed %+v, want %+v", listed, want)
	}
}
