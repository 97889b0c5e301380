package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"sync/atomic"
	"time"
)

// The fake's writes follow S3's rules, so that code tested against it
// meets the same refusals against a server:
//
//   - Objects written in one request get the MD5 of their bytes as ETag;
//     multipart objects the multipart ETag of their parts (etag.go).
//     LastModified comes from the fake's clock, to the second.
//   - A write to a bucket that does not exist fails with NoSuchBucket; a
//     key longer than MaxKeyLen with KeyTooLongError; a Put or a part
//     larger than MaxPartSize with EntityTooLarge.
//   - A multipart upload lives, by id, until it is completed or aborted; a
//     part may be uploaded again and the last upload counts. Complete
//     takes the listed parts in strictly ascending order (else
//     InvalidPartOrder), each uploaded with the listed ETag (else
//     InvalidPart), each but the last at least MinPartSize (else
//     EntityTooSmall); parts left out are dropped with the upload.
//   - UploadPartCopy and Copy read the source as it is at the time of the
//     call: a missing one fails NoSuchKey, one whose ETag is not SrcETag
//     fails with ErrPreconditionFailed, an archived one not restored fails
//     with ErrInvalidObjectState. Copying an object onto itself without
//     changing its metadata or class fails with InvalidRequest.
//   - IfNoneMatch fails with ErrPreconditionFailed when the key exists,
//     or, after SetNoConditionalWrites(true), with ErrNotImplemented.
//   - Delete of a missing key and AbortMultipart of an unknown upload
//     succeed, as S3's implementation makes them.
//
// Every call first goes through begin (counted, delayed, failure hook).
// A body is then read in full outside the lock and counted in PutBytes or
// PartBytes, whether or not the write then succeeds: the bytes crossed the
// wire either way.

// fakeUpload is an open multipart upload. Its fields are read and changed
// under its Fake's mu.
type fakeUpload struct {
	bucket, key string
	class       string
	meta        map[string]string
	parts       map[int32]fakePart
}

// fakePart is one uploaded part; data is never changed in place.
type fakePart struct {
	data []byte
	etag string
}

// SetNoConditionalWrites makes writes with IfNoneMatch fail with
// ErrNotImplemented (501 NotImplemented), as on servers without
// conditional writes.
func (f *Fake) SetNoConditionalWrites(on bool) {
	f.mu.Lock()
	f.noCond = on
	f.mu.Unlock()
}

// Uploads returns how many multipart uploads are open in bucket.
func (f *Fake) Uploads(bucket string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, u := range f.uploads {
		if u.bucket == bucket {
			n++
		}
	}
	return n
}

// PutBytes returns how many body bytes Put requests sent.
func (f *Fake) PutBytes() int64 { return f.putBytes.Load() }

// PartBytes returns how many body bytes UploadPart requests sent.
func (f *Fake) PartBytes() int64 { return f.partBytes.Load() }

// Put implements Store.
func (f *Fake) Put(ctx context.Context, in PutInput) (*Object, error) {
	const op = "PutObject"
	if err := f.begin(ctx, op, in.Bucket, in.Key); err != nil {
		return nil, err
	}
	if err := checkWrite(op, in.Bucket, in.Key, in.Size); err != nil {
		return nil, err
	}
	data, err := readBody(op, in.Bucket, in.Key, in.Body, in.Size, &f.putBytes)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkTarget(op, in.Bucket, in.Key, in.IfNoneMatch); err != nil {
		return nil, err
	}
	o := &fakeObject{data: data, etag: md5ETag(data), modified: f.now(), class: in.StorageClass, meta: maps.Clone(in.Metadata)}
	f.buckets[in.Bucket][in.Key] = o
	obj := Written(in.Key, in.Size, o.etag, o.modified, o.class, o.meta)
	return &obj, nil
}

// CreateMultipart implements Store.
func (f *Fake) CreateMultipart(ctx context.Context, in CreateMultipartInput) (string, error) {
	const op = "CreateMultipartUpload"
	if err := f.begin(ctx, op, in.Bucket, in.Key); err != nil {
		return "", err
	}
	if err := checkWrite(op, in.Bucket, in.Key, 0); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkTarget(op, in.Bucket, in.Key, false); err != nil {
		return "", err
	}
	f.nextID++
	id := fmt.Sprintf("fake-upload-%d", f.nextID)
	f.uploads[id] = &fakeUpload{bucket: in.Bucket, key: in.Key, class: in.StorageClass, meta: maps.Clone(in.Metadata), parts: map[int32]fakePart{}}
	return id, nil
}

// UploadPart implements Store.
func (f *Fake) UploadPart(ctx context.Context, in UploadPartInput) (string, error) {
	const op = "UploadPart"
	if err := f.begin(ctx, op, in.Bucket, in.Key); err != nil {
		return "", err
	}
	if err := checkPart(op, in.Bucket, in.Key, in.Part, in.Size); err != nil {
		return "", err
	}
	data, err := readBody(op, in.Bucket, in.Key, in.Body, in.Size, &f.partBytes)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u, err := f.upload(op, in.Bucket, in.Key, in.UploadID)
	if err != nil {
		return "", err
	}
	p := fakePart{data: data, etag: md5ETag(data)}
	u.parts[in.Part] = p
	return p.etag, nil
}

// UploadPartCopy implements Store.
func (f *Fake) UploadPartCopy(ctx context.Context, in UploadPartCopyInput) (string, error) {
	const op = "UploadPartCopy"
	if err := f.begin(ctx, op, in.Bucket, in.Key); err != nil {
		return "", err
	}
	if err := checkPart(op, in.Bucket, in.Key, in.Part, in.Length); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u, err := f.upload(op, in.Bucket, in.Key, in.UploadID)
	if err != nil {
		return "", err
	}
	src, err := f.copySource(op, in.Bucket, in.Key, in.SrcBucket, in.SrcKey, in.SrcETag)
	if err != nil {
		return "", err
	}
	if in.Offset < 0 || in.Length < 1 || in.Offset+in.Length > int64(len(src.data)) {
		return "", fakeErr(op, in.Bucket, in.Key, 416, "InvalidRange", ErrInvalidRange)
	}
	data := src.data[in.Offset : in.Offset+in.Length]
	p := fakePart{data: data, etag: md5ETag(data)}
	u.parts[in.Part] = p
	return p.etag, nil
}

// CompleteMultipart implements Store. The returned Object's Size is what
// the parts add up to.
func (f *Fake) CompleteMultipart(ctx context.Context, in CompleteMultipartInput) (*Object, error) {
	const op = "CompleteMultipartUpload"
	if err := f.begin(ctx, op, in.Bucket, in.Key); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u, err := f.upload(op, in.Bucket, in.Key, in.UploadID)
	if err != nil {
		return nil, err
	}
	if len(in.Parts) == 0 {
		return nil, fakeErr(op, in.Bucket, in.Key, 400, "MalformedXML", ErrOther)
	}
	var data bytes.Buffer
	for i, cp := range in.Parts {
		if i > 0 && cp.Part <= in.Parts[i-1].Part {
			return nil, fakeErr(op, in.Bucket, in.Key, 400, "InvalidPartOrder", ErrOther)
		}
		p, ok := u.parts[cp.Part]
		if !ok || !sameETag(p.etag, cp.ETag) {
			return nil, fakeErr(op, in.Bucket, in.Key, 400, "InvalidPart", ErrOther)
		}
		if i < len(in.Parts)-1 && len(p.data) < MinPartSize {
			return nil, fakeErr(op, in.Bucket, in.Key, 400, "EntityTooSmall", ErrOther)
		}
		data.Write(p.data)
	}
	// A failed precondition leaves the upload open, as on S3.
	if err := f.checkTarget(op, in.Bucket, in.Key, in.IfNoneMatch); err != nil {
		return nil, err
	}
	etag, err := multipartETag(in.Parts)
	if err != nil {
		return nil, fakeErr(op, in.Bucket, in.Key, 400, "InvalidPart", ErrOther)
	}
	o := &fakeObject{data: data.Bytes(), etag: etag, modified: f.now(), class: u.class, meta: u.meta}
	f.buckets[in.Bucket][in.Key] = o
	delete(f.uploads, in.UploadID)
	obj := Written(in.Key, int64(len(o.data)), o.etag, o.modified, o.class, o.meta)
	return &obj, nil
}

// AbortMultipart implements Store.
func (f *Fake) AbortMultipart(ctx context.Context, bucket, key, uploadID string) error {
	const op = "AbortMultipartUpload"
	if err := f.begin(ctx, op, bucket, key); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.upload(op, bucket, key, uploadID); err != nil {
		if goneAlready(err) {
			return nil
		}
		return err
	}
	delete(f.uploads, uploadID)
	return nil
}

// Copy implements Store. The returned Object's Size is the copy's. With
// Rename the fake acts as Tigris does: the object moves, keeping its ETag,
// and the source is gone.
func (f *Fake) Copy(ctx context.Context, in CopyInput) (*Object, error) {
	const op = "CopyObject"
	if err := f.begin(ctx, op, in.Bucket, in.Key); err != nil {
		return nil, err
	}
	if err := checkWrite(op, in.Bucket, in.Key, 0); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	src, err := f.copySource(op, in.Bucket, in.Key, in.SrcBucket, in.SrcKey, in.SrcETag)
	if err != nil {
		return nil, err
	}
	if len(src.data) > MaxPartSize {
		return nil, fakeErr(op, in.Bucket, in.Key, 400, "InvalidRequest", ErrOther)
	}
	same := in.SrcBucket == in.Bucket && in.SrcKey == in.Key
	if same && !in.ReplaceMetadata && in.StorageClass == "" {
		return nil, fakeErr(op, in.Bucket, in.Key, 400, "InvalidRequest", ErrOther)
	}
	if err := f.checkTarget(op, in.Bucket, in.Key, false); err != nil {
		return nil, err
	}
	o := &fakeObject{data: src.data, etag: md5ETag(src.data), modified: f.now(), class: in.StorageClass, meta: src.meta}
	if in.ReplaceMetadata {
		o.meta = maps.Clone(in.Metadata)
	}
	if in.Rename {
		o.etag = src.etag
		if !same {
			delete(f.buckets[in.SrcBucket], in.SrcKey)
		}
	}
	f.buckets[in.Bucket][in.Key] = o
	obj := Written(in.Key, int64(len(o.data)), o.etag, o.modified, o.class, o.meta)
	return &obj, nil
}

// Delete implements Store.
func (f *Fake) Delete(ctx context.Context, bucket, key string) error {
	const op = "DeleteObject"
	if err := f.begin(ctx, op, bucket, key); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets[bucket] == nil {
		return fakeErr(op, bucket, key, 404, "NoSuchBucket", ErrNotFound)
	}
	delete(f.buckets[bucket], key)
	return nil
}

// now is the LastModified of an object written now. REQUIRES: f.mu held.
func (f *Fake) now() time.Time {
	return f.clock.Now().UTC().Truncate(time.Second)
}

// checkTarget checks that key may be written in bucket, under the
// If-None-Match condition when ifNoneMatch is set. REQUIRES: f.mu held.
func (f *Fake) checkTarget(op, bucket, key string, ifNoneMatch bool) error {
	if f.buckets[bucket] == nil {
		return fakeErr(op, bucket, key, 404, "NoSuchBucket", ErrNotFound)
	}
	if !ifNoneMatch {
		return nil
	}
	if f.noCond {
		return fakeErr(op, bucket, key, 501, "NotImplemented", ErrNotImplemented)
	}
	if _, ok := f.object(bucket, key); ok {
		return fakeErr(op, bucket, key, 412, "PreconditionFailed", ErrPreconditionFailed)
	}
	return nil
}

// upload returns the open upload id of bucket/key. REQUIRES: f.mu held.
func (f *Fake) upload(op, bucket, key, id string) (*fakeUpload, error) {
	if f.buckets[bucket] == nil {
		return nil, fakeErr(op, bucket, key, 404, "NoSuchBucket", ErrNotFound)
	}
	u, ok := f.uploads[id]
	if !ok || u.bucket != bucket || u.key != key {
		return nil, fakeErr(op, bucket, key, 404, "NoSuchUpload", ErrNotFound)
	}
	return u, nil
}

// copySource returns the source of a copy to bucket/key, checking it
// still has etag (when set) and can be read. REQUIRES: f.mu held.
func (f *Fake) copySource(op, bucket, key, srcBucket, srcKey, etag string) (*fakeObject, error) {
	src, ok := f.object(srcBucket, srcKey)
	switch {
	case !ok:
		return nil, fakeErr(op, bucket, key, 404, "NoSuchKey", ErrNotFound)
	case etag != "" && !sameETag(src.etag, etag):
		return nil, fakeErr(op, bucket, key, 412, "PreconditionFailed", ErrPreconditionFailed)
	case Archived(src.class) && !src.restore.Readable(time.Now()):
		return nil, fakeErr(op, bucket, key, 403, "InvalidObjectState", ErrInvalidObjectState)
	}
	return src, nil
}

// checkWrite checks what S3 checks of a write's key and size before it
// reads the body.
func checkWrite(op, bucket, key string, size int64) error {
	switch {
	case key == "":
		return fakeErr(op, bucket, key, 400, "InvalidArgument", ErrOther)
	case len(key) > MaxKeyLen:
		return fakeErr(op, bucket, key, 400, "KeyTooLongError", ErrOther)
	case size > MaxPartSize:
		return fakeErr(op, bucket, key, 400, "EntityTooLarge", ErrOther)
	}
	return nil
}

// checkPart checks a part's number and size (the bytes to upload or copy).
func checkPart(op, bucket, key string, part int32, size int64) error {
	if part < 1 || part > MaxParts {
		return fakeErr(op, bucket, key, 400, "InvalidArgument", ErrOther)
	}
	return checkWrite(op, bucket, key, size)
}

// readBody reads the size bytes of a request body, adding what it read to
// n. A body that ends early fails with IncompleteBody; bytes past size are
// not read, as a server reads Content-Length bytes.
func readBody(op, bucket, key string, body io.Reader, size int64, n *atomic.Int64) ([]byte, error) {
	if size < 0 {
		return nil, fakeErr(op, bucket, key, 411, "MissingContentLength", ErrOther)
	}
	if body == nil {
		body = bytes.NewReader(nil)
	}
	data := make([]byte, size)
	got, err := io.ReadFull(body, data)
	n.Add(int64(got))
	if err != nil {
		e := fakeErr(op, bucket, key, 400, "IncompleteBody", ErrOther).(*Error)
		e.Err = err
		return nil, e
	}
	return data, nil
}
