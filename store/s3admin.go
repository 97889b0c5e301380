package store

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Bucket administration: what the CSI driver's controller needs beyond the
// Store interface to give each volume a bucket of its own and to remove a
// volume's keys. A mount never calls these, so they are methods of S3
// only, not of Store.

// ErrBucketExists is the kind of CreateBucket's error when the name is
// taken: by the caller's own account (BucketAlreadyOwnedByYou; the Code
// tells which) or by another.
var ErrBucketExists = errors.New("bucket already exists")

// MaxDeleteKeys is the most keys one DeleteObjects request may name.
const MaxDeleteKeys = 1000

// CreateBucket creates bucket in the client's region. Outside us-east-1
// (and Tigris's "auto", which takes no constraint) AWS wants the region
// as a LocationConstraint. A name already taken fails with an *Error of
// kind ErrBucketExists whose Code is BucketAlreadyOwnedByYou or
// BucketAlreadyExists. (AWS in us-east-1 answers 200 to a bucket the
// caller already owns: the caller cannot tell, and checks what it needs
// to, such as whether the bucket is empty.)
func (s *S3) CreateBucket(ctx context.Context, bucket string) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if r := s.client.Options().Region; r != "" && r != "us-east-1" && r != "auto" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(r),
		}
	}
	if _, err := s.client.CreateBucket(ctx, in); err != nil {
		err = wrapErr("CreateBucket", bucket, "", err)
		var se *Error
		if errors.As(err, &se) && (se.Code == "BucketAlreadyOwnedByYou" || se.Code == "BucketAlreadyExists") {
			se.Kind = ErrBucketExists
		}
		return err
	}
	return nil
}

// DeleteBucket removes an empty bucket. A bucket that still holds objects
// fails with Code BucketNotEmpty; a missing one with ErrNotFound.
func (s *S3) DeleteBucket(ctx context.Context, bucket string) error {
	if _, err := s.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return wrapErr("DeleteBucket", bucket, "", err)
	}
	return nil
}

// DeleteKeys removes keys from bucket with DeleteObjects, MaxDeleteKeys at
// a time. A missing key is not an error (S3 reports it deleted). The first
// key the server failed to delete is returned as an *Error naming it, with
// the server's code; every batch is still sent.
func (s *S3) DeleteKeys(ctx context.Context, bucket string, keys []string) error {
	var first error
	for len(keys) > 0 {
		n := min(len(keys), MaxDeleteKeys)
		batch := keys[:n]
		keys = keys[n:]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return wrapErr("DeleteObjects", bucket, batch[0], err)
		}
		if len(out.Errors) > 0 && first == nil {
			e := out.Errors[0]
			first = &Error{
				Op: "DeleteObjects", Bucket: bucket, Key: aws.ToString(e.Key),
				Code: aws.ToString(e.Code), Kind: deleteErrKind(aws.ToString(e.Code)),
				Err: errors.New(aws.ToString(e.Message)),
			}
		}
	}
	return first
}

// deleteErrKind classifies the code of one key's failure in a
// DeleteObjects answer, which comes without an HTTP status of its own.
func deleteErrKind(code string) error {
	switch {
	case code == "AccessDenied" || credentialCodes[code]:
		return ErrAccessDenied
	case code == "SlowDown" || strings.HasPrefix(code, "Throttl"):
		return ErrThrottled
	case code == "NoSuchBucket":
		return ErrNotFound
	}
	return ErrOther
}
