package store

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Config configures the aws-sdk-go-v2 client. Credentials, region,
// profile and endpoint also come from the standard AWS chain (environment,
// shared config files); fields set here win.
type S3Config struct {
	Endpoint  string // e.g. https://t3.storage.dev; empty for AWS or AWS_ENDPOINT_URL*
	Region    string // "auto" for Tigris; defaults to us-east-1 when nothing sets it
	Profile   string
	PathStyle bool
	// DialTimeout bounds connection set-up so an unreachable endpoint fails
	// fast instead of after the operating system's long default.
	DialTimeout time.Duration
	// MaxConns bounds idle and active connections per host.
	MaxConns int
	// MaxRetries is how many times a request that failed in a way worth
	// retrying (5xx, throttling, connection errors, timeouts) is sent again,
	// after capped exponential backoff with jitter. 0 means 5; negative
	// means none.
	MaxRetries int
	// RequestTimeout bounds the wait for a response's headers; a request
	// that times out is retried. 0 means 30s.
	RequestTimeout time.Duration
	// AccessKeyID, SecretAccessKey and SessionToken, when AccessKeyID is
	// set, are the credentials, instead of the chain's (the CSI driver's
	// controller takes them from a Kubernetes secret).
	AccessKeyID, SecretAccessKey, SessionToken string
}

// S3 is the Store backed by aws-sdk-go-v2.
type S3 struct {
	// Dependencies
	client *s3.Client

	// Constant data
	tigrisHost bool // the endpoint is a Tigris host name

	// Mutable state (atomics: no lock)

	// Retries counts requests sent again after a failure.
	Retries atomic.Int64
	// Conns counts connections to the store open now, idle or busy.
	Conns atomic.Int64
	// tigrisSeen is set once a response named Tigris as its Server.
	tigrisSeen atomic.Bool
}

// countedConn is a connection to the store, counted while open.
type countedConn struct {
	net.Conn
	once sync.Once     // Close counts the connection gone once
	n    *atomic.Int64 // S3.Conns
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.n.Add(-1) })
	return c.Conn.Close()
}

// countingRetryer is the SDK's standard retryer, counting retries.
type countingRetryer struct {
	aws.RetryerV2
	n *atomic.Int64
}

func (r countingRetryer) RetryDelay(attempt int, err error) (time.Duration, error) {
	r.n.Add(1)
	return r.RetryerV2.RetryDelay(attempt, err)
}

// Retry waits: retry n waits a random time up to retryBase x 2^(n-1),
// capped at retryMaxBackoff. The SDK's own base (50 ms) spends five
// retries in under a second on average, less than a server restart or a
// network blip takes; from 250 ms the default five span about 4 s on
// average and up to 7.75 s, and the first retry still comes within 250 ms.
const (
	retryBase       = 250 * time.Millisecond
	retryMaxBackoff = 5 * time.Second
)

// retryableCodes are error codes retried on top of the SDK's own list (5xx,
// throttling, timeouts, connection errors).
var retryableCodes = map[string]struct{}{
	// A 409 from S3 when a conditional write (If-None-Match, or a
	// CompleteMultipartUpload) races another one on the same key, including
	// our own first attempt whose answer was lost. AWS says to retry it;
	// the retry then succeeds, fails with 412, or, for a completed upload,
	// with NoSuchUpload (which CompleteMultipart checks with a HEAD).
	"ConditionalRequestConflict": {},
}

// newRetryer is the SDK's standard retryer (capped exponential backoff,
// full jitter; 1 s base for throttling) with bucketfs's waits and
// retryableCodes, counting retries in n.
func newRetryer(maxRetries int, n *atomic.Int64) aws.RetryerV2 {
	return countingRetryer{n: n, RetryerV2: retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = maxRetries + 1
		so.BaseDelay = retryBase
		so.MaxBackoff = retryMaxBackoff
		so.RateLimiter = ratelimit.None
		so.Retryables = append(so.Retryables, retry.RetryableErrorCode{Codes: retryableCodes})
	})}
}

var _ Store = (*S3)(nil)

// NewS3 builds a client from the default AWS configuration chain.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 64
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = 5
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	st := &S3{}
	// A BuildableClient keeps the SDK's handling of AWS_CA_BUNDLE, which a
	// plain *http.Client passed to the SDK would silently drop.
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = cfg.DialTimeout
		}).
		WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConns = cfg.MaxConns * 2
			tr.MaxIdleConnsPerHost = cfg.MaxConns
			tr.MaxConnsPerHost = cfg.MaxConns
			tr.ResponseHeaderTimeout = cfg.RequestTimeout
			dial := tr.DialContext
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				st.Conns.Add(1)
				return &countedConn{Conn: c, n: &st.Conns}, nil
			}
		})
	opts := []func(*config.LoadOptions) error{config.WithHTTPClient(httpClient)}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(cfg.Profile))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, err
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		// Capped exponential backoff with full jitter (the SDK's standard
		// retryer), without its client-side retry quota: a mount that
		// outlives an outage must not stop retrying for minutes after it.
		o.Retryer = newRetryer(cfg.MaxRetries, &st.Retries)
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Checksums of whole objects cannot be validated on ranged reads;
		// skip the SDK's attempt and its warning log.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
		// Request checksums stay at the SDK's default (when supported): a
		// CRC32 of each PutObject and UploadPart body, sent as a header
		// over http and as an aws-chunked trailer over https. versitygw
		// (the test server) accepts both. The SDK seeks the body to
		// compute it over http and to rewind it for a retry.
		o.APIOptions = append(o.APIOptions, st.watchServer)
	})
	st.client = client
	st.tigrisHost = tigrisEndpoint(aws.ToString(client.Options().BaseEndpoint))
	return st, nil
}

// ListBuckets implements Store.
func (s *S3) ListBuckets(ctx context.Context) ([]Bucket, error) {
	var out []Bucket
	p := s3.NewListBucketsPaginator(s.client, &s3.ListBucketsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, wrapErr("ListBuckets", "", "", err)
		}
		for _, b := range page.Buckets {
			out = append(out, Bucket{Name: aws.ToString(b.Name), Created: aws.ToTime(b.CreationDate)})
		}
	}
	return out, nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, in ListInput) (*ListPage, error) {
	req := &s3.ListObjectsV2Input{Bucket: aws.String(in.Bucket)}
	if in.Prefix != "" {
		req.Prefix = aws.String(in.Prefix)
	}
	if in.Delimiter != "" {
		req.Delimiter = aws.String(in.Delimiter)
	}
	if in.Token != "" {
		req.ContinuationToken = aws.String(in.Token)
	}
	if in.MaxKeys > 0 {
		req.MaxKeys = aws.Int32(in.MaxKeys)
	}
	// Ask for restore state of archived objects; servers that do not know
	// the header ignore it.
	req.OptionalObjectAttributes = []types.OptionalObjectAttributes{types.OptionalObjectAttributesRestoreStatus}
	// Keys come url-encoded where the server honours this: XML 1.0 cannot
	// carry U+0001 and its kin, and one such key would otherwise make the
	// whole page undecodable. The SDK does not decode them itself.
	req.EncodingType = types.EncodingTypeUrl
	var opts []func(*s3.Options)
	var raw []byte
	if in.WithContent {
		opts = append(opts, withListContent(&raw))
	}
	resp, err := s.client.ListObjectsV2(ctx, req, opts...)
	if err != nil {
		return nil, wrapErr("ListObjectsV2", in.Bucket, in.Prefix, err)
	}
	var inline map[string]inlined
	if raw != nil {
		inline = inlineContent(raw)
	}
	// A server that ignores encoding-type sends raw names and says nothing.
	encoded := strings.EqualFold(string(resp.EncodingType), string(types.EncodingTypeUrl))
	page := &ListPage{}
	for _, o := range resp.Contents {
		key, ok := listedName(aws.ToString(o.Key), in.Prefix, encoded)
		if !ok {
			page.Skipped = append(page.Skipped, aws.ToString(o.Key))
			continue
		}
		obj := Object{
			Key:          key,
			Size:         aws.ToInt64(o.Size),
			ETag:         aws.ToString(o.ETag),
			LastModified: aws.ToTime(o.LastModified),
			StorageClass: string(o.StorageClass),
		}
		if rs := o.RestoreStatus; rs != nil {
			obj.Restore = RestoreState{Requested: true, Ongoing: aws.ToBool(rs.IsRestoreInProgress), Expiry: aws.ToTime(rs.RestoreExpiryDate)}
		}
		if c, ok := inline[aws.ToString(o.Key)]; ok {
			obj.Content = checkedContent(c, obj)
		}
		page.Objects = append(page.Objects, obj)
	}
	for _, p := range resp.CommonPrefixes {
		prefix, ok := listedName(aws.ToString(p.Prefix), in.Prefix, encoded)
		if !ok {
			page.Skipped = append(page.Skipped, aws.ToString(p.Prefix))
			continue
		}
		page.Prefixes = append(page.Prefixes, prefix)
	}
	if aws.ToBool(resp.IsTruncated) {
		page.NextToken = aws.ToString(resp.NextContinuationToken)
	}
	return page, nil
}

// listedName turns a key or common prefix as listed into the stored name:
// decoded when the page is url-encoded (S3 encodes as a query string, a
// space as '+'). It fails for a name that does not decode, or that lies
// outside the requested prefix, rather than guess.
func listedName(raw, prefix string, encoded bool) (string, bool) {
	name := raw
	if encoded {
		var err error
		if name, err = url.QueryUnescape(raw); err != nil {
			return "", false
		}
	}
	return name, strings.HasPrefix(name, prefix)
}

// Head implements Store.
func (s *S3) Head(ctx context.Context, bucket, key string) (*Object, error) {
	resp, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, wrapErr("HeadObject", bucket, key, err)
	}
	obj := headersObject(key, aws.ToInt64(resp.ContentLength), resp.ETag, resp.LastModified, resp.StorageClass, resp.Restore, resp.Metadata)
	return &obj, nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, in GetInput) (*GetOutput, error) {
	if in.Length == 0 {
		// HTTP has no zero-length range; "bytes=N-(N-1)" is malformed and a
		// server may answer it with the whole object.
		return nil, &Error{Op: "GetObject", Bucket: in.Bucket, Key: in.Key, Kind: ErrInvalidRange, Err: errors.New("zero-length read")}
	}
	req := &s3.GetObjectInput{Bucket: aws.String(in.Bucket), Key: aws.String(in.Key)}
	if r := httpRange(in.Offset, in.Length); r != "" {
		req.Range = aws.String(r)
	}
	if in.IfMatch != "" {
		req.IfMatch = aws.String(in.IfMatch)
	}
	resp, err := s.client.GetObject(ctx, req)
	if err != nil {
		return nil, wrapErr("GetObject", in.Bucket, in.Key, err)
	}
	a := getAnswer{contentRange: aws.ToString(resp.ContentRange), contentLength: -1}
	if resp.ContentLength != nil {
		a.contentLength = *resp.ContentLength
	}
	if raw, ok := awsmiddleware.GetRawResponse(resp.ResultMetadata).(*smithyhttp.Response); ok {
		a.status = raw.StatusCode
	}
	reqID, _ := awsmiddleware.GetRequestIDMetadata(resp.ResultMetadata)
	fail := func(err error) error {
		return &Error{Op: "GetObject", Bucket: in.Bucket, Key: in.Key, Status: a.status, RequestID: reqID, Kind: ErrBadResponse, Err: err}
	}
	n, size, err := checkGet(in.Offset, in.Length, a)
	if err != nil {
		resp.Body.Close()
		return nil, fail(err)
	}
	if etag := aws.ToString(resp.ETag); in.IfMatch != "" && etag != "" && !sameETag(in.IfMatch, etag) {
		// A server or gateway that ignores If-Match answered with
		// another version: fail as the 412 it owed, rather than hand
		// out its bytes as the version asked for.
		resp.Body.Close()
		return nil, &Error{Op: "GetObject", Bucket: in.Bucket, Key: in.Key, Status: a.status, RequestID: reqID, Kind: ErrPreconditionFailed,
			Err: errors.New("asked for ETag " + in.IfMatch + " (If-Match), the server answered with ETag " + etag)}
	}
	return &GetOutput{
		Body:   &checkedBody{rc: resp.Body, fail: fail, promised: n, left: n},
		Object: headersObject(in.Key, size, resp.ETag, resp.LastModified, resp.StorageClass, resp.Restore, resp.Metadata),
	}, nil
}

// Restore implements Store.
func (s *S3) Restore(ctx context.Context, in RestoreInput) (RestoreOutcome, error) {
	req := &types.RestoreRequest{Days: aws.Int32(in.Days)}
	if in.Tier != "" {
		req.GlacierJobParameters = &types.GlacierJobParameters{Tier: types.Tier(in.Tier)}
	}
	out, err := s.client.RestoreObject(ctx, &s3.RestoreObjectInput{Bucket: aws.String(in.Bucket), Key: aws.String(in.Key), RestoreRequest: req})
	if err != nil {
		return 0, wrapErr("RestoreObject", in.Bucket, in.Key, err)
	}
	// 202 starts a restore, 200 extends one that is done.
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok && raw.StatusCode == http.StatusOK {
		return RestoreAlreadyDone, nil
	}
	return RestoreStarted, nil
}

// headersObject builds the Object that a HEAD or GET answer describes from
// the headers both carry. size is the whole object's: a HEAD's
// Content-Length; for a GET, what checkGet found (the total of a 206's
// Content-Range, or a 200's Content-Length). An x-amz-restore header that
// does not parse reads as no restore.
func headersObject(key string, size int64, etag *string, modified *time.Time, class types.StorageClass, restore *string, meta map[string]string) Object {
	st, _ := ParseRestore(aws.ToString(restore))
	return Object{
		Key:          key,
		Size:         size,
		ETag:         aws.ToString(etag),
		LastModified: aws.ToTime(modified),
		StorageClass: string(class),
		Restore:      st,
		Metadata:     meta,
	}
}

// wrapErr classifies an SDK error into an *Error of one kind.
func wrapErr(op, bucket, key string, err error) error {
	e := &Error{Op: op, Bucket: bucket, Key: key, Err: err, Kind: ErrOther}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.Status = re.HTTPStatusCode()
		e.RequestID = re.ServiceRequestID()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		e.Code = ae.ErrorCode()
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var nsb *types.NoSuchBucket
	var ios *types.InvalidObjectState
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The caller's context ended: keep the context error visible.
		e.Kind = ErrOther
		return errors.Join(ctxErr(err), e)
	case errors.As(err, &ios) || e.Code == "InvalidObjectState":
		e.Kind = ErrInvalidObjectState
	case e.Code == "RestoreAlreadyInProgress":
		// Not a typed SDK error: a 409 with this code.
		e.Kind = ErrRestoreInProgress
	case credentialCodes[e.Code]:
		// Checked before the status: versitygw answers an unknown key with
		// 404 XAdminUserNotFound.
		e.Kind = ErrAccessDenied
	case e.Status == http.StatusNotImplemented || e.Code == "NotImplemented" ||
		(e.Status == http.StatusBadRequest && ae != nil && strings.Contains(strings.ToLower(ae.ErrorMessage()), "if-none-match")):
		// A server without conditional writes: 501 NotImplemented (AWS's
		// answer to a header it does not implement), or a 400 that names
		// the header.
		e.Kind = ErrNotImplemented
	case e.Code == "ConditionalRequestConflict" || e.Code == "EntityTooLarge" || e.Code == "EntityTooSmall":
		// Request errors the caller tells apart by code: a 409 for a
		// conditional write that raced another (retried, see
		// retryableCodes, so seen here only when retries ran out), and a
		// 400 for an object or part of a size S3 refuses.
		e.Kind = ErrOther
	case errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsb) || e.Status == http.StatusNotFound:
		e.Kind = ErrNotFound
	case e.Status == http.StatusPreconditionFailed || e.Code == "PreconditionFailed":
		e.Kind = ErrPreconditionFailed
	case e.Status == http.StatusRequestedRangeNotSatisfiable || e.Code == "InvalidRange":
		e.Kind = ErrInvalidRange
	case e.Status == http.StatusForbidden || e.Status == http.StatusUnauthorized:
		e.Kind = ErrAccessDenied
	case e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable || e.Code == "SlowDown":
		e.Kind = ErrThrottled
	case e.Status == 0 && isNetErr(err):
		e.Kind = ErrUnreachable
	}
	return e
}

func ctxErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return context.Canceled
	}
	return context.DeadlineExceeded
}

func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.As(err, &dnsErr)
}
