package store

import (
	"io"
	"time"
)

// Limits of S3 multipart uploads that every S3-compatible server enforces.
const (
	// MinPartSize is the smallest part but the last.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part, and the largest object one
	// CopyObject may copy.
	MaxPartSize = 5 << 30
	// MaxParts is the most parts one upload may have.
	MaxParts = 10000
	// MaxObjectSize is the largest object S3 stores (5 TiB).
	MaxObjectSize = 5 << 40
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 1024
)

// Retries. The S3 implementation retries a failed write request (5xx,
// throttling, a connection error or a timeout) like any other, with the
// same backoff and --max-retries, rewinding the body (which is why bodies
// are io.ReadSeeker). That is safe because each write call below is
// idempotent or made so:
//
//   - Put, UploadPart, UploadPartCopy and Copy write the same bytes to the
//     same place again: idempotent.
//   - Delete and AbortMultipart of something already gone succeed.
//   - CompleteMultipart whose first answer was lost fails its retry with
//     NoSuchUpload; the S3 implementation then HEADs the object and takes
//     it as done when its ETag is the multipart ETag of these parts.
//   - The same goes for a retry that fails with 412 after an IfNoneMatch
//     Put (the first attempt made the key exist: done when the ETag is the
//     body's MD5) or CompleteMultipart, and for a Copy with Rename whose
//     retry finds no source (done when the copy has SrcETag; without
//     SrcETag there is nothing to check and the error stands).
//   - CreateMultipart is not idempotent: a retry after a lost answer
//     leaves an upload nobody knows of, which the bucket's lifecycle rule
//     for incomplete uploads (or `aws s3api list-multipart-uploads`)
//     cleans. It costs storage until then, never correctness.

// PutInput stores Body (Size bytes) as Key.
type PutInput struct {
	Bucket, Key string
	Body        io.ReadSeeker
	Size        int64
	// Metadata is the object's user metadata (x-amz-meta-*), keys lower case.
	Metadata map[string]string
	// StorageClass is empty for the bucket's default.
	StorageClass string
	// IfNoneMatch makes the write fail with ErrPreconditionFailed when the
	// key exists (If-None-Match: *). A server that does not support the
	// header fails with ErrNotImplemented.
	IfNoneMatch bool
}

// CreateMultipartInput starts an upload of Key.
type CreateMultipartInput struct {
	Bucket, Key  string
	Metadata     map[string]string
	StorageClass string
}

// UploadPartInput is part Part (1-based) of an upload.
type UploadPartInput struct {
	Bucket, Key, UploadID string
	Part                  int32
	Body                  io.ReadSeeker
	Size                  int64
}

// UploadPartCopyInput fills part Part with Length bytes at Offset of the
// source object, which must still have ETag SrcETag (else
// ErrPreconditionFailed).
type UploadPartCopyInput struct {
	Bucket, Key, UploadID string
	Part                  int32
	SrcBucket, SrcKey     string
	SrcETag               string
	Offset, Length        int64
}

// CompletedPart is one uploaded part.
type CompletedPart struct {
	Part int32
	ETag string
}

// CompleteMultipartInput assembles Parts (in order) into the object.
type CompleteMultipartInput struct {
	Bucket, Key, UploadID string
	Parts                 []CompletedPart
	// Size is the object's size, for the returned Object.
	Size int64
	// IfNoneMatch: as in PutInput.
	IfNoneMatch bool
}

// CopyInput copies SrcKey (which must still have ETag SrcETag, when set)
// to Key.
type CopyInput struct {
	SrcBucket, SrcKey, SrcETag string
	Bucket, Key                string
	// ReplaceMetadata replaces the user metadata with Metadata; otherwise
	// the source's is copied.
	ReplaceMetadata bool
	Metadata        map[string]string
	// StorageClass is the copy's class; empty keeps the bucket's default.
	StorageClass string
	// Rename asks Tigris for a metadata-only rename (X-Tigris-Rename:
	// true): the source is gone afterwards. Other servers ignore it.
	Rename bool
}

// Written describes an object a write made, for callers that show it
// before a HEAD would.
func Written(key string, size int64, etag string, now time.Time, class string, meta map[string]string) Object {
	return Object{Key: key, Size: size, ETag: etag, LastModified: now, StorageClass: class, Metadata: meta}
}
