// Package store is bucketfs's only door to object storage.
//
// It holds a small Store interface (list buckets, list a page, head, ranged
// get, restore; put, multipart uploads, copy, delete), the typed errors
// every implementation returns, an aws-sdk-go-v2 implementation (S3) and an
// in-memory fake (Fake) for unit tests. It imports nothing else of
// bucketfs, so the filesystem, the cache, the read-ahead and the write path
// can be tested against the fake and run against any S3-compatible server.
//
// Every call takes a context: cancelling it aborts the request, which is
// how an interrupted read cancels its GET. The reads are idempotent; the
// writes are idempotent or made so, except CreateMultipart, as the
// contract at the top of write.go says, so the S3 implementation retries
// every call alike.
//
// Lock order: each lock is a leaf. Fake.mu is the package's only mutex; it
// is never held while the failure hook runs, the latency wait goes on or a
// write's body is read, and the fake's request and byte counters are
// atomics outside it. S3 takes no lock of its own: its Retries and Conns
// counters and its Tigris flag are atomics, and a countedConn's sync.Once
// only guards one decrement.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Store is the object-store API bucketfs needs.
type Store interface {
	// ListBuckets lists every bucket the credentials can see.
	ListBuckets(ctx context.Context) ([]Bucket, error)
	// List returns one page of a ListObjectsV2 listing.
	List(ctx context.Context, in ListInput) (*ListPage, error)
	// Head returns an object's attributes.
	Head(ctx context.Context, bucket, key string) (*Object, error)
	// Get opens a ranged read of an object. The caller closes the body.
	// An answer for other bytes than asked fails with ErrBadResponse; the
	// body ends with io.EOF only after exactly the bytes asked for (fewer
	// only where the object ends) and fails with ErrBadResponse if the
	// server sends fewer or more.
	Get(ctx context.Context, in GetInput) (*GetOutput, error)
	// Restore asks for an archived object to be restored. A restore that
	// is already running fails with ErrRestoreInProgress; an object that
	// needs no restore fails with ErrInvalidObjectState.
	Restore(ctx context.Context, in RestoreInput) (RestoreOutcome, error)

	// Writes: see write.go for each call's retry and idempotency contract.

	// Put stores a whole object in one request.
	Put(ctx context.Context, in PutInput) (*Object, error)
	// CreateMultipart starts a multipart upload and returns its id.
	CreateMultipart(ctx context.Context, in CreateMultipartInput) (string, error)
	// UploadPart uploads one part of a multipart upload and returns its ETag.
	UploadPart(ctx context.Context, in UploadPartInput) (string, error)
	// UploadPartCopy fills one part of a multipart upload with a range of
	// an existing object, server-side, and returns the part's ETag.
	UploadPartCopy(ctx context.Context, in UploadPartCopyInput) (string, error)
	// CompleteMultipart assembles the parts into the object.
	CompleteMultipart(ctx context.Context, in CompleteMultipartInput) (*Object, error)
	// AbortMultipart discards a multipart upload and its parts.
	AbortMultipart(ctx context.Context, bucket, key, uploadID string) error
	// Copy copies an object of up to 5 GiB server-side. The returned
	// Object's Size is -1 when the implementation does not know it (S3).
	Copy(ctx context.Context, in CopyInput) (*Object, error)
	// Delete removes an object; a missing object is not an error.
	Delete(ctx context.Context, bucket, key string) error
}

// Bucket is one entry of ListBuckets.
type Bucket struct {
	Name    string
	Created time.Time
}

// Object describes one object as a listing, a HEAD or a GET answer gives it.
type Object struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
	// StorageClass is empty or "STANDARD" for the standard tier.
	StorageClass string
	// Restore is the restore state: from the x-amz-restore header (HEAD
	// and GET) or the listing's RestoreStatus where the server gives it.
	Restore RestoreState
	// Metadata is the user metadata (HEAD and GET only).
	Metadata map[string]string
	// Content is the object's whole content when a listing asked for it
	// (ListInput.WithContent) and the server inlined it; nil otherwise.
	// It was checked against Size, and against ETag where that is a
	// plain MD5; content that could not be checked is not given.
	Content []byte
}

// ListInput asks for one page of objects under Prefix.
type ListInput struct {
	Bucket    string
	Prefix    string
	Delimiter string
	// Token continues a listing; empty for the first page.
	Token string
	// MaxKeys limits the page; zero means the server's default (1000).
	MaxKeys int32
	// WithContent asks a Tigris server to inline small objects' content
	// in the listing (X-Tigris-List-Content); other servers ignore it.
	WithContent bool
}

// ListPage is one page of a listing. Every key in Objects and every entry
// of Prefixes is exactly as stored and starts with the request's Prefix; a
// key bucketfs cannot name for sure goes to Skipped instead.
type ListPage struct {
	Objects []Object
	// Prefixes are the common prefixes, each ending with the delimiter.
	Prefixes []string
	// Skipped holds, as the server sent them, the keys and common prefixes
	// of this page that were left out: a url-encoded name that does not
	// decode, or a name outside the requested prefix. Taking such a name
	// as it came would show or open some other key, so it is dropped; the
	// caller logs it. Skipped entries still count towards the page's size
	// and the listing goes on past them.
	Skipped []string
	// NextToken is empty on the last page.
	NextToken string
}

// GetInput asks for Length bytes at Offset of an object.
type GetInput struct {
	Bucket string
	Key    string
	Offset int64
	// Length < 0 reads to the end of the object; 0 is refused with
	// ErrInvalidRange (HTTP cannot ask for no bytes).
	Length int64
	// IfMatch, when set, makes the read fail with ErrPreconditionFailed if
	// the object's ETag differs.
	IfMatch string
}

// GetOutput is an open ranged read.
type GetOutput struct {
	Body io.ReadCloser
	// Object holds the attributes the response carried; Size is the whole
	// object's size.
	Object Object
}

// Error kinds. Every error a Store returns for a failed request wraps exactly
// one of these, so callers branch with errors.Is.
var (
	ErrNotFound           = errors.New("not found")
	ErrAccessDenied       = errors.New("access denied")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrInvalidObjectState = errors.New("object is archived")
	ErrRestoreInProgress  = errors.New("restore already in progress")
	ErrInvalidRange       = errors.New("invalid range")
	// ErrBadResponse is an answer that breaks the protocol: a ranged GET
	// answered with other bytes than asked (a 200 with the whole object, a
	// Content-Range elsewhere, a length that disagrees) or a body that ends
	// short of or runs past its promised length. Its bytes are never used.
	ErrBadResponse = errors.New("invalid response")
	ErrThrottled   = errors.New("throttled")
	// ErrNotImplemented is a request the server does not support (501, or
	// a 400 naming the header it rejects), such as If-None-Match on PUT.
	ErrNotImplemented = errors.New("not implemented by the server")
	ErrUnreachable    = errors.New("endpoint unreachable")
	ErrOther          = errors.New("request failed")
)

// Error is a failed request with what the server said about it.
type Error struct {
	Op        string // "GetObject", "ListObjectsV2", ...
	Bucket    string
	Key       string
	Status    int    // HTTP status, 0 when no response came
	Code      string // S3 error code, e.g. "NoSuchKey"
	RequestID string
	Kind      error // one of the Err* kinds above
	Err       error // the underlying error
}

func (e *Error) Error() string {
	s := e.Op
	if e.Bucket != "" {
		s += " " + e.Bucket
		if e.Key != "" {
			s += "/" + e.Key
		}
	}
	s += ": " + e.Kind.Error()
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.RequestID != "" {
		s += " request-id=" + e.RequestID
	}
	if e.Err != nil && e.Code == "" {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ErrorCode returns the S3 error code carried by err, or "".
func ErrorCode(err error) string {
	var se *Error
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

// credentialCodes are the error codes of requests whose credentials the
// server rejected (as opposed to valid credentials lacking a permission).
var credentialCodes = map[string]bool{
	"InvalidAccessKeyId":    true,
	"SignatureDoesNotMatch": true,
	"InvalidToken":          true,
	"ExpiredToken":          true,
	"TokenRefreshRequired":  true,
	"XAdminUserNotFound":    true, // versitygw's answer to an unknown key
}

// CredentialsRejected reports whether err says the server did not accept
// the credentials at all.
func CredentialsRejected(err error) bool {
	return credentialCodes[ErrorCode(err)]
}

// httpRange renders the Range header for length bytes at off (length < 0:
// to the end), or "" for a read of the whole object.
func httpRange(off, length int64) string {
	if off == 0 && length < 0 {
		return ""
	}
	if length < 0 {
		return fmt.Sprintf("bytes=%d-", off)
	}
	return fmt.Sprintf("bytes=%d-%d", off, off+length-1)
}

// Version names one immutable version of an object: what an open file
// reads. Read paths key their data by it.
type Version struct {
	Bucket string
	Key    string
	ETag   string
	Size   int64
}
