package store

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The S3 write calls. Each is retried by the SDK like a read (see write.go
// for why that is safe), rewinding its body with Seek. A call that may
// have succeeded on an attempt whose answer was lost checks the outcome
// with a HEAD before it reports failure:
//
//   - CompleteMultipart failing with NoSuchUpload (or, with IfNoneMatch,
//     with 412) after a retry succeeded when the object's ETag is the
//     multipart ETag of the parts asked for.
//   - Put with IfNoneMatch failing with 412 after a retry succeeded when
//     the object's ETag is the body's MD5.
//   - Copy with Rename failing with NotFound (the source is gone) after a
//     retry succeeded when the destination has SrcETag.
//
// A first attempt that fails the same way is the server's real answer and
// is returned as it is.

// Put implements Store. The returned Object's LastModified is the client's
// clock, not the server's.
func (s *S3) Put(ctx context.Context, in PutInput) (*Object, error) {
	start, err := bodyStart(in.Body)
	if err != nil {
		return nil, &Error{Op: "PutObject", Bucket: in.Bucket, Key: in.Key, Kind: ErrOther, Err: err}
	}
	req := &s3.PutObjectInput{
		Bucket:        aws.String(in.Bucket),
		Key:           aws.String(in.Key),
		Body:          in.Body,
		ContentLength: aws.Int64(in.Size),
		Metadata:      in.Metadata,
		StorageClass:  types.StorageClass(in.StorageClass),
	}
	if in.IfNoneMatch {
		req.IfNoneMatch = aws.String("*")
	}
	var n attempts
	resp, err := s.client.PutObject(ctx, req, n.count)
	if err != nil {
		err = wrapErr("PutObject", in.Bucket, in.Key, err)
		if !in.IfNoneMatch || !n.retried() || !errors.Is(err, ErrPreconditionFailed) {
			return nil, err
		}
		etag, herr := bodyETag(in.Body, start, in.Size)
		if herr != nil || !s.landed(ctx, in.Bucket, in.Key, etag) {
			return nil, err
		}
		obj := Written(in.Key, in.Size, etag, time.Now(), in.StorageClass, in.Metadata)
		return &obj, nil
	}
	obj := Written(in.Key, in.Size, aws.ToString(resp.ETag), time.Now(), in.StorageClass, in.Metadata)
	return &obj, nil
}

// CreateMultipart implements Store.
func (s *S3) CreateMultipart(ctx context.Context, in CreateMultipartInput) (string, error) {
	resp, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:       aws.String(in.Bucket),
		Key:          aws.String(in.Key),
		Metadata:     in.Metadata,
		StorageClass: types.StorageClass(in.StorageClass),
	})
	if err != nil {
		return "", wrapErr("CreateMultipartUpload", in.Bucket, in.Key, err)
	}
	if aws.ToString(resp.UploadId) == "" {
		return "", badAnswer("CreateMultipartUpload", in.Bucket, in.Key, resp.ResultMetadata, "no upload id")
	}
	return *resp.UploadId, nil
}

// UploadPart implements Store.
func (s *S3) UploadPart(ctx context.Context, in UploadPartInput) (string, error) {
	resp, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:        aws.String(in.Bucket),
		Key:           aws.String(in.Key),
		UploadId:      aws.String(in.UploadID),
		PartNumber:    aws.Int32(in.Part),
		Body:          in.Body,
		ContentLength: aws.Int64(in.Size),
	})
	if err != nil {
		return "", wrapErr("UploadPart", in.Bucket, in.Key, err)
	}
	if aws.ToString(resp.ETag) == "" {
		return "", badAnswer("UploadPart", in.Bucket, in.Key, resp.ResultMetadata, "no ETag for part %d", in.Part)
	}
	return *resp.ETag, nil
}

// UploadPartCopy implements Store. A Length < 1 fails with ErrInvalidRange
// without a request.
func (s *S3) UploadPartCopy(ctx context.Context, in UploadPartCopyInput) (string, error) {
	if in.Length < 1 || in.Offset < 0 {
		return "", &Error{Op: "UploadPartCopy", Bucket: in.Bucket, Key: in.Key, Kind: ErrInvalidRange,
			Err: fmt.Errorf("copy of %d bytes at %d", in.Length, in.Offset)}
	}
	req := &s3.UploadPartCopyInput{
		Bucket:          aws.String(in.Bucket),
		Key:             aws.String(in.Key),
		UploadId:        aws.String(in.UploadID),
		PartNumber:      aws.Int32(in.Part),
		CopySource:      aws.String(copySource(in.SrcBucket, in.SrcKey)),
		CopySourceRange: aws.String(httpRange(in.Offset, in.Length)),
	}
	if in.SrcETag != "" {
		req.CopySourceIfMatch = aws.String(in.SrcETag)
	}
	resp, err := s.client.UploadPartCopy(ctx, req)
	if err != nil {
		return "", wrapErr("UploadPartCopy", in.Bucket, in.Key, err)
	}
	if resp.CopyPartResult == nil || aws.ToString(resp.CopyPartResult.ETag) == "" {
		return "", badAnswer("UploadPartCopy", in.Bucket, in.Key, resp.ResultMetadata, "no ETag for part %d", in.Part)
	}
	return *resp.CopyPartResult.ETag, nil
}

// CompleteMultipart implements Store. The returned Object's Size is
// in.Size, its LastModified the client's clock, and its StorageClass and
// Metadata empty (CreateMultipart set them).
func (s *S3) CompleteMultipart(ctx context.Context, in CompleteMultipartInput) (*Object, error) {
	parts := make([]types.CompletedPart, len(in.Parts))
	for i, p := range in.Parts {
		parts[i] = types.CompletedPart{PartNumber: aws.Int32(p.Part), ETag: aws.String(p.ETag)}
	}
	req := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(in.Bucket),
		Key:             aws.String(in.Key),
		UploadId:        aws.String(in.UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if in.IfNoneMatch {
		req.IfNoneMatch = aws.String("*")
	}
	var n attempts
	resp, err := s.client.CompleteMultipartUpload(ctx, req, n.count)
	if err != nil {
		err = wrapErr("CompleteMultipartUpload", in.Bucket, in.Key, err)
		lost := ErrorCode(err) == "NoSuchUpload" || (in.IfNoneMatch && errors.Is(err, ErrPreconditionFailed))
		if !lost || !n.retried() {
			return nil, err
		}
		etag, eerr := multipartETag(in.Parts)
		if eerr != nil || !s.landed(ctx, in.Bucket, in.Key, etag) {
			return nil, err
		}
		obj := Written(in.Key, in.Size, etag, time.Now(), "", nil)
		return &obj, nil
	}
	obj := Written(in.Key, in.Size, aws.ToString(resp.ETag), time.Now(), "", nil)
	return &obj, nil
}

// AbortMultipart implements Store. An upload that is gone already
// (NoSuchUpload) counts as aborted.
func (s *S3) AbortMultipart(ctx context.Context, bucket, key, uploadID string) error {
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
	})
	if err != nil {
		if err = wrapErr("AbortMultipartUpload", bucket, key, err); goneAlready(err) {
			return nil
		}
		return err
	}
	return nil
}

// Copy implements Store. The returned Object's Size is -1: CopyObject
// does not tell it, and CopyInput does not either; its ETag and
// LastModified are the server's, StorageClass and Metadata what was asked
// (Metadata nil when the source's were copied).
func (s *S3) Copy(ctx context.Context, in CopyInput) (*Object, error) {
	req := &s3.CopyObjectInput{
		Bucket:       aws.String(in.Bucket),
		Key:          aws.String(in.Key),
		CopySource:   aws.String(copySource(in.SrcBucket, in.SrcKey)),
		StorageClass: types.StorageClass(in.StorageClass),
	}
	if in.SrcETag != "" {
		req.CopySourceIfMatch = aws.String(in.SrcETag)
	}
	var meta map[string]string
	if in.ReplaceMetadata {
		req.MetadataDirective = types.MetadataDirectiveReplace
		req.Metadata, meta = in.Metadata, in.Metadata
	}
	var n attempts
	opts := []func(*s3.Options){n.count}
	if in.Rename {
		opts = append(opts, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, smithyhttp.SetHeaderValue("X-Tigris-Rename", "true"))
		})
	}
	resp, err := s.client.CopyObject(ctx, req, opts...)
	if err != nil {
		err = wrapErr("CopyObject", in.Bucket, in.Key, err)
		// A rename whose answer was lost finds its source gone on retry.
		lost := in.Rename && in.SrcETag != "" && n.retried() && goneAlready(err)
		if !lost || !s.landed(ctx, in.Bucket, in.Key, in.SrcETag) {
			return nil, err
		}
		obj := Written(in.Key, -1, in.SrcETag, time.Now(), in.StorageClass, meta)
		return &obj, nil
	}
	etag, modified := "", time.Now()
	if r := resp.CopyObjectResult; r != nil {
		etag = aws.ToString(r.ETag)
		if r.LastModified != nil {
			modified = *r.LastModified
		}
	}
	obj := Written(in.Key, -1, etag, modified, in.StorageClass, meta)
	return &obj, nil
}

// Delete implements Store. A missing key is success (S3 answers 204
// anyway; some servers say 404); a missing bucket is not.
func (s *S3) Delete(ctx context.Context, bucket, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if err = wrapErr("DeleteObject", bucket, key, err); goneAlready(err) {
			return nil
		}
		return err
	}
	return nil
}

// goneAlready reports whether err says the key or upload the request
// named does not exist, in a bucket that does.
func goneAlready(err error) bool {
	return errors.Is(err, ErrNotFound) && ErrorCode(err) != "NoSuchBucket"
}

// landed reports whether bucket/key exists now with etag: the check that
// a write whose answer was lost took effect. A failed HEAD says no.
func (s *S3) landed(ctx context.Context, bucket, key, etag string) bool {
	obj, err := s.Head(ctx, bucket, key)
	return err == nil && sameETag(obj.ETag, etag)
}

// attempts counts the attempts of one call, retries included.
type attempts struct{ n atomic.Int32 }

// count is a per-call client option that counts each attempt: a finalize
// step placed after the retry loop runs once per attempt.
func (a *attempts) count(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("bucketfsCountAttempts",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				a.n.Add(1)
				return next.HandleFinalize(ctx, in)
			}), "Retry", middleware.After)
	})
}

// retried reports whether the call was sent more than once, so that an
// earlier attempt may have taken effect without its answer coming back.
func (a *attempts) retried() bool { return a.n.Load() > 1 }

// bodyStart is where the SDK will start reading body (and rewind to for a
// retry); 0 for no body.
func bodyStart(body io.ReadSeeker) (int64, error) {
	if body == nil {
		return 0, nil
	}
	return body.Seek(0, io.SeekCurrent)
}

// bodyETag is the ETag S3 gives size bytes of body from start: their MD5.
func bodyETag(body io.ReadSeeker, start, size int64) (string, error) {
	h := md5.New()
	if body != nil {
		if _, err := body.Seek(start, io.SeekStart); err != nil {
			return "", err
		}
		if _, err := io.CopyN(h, body, size); err != nil {
			return "", err
		}
	}
	return `"` + hex.EncodeToString(h.Sum(nil)) + `"`, nil
}

// copySource is the x-amz-copy-source header naming bucket/key: the key
// percent-encoded byte by byte except for RFC 3986's unreserved characters
// and '/', as the AWS SDKs and CLI send it. A '+', '?', '%' or '#' left
// as is would name another key, or cut the name short.
func copySource(bucket, key string) string {
	var b strings.Builder
	b.WriteString(bucket)
	b.WriteByte('/')
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// badAnswer is an *Error of kind ErrBadResponse for a 2xx answer that
// lacks what the call must return.
func badAnswer(op, bucket, key string, md middleware.Metadata, format string, args ...any) error {
	e := &Error{Op: op, Bucket: bucket, Key: key, Kind: ErrBadResponse, Err: fmt.Errorf(format, args...)}
	if raw, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response); ok {
		e.Status = raw.StatusCode
	}
	e.RequestID, _ = awsmiddleware.GetRequestIDMetadata(md)
	return e
}
