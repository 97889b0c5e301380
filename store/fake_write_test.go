package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// wantStoreErr fails t unless err is an *Error of kind and code.
func wantStoreErr(t *testing.T, err error, kind error, code string) {
	t.Helper()
	var se *Error
	if !errors.Is(err, kind) || !errors.As(err, &se) || se.Code != code {
		t.Fatalf("got %v, want %v (%s)", err, kind, code)
	}
}

// readObject returns the whole content of bucket/key.
func readObject(t *testing.T, f *Fake, bucket, key string) ([]byte, Object) {
	t.Helper()
	out, err := f.Get(context.Background(), GetInput{Bucket: bucket, Key: key, Length: -1})
	if err != nil {
		t.Fatalf("Get %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return data, out.Object
}

// part is n bytes of b, a multipart part.
func part(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// TestFakePut: a Put stores the body's Size bytes with an MD5 ETag, the
// fake clock's time, the metadata and class; it counts the bytes it got;
// IfNoneMatch refuses an existing key, or every request once conditional
// writes are off; a missing bucket, a body shorter than Size and a key
// too long fail as on S3.
func TestFakePut(t *testing.T) {
	ctx := context.Background()
	clock := clockwork.NewFakeClockAt(time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC))
	f := NewFake()
	f.SetClock(clock)
	f.CreateBucket("b")
	meta := map[string]string{"mtime": "42"}
	o, err := f.Put(ctx, PutInput{Bucket: "b", Key: "k", Body: strings.NewReader("hello, world"), Size: 5, Metadata: meta, StorageClass: "STANDARD_IA"})
	if err != nil {
		t.Fatal(err)
	}
	meta["mtime"] = "changed by the caller"
	want := Object{Key: "k", Size: 5, ETag: md5ETag([]byte("hello")), LastModified: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), StorageClass: "STANDARD_IA", Metadata: map[string]string{"mtime": "42"}}
	data, got := readObject(t, f, "b", "k")
	if string(data) != "hello" {
		t.Errorf("stored %q, want the Size bytes %q", data, "hello")
	}
	for name, o := range map[string]Object{"Put": *o, "Get": got} {
		if o.Key != want.Key || o.Size != want.Size || o.ETag != want.ETag || !o.LastModified.Equal(want.LastModified) ||
			o.StorageClass != want.StorageClass || o.Metadata["mtime"] != "42" {
			t.Errorf("%s describes %+v, want %+v", name, o, want)
		}
	}
	if got := f.PutBytes(); got != 5 {
		t.Errorf("PutBytes = %d, want 5", got)
	}

	_, err = f.Put(ctx, PutInput{Bucket: "b", Key: "k", Body: strings.NewReader("x"), Size: 1, IfNoneMatch: true})
	wantStoreErr(t, err, ErrPreconditionFailed, "PreconditionFailed")
	if data, _ := readObject(t, f, "b", "k"); string(data) != "hello" {
		t.Errorf("a refused Put changed the object to %q", data)
	}
	if _, err := f.Put(ctx, PutInput{Bucket: "b", Key: "new", Body: strings.NewReader("x"), Size: 1, IfNoneMatch: true}); err != nil {
		t.Errorf("IfNoneMatch Put of a new key: %v", err)
	}
	f.SetNoConditionalWrites(true)
	_, err = f.Put(ctx, PutInput{Bucket: "b", Key: "newer", Body: strings.NewReader("x"), Size: 1, IfNoneMatch: true})
	wantStoreErr(t, err, ErrNotImplemented, "NotImplemented")
	if _, err := f.Put(ctx, PutInput{Bucket: "b", Key: "newer", Body: strings.NewReader("x"), Size: 1}); err != nil {
		t.Errorf("unconditional Put with conditional writes off: %v", err)
	}

	_, err = f.Put(ctx, PutInput{Bucket: "nope", Key: "k", Body: strings.NewReader("x"), Size: 1})
	wantStoreErr(t, err, ErrNotFound, "NoSuchBucket")
	_, err = f.Put(ctx, PutInput{Bucket: "b", Key: "short", Body: strings.NewReader("abc"), Size: 4})
	wantStoreErr(t, err, ErrOther, "IncompleteBody")
	_, err = f.Put(ctx, PutInput{Bucket: "b", Key: strings.Repeat("k", MaxKeyLen+1), Body: strings.NewReader(""), Size: 0})
	wantStoreErr(t, err, ErrOther, "KeyTooLongError")
	_, err = f.Put(ctx, PutInput{Bucket: "b", Key: "huge", Body: strings.NewReader(""), Size: MaxPartSize + 1})
	wantStoreErr(t, err, ErrOther, "EntityTooLarge")
	if _, err := f.Put(ctx, PutInput{Bucket: "b", Key: "empty"}); err != nil {
		t.Errorf("Put without a body: %v", err)
	}
	if _, o := readObject(t, f, "b", "k"); o.ETag != want.ETag {
		t.Error("failed Puts changed the object")
	}
	if got := f.Calls("PutObject"); got != 10 {
		t.Errorf("Calls(PutObject) = %d, want 10", got)
	}
}

// TestFakeMultipart: an upload assembles the listed parts, the last upload
// of a part counting; its ETag is the multipart ETag; it stays open until
// it completes, and Complete refuses what S3 refuses, leaving it open.
func TestFakeMultipart(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.CreateBucket("b")
	f.Seed("b", "src", []byte("0123456789"))
	id, err := f.CreateMultipart(ctx, CreateMultipartInput{Bucket: "b", Key: "big", Metadata: map[string]string{"mtime": "9"}, StorageClass: "GLACIER_IR"})
	if err != nil {
		t.Fatal(err)
	}
	if n := f.Uploads("b"); n != 1 {
		t.Fatalf("Uploads = %d, want 1", n)
	}
	upload := func(n int32, data []byte) string {
		t.Helper()
		etag, err := f.UploadPart(ctx, UploadPartInput{Bucket: "b", Key: "big", UploadID: id, Part: n, Body: bytes.NewReader(data), Size: int64(len(data))})
		if err != nil {
			t.Fatalf("UploadPart %d: %v", n, err)
		}
		if etag != md5ETag(data) {
			t.Errorf("part %d ETag %s, want its MD5 %s", n, etag, md5ETag(data))
		}
		return etag
	}
	stale := upload(1, part('x', MinPartSize))
	e1 := upload(1, part('a', MinPartSize))
	e2 := upload(2, part('b', MinPartSize+1))
	upload(4, []byte("never listed"))
	e3, err := f.UploadPartCopy(ctx, UploadPartCopyInput{Bucket: "b", Key: "big", UploadID: id, Part: 3, SrcBucket: "b", SrcKey: "src", SrcETag: md5ETag([]byte("0123456789")), Offset: 2, Length: 5})
	if err != nil || e3 != md5ETag([]byte("23456")) {
		t.Fatalf("UploadPartCopy = %s, %v", e3, err)
	}
	if got, want := f.PartBytes(), int64(3*MinPartSize+1+len("never listed")); got != want {
		t.Errorf("PartBytes = %d, want %d (copies are not uploads)", got, want)
	}

	refusals := []struct {
		name     string
		in       CompleteMultipartInput
		wantKind error
		wantCode string
	}{
		{name: "small part not last", in: CompleteMultipartInput{Parts: []CompletedPart{{1, e1}, {3, e3}, {4, md5ETag([]byte("never listed"))}}}, wantKind: ErrOther, wantCode: "EntityTooSmall"},
		{name: "part never uploaded", in: CompleteMultipartInput{Parts: []CompletedPart{{1, e1}, {5, e2}}}, wantKind: ErrOther, wantCode: "InvalidPart"},
		{name: "stale ETag of a re-uploaded part", in: CompleteMultipartInput{Parts: []CompletedPart{{1, stale}, {2, e2}}}, wantKind: ErrOther, wantCode: "InvalidPart"},
		{name: "out of order", in: CompleteMultipartInput{Parts: []CompletedPart{{2, e2}, {1, e1}}}, wantKind: ErrOther, wantCode: "InvalidPartOrder"},
		{name: "repeated part", in: CompleteMultipartInput{Parts: []CompletedPart{{1, e1}, {1, e1}}}, wantKind: ErrOther, wantCode: "InvalidPartOrder"},
		{name: "no parts", in: CompleteMultipartInput{}, wantKind: ErrOther, wantCode: "MalformedXML"},
		{name: "other key", in: CompleteMultipartInput{Key: "other", Parts: []CompletedPart{{1, e1}}}, wantKind: ErrNotFound, wantCode: "NoSuchUpload"},
		{name: "unknown upload", in: CompleteMultipartInput{UploadID: "nope", Parts: []CompletedPart{{1, e1}}}, wantKind: ErrNotFound, wantCode: "NoSuchUpload"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Bucket = "b"
			if in.Key == "" {
				in.Key = "big"
			}
			if in.UploadID == "" {
				in.UploadID = id
			}
			_, err := f.CompleteMultipart(ctx, in)
			wantStoreErr(t, err, tt.wantKind, tt.wantCode)
			if n := f.Uploads("b"); n != 1 {
				t.Errorf("after a refused Complete %d uploads are open, want 1", n)
			}
		})
	}

	parts := []CompletedPart{{1, e1}, {2, strings.Trim(e2, `"`)}, {3, e3}}
	o, err := f.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "big", UploadID: id, Parts: parts})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(part('a', MinPartSize), part('b', MinPartSize+1)...), "23456"...)
	data, got := readObject(t, f, "b", "big")
	if !bytes.Equal(data, want) {
		t.Errorf("the object has %d bytes, not the %d of the listed parts", len(data), len(want))
	}
	etag, _ := multipartETag(parts)
	if o.ETag != etag || got.ETag != etag || o.Size != int64(len(want)) || got.StorageClass != "GLACIER_IR" || got.Metadata["mtime"] != "9" {
		t.Errorf("Complete returned %+v, Get %+v; want ETag %s, the upload's class and metadata", o, got, etag)
	}
	if n := f.Uploads("b"); n != 0 {
		t.Errorf("%d uploads open after Complete, want 0", n)
	}
	if _, err := f.UploadPart(ctx, UploadPartInput{Bucket: "b", Key: "big", UploadID: id, Part: 1, Body: strings.NewReader("x"), Size: 1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UploadPart to a completed upload: %v, want NoSuchUpload", err)
	}
}

// TestFakeMultipartIfNoneMatchAndAbort: Complete with IfNoneMatch refuses
// an existing key and leaves the upload open for Abort, which also
// succeeds for an upload that is gone; a single small part completes.
func TestFakeMultipartIfNoneMatchAndAbort(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "taken", []byte("x"))
	id, err := f.CreateMultipart(ctx, CreateMultipartInput{Bucket: "b", Key: "taken"})
	if err != nil {
		t.Fatal(err)
	}
	etag, err := f.UploadPart(ctx, UploadPartInput{Bucket: "b", Key: "taken", UploadID: id, Part: 1, Body: strings.NewReader("small"), Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	parts := []CompletedPart{{1, etag}}
	_, err = f.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "taken", UploadID: id, Parts: parts, IfNoneMatch: true})
	wantStoreErr(t, err, ErrPreconditionFailed, "PreconditionFailed")
	f.SetNoConditionalWrites(true)
	_, err = f.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "taken", UploadID: id, Parts: parts, IfNoneMatch: true})
	wantStoreErr(t, err, ErrNotImplemented, "NotImplemented")
	if n := f.Uploads("b"); n != 1 {
		t.Fatalf("%d uploads open, want 1", n)
	}
	if err := f.AbortMultipart(ctx, "b", "taken", id); err != nil {
		t.Fatal(err)
	}
	if err := f.AbortMultipart(ctx, "b", "taken", id); err != nil {
		t.Errorf("second Abort: %v, want success", err)
	}
	if n := f.Uploads("b"); n != 0 {
		t.Errorf("%d uploads open after Abort", n)
	}
	err = f.AbortMultipart(ctx, "nope", "taken", id)
	wantStoreErr(t, err, ErrNotFound, "NoSuchBucket")

	id, _ = f.CreateMultipart(ctx, CreateMultipartInput{Bucket: "b", Key: "one"})
	etag, _ = f.UploadPart(ctx, UploadPartInput{Bucket: "b", Key: "one", UploadID: id, Part: 1, Body: strings.NewReader("small"), Size: 5})
	if _, err := f.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "one", UploadID: id, Parts: []CompletedPart{{1, etag}}, IfNoneMatch: false}); err != nil {
		t.Errorf("Complete of one small part: %v", err)
	}
	_, err = f.CreateMultipart(ctx, CreateMultipartInput{Bucket: "nope", Key: "k"})
	wantStoreErr(t, err, ErrNotFound, "NoSuchBucket")
}

// TestFakeUploadPartCopy: a part copy reads the source as it is now and
// refuses a source that changed, is missing, is archived, or is shorter
// than the range.
func TestFakeUploadPartCopy(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "src", []byte("version one"))
	f.SeedObject("b", "cold", []byte("archived"), "GLACIER", nil)
	oldETag := md5ETag([]byte("version one"))
	f.Seed("b", "src", []byte("version two"))
	id, _ := f.CreateMultipart(ctx, CreateMultipartInput{Bucket: "b", Key: "k"})
	cp := func(src, etag string, off, n int64) error {
		_, err := f.UploadPartCopy(ctx, UploadPartCopyInput{Bucket: "b", Key: "k", UploadID: id, Part: 1, SrcBucket: "b", SrcKey: src, SrcETag: etag, Offset: off, Length: n})
		return err
	}
	wantStoreErr(t, cp("src", oldETag, 0, 3), ErrPreconditionFailed, "PreconditionFailed")
	wantStoreErr(t, cp("missing", "", 0, 3), ErrNotFound, "NoSuchKey")
	wantStoreErr(t, cp("cold", "", 0, 3), ErrInvalidObjectState, "InvalidObjectState")
	wantStoreErr(t, cp("src", "", 5, 7), ErrInvalidRange, "InvalidRange")
	wantStoreErr(t, cp("src", "", 0, 0), ErrInvalidRange, "InvalidRange")
	if err := cp("src", md5ETag([]byte("version two")), 8, 3); err != nil {
		t.Fatal(err)
	}
	if got := f.Calls("UploadPartCopy"); got != 6 {
		t.Errorf("Calls(UploadPartCopy) = %d, want 6", got)
	}
}

// TestFakeCopy: a copy takes the source's bytes and, unless replaced, its
// metadata; it refuses a changed or archived source and a copy onto itself
// that changes nothing; a rename keeps the ETag and removes the source.
func TestFakeCopy(t *testing.T) {
	ctx := context.Background()
	clock := clockwork.NewFakeClockAt(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	f := NewFake()
	f.SetClock(clock)
	f.SeedObject("b", "src", []byte("payload"), "STANDARD_IA", map[string]string{"mtime": "1"})
	srcETag := md5ETag([]byte("payload"))
	f.CreateBucket("dst")

	o, err := f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "src", SrcETag: srcETag, Bucket: "dst", Key: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	data, got := readObject(t, f, "dst", "kept")
	if string(data) != "payload" || got.Metadata["mtime"] != "1" || got.StorageClass != "" || got.ETag != srcETag || !got.LastModified.Equal(clock.Now()) || o.Size != 7 {
		t.Errorf("copy %q %+v (returned %+v), want the source's bytes and metadata, the default class", data, got, o)
	}
	if _, err := f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "src", Bucket: "dst", Key: "new", ReplaceMetadata: true, Metadata: map[string]string{"mtime": "2"}, StorageClass: "GLACIER_IR"}); err != nil {
		t.Fatal(err)
	}
	if _, got := readObject(t, f, "dst", "new"); got.Metadata["mtime"] != "2" || got.StorageClass != "GLACIER_IR" {
		t.Errorf("copy with new metadata: %+v", got)
	}

	_, err = f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "src", SrcETag: `"stale"`, Bucket: "dst", Key: "x"})
	wantStoreErr(t, err, ErrPreconditionFailed, "PreconditionFailed")
	_, err = f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "src", Bucket: "b", Key: "src"})
	wantStoreErr(t, err, ErrOther, "InvalidRequest")
	if _, err := f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "src", Bucket: "b", Key: "src", ReplaceMetadata: true, Metadata: map[string]string{"mtime": "3"}}); err != nil {
		t.Errorf("copy onto itself with new metadata: %v", err)
	}
	_, err = f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "src", Bucket: "missing", Key: "x"})
	wantStoreErr(t, err, ErrNotFound, "NoSuchBucket")
	f.Archive("b", "src", "DEEP_ARCHIVE")
	_, err = f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "src", Bucket: "dst", Key: "x"})
	wantStoreErr(t, err, ErrInvalidObjectState, "InvalidObjectState")

	f.Seed("b", "old", []byte("move me"))
	moved := md5ETag([]byte("move me"))
	if o, err := f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "old", SrcETag: moved, Bucket: "b", Key: "renamed", Rename: true}); err != nil || o.ETag != moved {
		t.Fatalf("rename: %+v, %v", o, err)
	}
	if _, err := f.Head(ctx, "b", "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the renamed source is still there: %v", err)
	}
	if data, _ := readObject(t, f, "b", "renamed"); string(data) != "move me" {
		t.Errorf("renamed object holds %q", data)
	}
}

// TestFakeDelete: Delete removes a key, succeeds for a missing one, and
// fails for a missing bucket.
func TestFakeDelete(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "k", []byte("x"))
	if err := f.Delete(ctx, "b", "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Head(ctx, "b", "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Head after Delete: %v", err)
	}
	if err := f.Delete(ctx, "b", "k"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	wantStoreErr(t, f.Delete(ctx, "nope", "k"), ErrNotFound, "NoSuchBucket")
	if got := f.Calls("DeleteObject"); got != 3 {
		t.Errorf("Calls(DeleteObject) = %d, want 3", got)
	}
}

// TestFakeWritesBegin: every write call goes through the failure hook
// under its S3 operation name, is counted, and reads no body when it fails
// there.
func TestFakeWritesBegin(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed("b", "src", []byte("x"))
	id, _ := f.CreateMultipart(ctx, CreateMultipartInput{Bucket: "b", Key: "k"})
	var failed []string
	f.SetFailure(func(op, bucket, key string) error {
		failed = append(failed, op)
		return &Error{Op: op, Bucket: bucket, Key: key, Status: 503, Code: "SlowDown", Kind: ErrThrottled}
	})
	calls := map[string]func() error{
		"PutObject": func() error {
			_, err := f.Put(ctx, PutInput{Bucket: "b", Key: "k", Body: strings.NewReader("x"), Size: 1})
			return err
		},
		"CreateMultipartUpload": func() error {
			_, err := f.CreateMultipart(ctx, CreateMultipartInput{Bucket: "b", Key: "k"})
			return err
		},
		"UploadPart": func() error {
			_, err := f.UploadPart(ctx, UploadPartInput{Bucket: "b", Key: "k", UploadID: id, Part: 1, Body: strings.NewReader("x"), Size: 1})
			return err
		},
		"UploadPartCopy": func() error {
			_, err := f.UploadPartCopy(ctx, UploadPartCopyInput{Bucket: "b", Key: "k", UploadID: id, Part: 1, SrcBucket: "b", SrcKey: "src", Length: 1})
			return err
		},
		"CompleteMultipartUpload": func() error {
			_, err := f.CompleteMultipart(ctx, CompleteMultipartInput{Bucket: "b", Key: "k", UploadID: id, Parts: []CompletedPart{{1, `"e"`}}})
			return err
		},
		"AbortMultipartUpload": func() error { return f.AbortMultipart(ctx, "b", "k", id) },
		"CopyObject": func() error {
			_, err := f.Copy(ctx, CopyInput{SrcBucket: "b", SrcKey: "src", Bucket: "b", Key: "k"})
			return err
		},
		"DeleteObject": func() error { return f.Delete(ctx, "b", "src") },
	}
	for op, call := range calls {
		failed = nil
		before := f.Calls(op)
		if err := call(); !errors.Is(err, ErrThrottled) {
			t.Errorf("%s: %v, want the hook's error", op, err)
		}
		if len(failed) != 1 || failed[0] != op {
			t.Errorf("%s reached the hook as %v", op, failed)
		}
		if got := f.Calls(op) - before; got != 1 {
			t.Errorf("%s counted %d calls, want 1", op, got)
		}
	}
	f.SetFailure(nil)
	if f.PutBytes() != 0 || f.PartBytes() != 0 || f.Uploads("b") != 1 {
		t.Errorf("failed calls read %d+%d bytes or changed uploads (%d open)", f.PutBytes(), f.PartBytes(), f.Uploads("b"))
	}
	if _, err := f.Head(ctx, "b", "src"); err != nil {
		t.Errorf("a failed Delete removed the object: %v", err)
	}
}
