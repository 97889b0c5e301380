package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// allKinds is every error kind a Store error may wrap.
var allKinds = []error{
	ErrNotFound, ErrAccessDenied, ErrPreconditionFailed, ErrInvalidObjectState,
	ErrInvalidRange, ErrBadResponse, ErrThrottled, ErrNotImplemented, ErrUnreachable, ErrOther,
}

// sdkResponseErr builds the error chain aws-sdk-go-v2 returns when the server
// answered with status and the body decoded into apiErr: an operation error
// around an HTTP response error carrying the request id.
func sdkResponseErr(op string, status int, requestID string, apiErr error) error {
	return &smithy.OperationError{
		ServiceID:     "S3",
		OperationName: op,
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      apiErr,
			},
			RequestID: requestID,
		},
	}
}

// sdkSendErr builds the chain the SDK returns when no response came: the
// retryer gave up on a request that could not be sent because of cause.
func sdkSendErr(op string, cause error) error {
	return &smithy.OperationError{
		ServiceID:     "S3",
		OperationName: op,
		Err: &retry.MaxAttemptsError{
			Attempt: 3,
			Err: &awshttp.ResponseError{
				ResponseError: &smithyhttp.ResponseError{
					Response: &smithyhttp.Response{Response: &http.Response{}},
					Err: &smithyhttp.RequestSendError{
						Err: &url.Error{Op: "Get", URL: "http://127.0.0.1:1/b", Err: cause},
					},
				},
			},
		},
	}
}

func generic(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: code + " message"}
}

// TestWrapErr classifies synthetic SDK errors, built the way aws-sdk-go-v2
// builds them, into exactly one error kind, and checks the status, code and
// request id copied from the response and that the cause stays reachable.
func TestWrapErr(t *testing.T) {
	dialRefused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name       string
		err        error
		wantKind   error
		wantStatus int
		wantCode   string
		wantReqID  string
		wantCtx    error // context error that must stay visible, if any
	}{
		{name: "GET 404 NoSuchKey", err: sdkResponseErr("GetObject", 404, "req-1", &types.NoSuchKey{Message: aws.String("gone")}),
			wantKind: ErrNotFound, wantStatus: 404, wantCode: "NoSuchKey", wantReqID: "req-1"},
		{name: "HEAD 404 NotFound", err: sdkResponseErr("HeadObject", 404, "req-2", &types.NotFound{}),
			wantKind: ErrNotFound, wantStatus: 404, wantCode: "NotFound", wantReqID: "req-2"},
		{name: "LIST 404 NoSuchBucket", err: sdkResponseErr("ListObjectsV2", 404, "", &types.NoSuchBucket{}),
			wantKind: ErrNotFound, wantStatus: 404, wantCode: "NoSuchBucket"},
		{name: "404 with an unknown code", err: sdkResponseErr("GetObject", 404, "", generic("NoSuchThing")),
			wantKind: ErrNotFound, wantStatus: 404, wantCode: "NoSuchThing"},
		{name: "403 AccessDenied", err: sdkResponseErr("GetObject", 403, "req-3", generic("AccessDenied")),
			wantKind: ErrAccessDenied, wantStatus: 403, wantCode: "AccessDenied", wantReqID: "req-3"},
		{name: "403 InvalidAccessKeyId", err: sdkResponseErr("ListBuckets", 403, "", generic("InvalidAccessKeyId")),
			wantKind: ErrAccessDenied, wantStatus: 403, wantCode: "InvalidAccessKeyId"},
		{name: "401 without a body", err: sdkResponseErr("HeadObject", 401, "", generic("")),
			wantKind: ErrAccessDenied, wantStatus: 401},
		{name: "403 InvalidObjectState is archived, not denied", err: sdkResponseErr("GetObject", 403, "", generic("InvalidObjectState")),
			wantKind: ErrInvalidObjectState, wantStatus: 403, wantCode: "InvalidObjectState"},
		{name: "typed InvalidObjectState", err: sdkResponseErr("GetObject", 403, "", &types.InvalidObjectState{StorageClass: types.StorageClassGlacier}),
			wantKind: ErrInvalidObjectState, wantStatus: 403, wantCode: "InvalidObjectState"},
		{name: "412 PreconditionFailed", err: sdkResponseErr("GetObject", 412, "", generic("PreconditionFailed")),
			wantKind: ErrPreconditionFailed, wantStatus: 412, wantCode: "PreconditionFailed"},
		{name: "412 without a body", err: sdkResponseErr("GetObject", 412, "", generic("")),
			wantKind: ErrPreconditionFailed, wantStatus: 412},
		{name: "501 NotImplemented", err: sdkResponseErr("PutObject", 501, "req-6", generic("NotImplemented")),
			wantKind: ErrNotImplemented, wantStatus: 501, wantCode: "NotImplemented", wantReqID: "req-6"},
		{name: "501 without a body", err: sdkResponseErr("PutObject", 501, "", generic("")),
			wantKind: ErrNotImplemented, wantStatus: 501},
		{name: "400 naming If-None-Match", err: sdkResponseErr("PutObject", 400, "", &smithy.GenericAPIError{Code: "InvalidArgument", Message: "Unsupported header If-None-Match"}),
			wantKind: ErrNotImplemented, wantStatus: 400, wantCode: "InvalidArgument"},
		{name: "400 InvalidArgument about something else", err: sdkResponseErr("PutObject", 400, "", generic("InvalidArgument")),
			wantKind: ErrOther, wantStatus: 400, wantCode: "InvalidArgument"},
		{name: "409 ConditionalRequestConflict", err: sdkResponseErr("CompleteMultipartUpload", 409, "", generic("ConditionalRequestConflict")),
			wantKind: ErrOther, wantStatus: 409, wantCode: "ConditionalRequestConflict"},
		{name: "400 EntityTooLarge", err: sdkResponseErr("PutObject", 400, "", generic("EntityTooLarge")),
			wantKind: ErrOther, wantStatus: 400, wantCode: "EntityTooLarge"},
		{name: "416 InvalidRange", err: sdkResponseErr("GetObject", 416, "", generic("InvalidRange")),
			wantKind: ErrInvalidRange, wantStatus: 416, wantCode: "InvalidRange"},
		{name: "503 SlowDown", err: sdkResponseErr("GetObject", 503, "req-4", generic("SlowDown")),
			wantKind: ErrThrottled, wantStatus: 503, wantCode: "SlowDown", wantReqID: "req-4"},
		{name: "503 ServiceUnavailable", err: sdkResponseErr("ListObjectsV2", 503, "", generic("ServiceUnavailable")),
			wantKind: ErrThrottled, wantStatus: 503, wantCode: "ServiceUnavailable"},
		{name: "429 Too Many Requests", err: sdkResponseErr("GetObject", 429, "", generic("TooManyRequests")),
			wantKind: ErrThrottled, wantStatus: 429, wantCode: "TooManyRequests"},
		{name: "500 InternalError", err: sdkResponseErr("GetObject", 500, "req-5", generic("InternalError")),
			wantKind: ErrOther, wantStatus: 500, wantCode: "InternalError", wantReqID: "req-5"},
		{name: "connection refused", err: sdkSendErr("ListBuckets", dialRefused),
			wantKind: ErrUnreachable},
		{name: "unknown host", err: sdkSendErr("ListBuckets", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "s3.invalid", IsNotFound: true}}),
			wantKind: ErrUnreachable},
		{name: "bare DNS error", err: &smithy.OperationError{Err: &net.DNSError{Err: "no such host", Name: "s3.invalid"}},
			wantKind: ErrUnreachable},
		{name: "cancelled while sending", err: sdkSendErr("GetObject", &aws.RequestCanceledError{Err: context.Canceled}),
			wantKind: ErrOther, wantCtx: context.Canceled},
		{name: "cancelled with a network error in the chain", err: sdkSendErr("GetObject", fmt.Errorf("read: %w", errors.Join(context.Canceled, dialRefused))),
			wantKind: ErrOther, wantCtx: context.Canceled},
		{name: "deadline exceeded", err: sdkSendErr("HeadObject", &aws.RequestCanceledError{Err: context.DeadlineExceeded}),
			wantKind: ErrOther, wantCtx: context.DeadlineExceeded},
		{name: "plain error", err: errors.New("something odd"),
			wantKind: ErrOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := wrapErr("GetObject", "bkt", "some/key", tt.err)
			var matched []error
			for _, k := range allKinds {
				if errors.Is(got, k) {
					matched = append(matched, k)
				}
			}
			if len(matched) != 1 || matched[0] != tt.wantKind {
				t.Fatalf("wrapErr(%v) matches kinds %v, want exactly [%v]", tt.err, matched, tt.wantKind)
			}
			var se *Error
			if !errors.As(got, &se) {
				t.Fatalf("wrapErr returned %T, not holding a *store.Error", got)
			}
			if se.Status != tt.wantStatus || se.Code != tt.wantCode || se.RequestID != tt.wantReqID {
				t.Errorf("status %d code %q request id %q, want %d %q %q", se.Status, se.Code, se.RequestID, tt.wantStatus, tt.wantCode, tt.wantReqID)
			}
			if se.Op != "GetObject" || se.Bucket != "bkt" || se.Key != "some/key" {
				t.Errorf("error names %s %s/%s, want GetObject bkt/some/key", se.Op, se.Bucket, se.Key)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("the SDK error is not reachable with errors.Is from %v", got)
			}
			for _, c := range []error{context.Canceled, context.DeadlineExceeded} {
				if want := c == tt.wantCtx; errors.Is(got, c) != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", c, !want, want)
				}
			}
			if ErrorCode(got) != tt.wantCode {
				t.Errorf("ErrorCode = %q, want %q", ErrorCode(got), tt.wantCode)
			}
		})
	}
}

// TestWrapErrKeepsTypedErrors checks that callers can still reach the SDK's
// typed error through the wrapper.
func TestWrapErrKeepsTypedErrors(t *testing.T) {
	got := wrapErr("GetObject", "b", "k", sdkResponseErr("GetObject", 404, "", &types.NoSuchKey{}))
	var nsk *types.NoSuchKey
	if !errors.As(got, &nsk) {
		t.Errorf("errors.As(*types.NoSuchKey) failed on %v", got)
	}
	var re *awshttp.ResponseError
	if !errors.As(got, &re) || re.HTTPStatusCode() != 404 {
		t.Errorf("errors.As(*awshttp.ResponseError) failed on %v", got)
	}
}

// TestErrorMessage checks the text of *Error: operation, bucket and key, the
// kind, the S3 code and request id when known, and the cause only when there
// is no code to say it better.
func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{name: "code and request id",
			err:  &Error{Op: "GetObject", Bucket: "b", Key: "k/x", Code: "NoSuchKey", RequestID: "R1", Kind: ErrNotFound, Err: errors.New("sdk text")},
			want: "GetObject b/k/x: not found (NoSuchKey) request-id=R1"},
		{name: "cause without a code",
			err:  &Error{Op: "ListBuckets", Kind: ErrUnreachable, Err: errors.New("dial tcp: connection refused")},
			want: "ListBuckets: endpoint unreachable: dial tcp: connection refused"},
		{name: "bucket without key",
			err:  &Error{Op: "ListObjectsV2", Bucket: "b", Code: "AccessDenied", Kind: ErrAccessDenied},
			want: "ListObjectsV2 b: access denied (AccessDenied)"},
		{name: "kind only",
			err:  &Error{Op: "HeadObject", Bucket: "b", Key: "k", Kind: ErrNotFound},
			want: "HeadObject b/k: not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestErrorCode checks that ErrorCode finds the code through wrapping and is
// empty for errors that are not store errors.
func TestErrorCode(t *testing.T) {
	e := &Error{Op: "GetObject", Code: "SlowDown", Kind: ErrThrottled}
	if got := ErrorCode(fmt.Errorf("reading: %w", e)); got != "SlowDown" {
		t.Errorf("ErrorCode of a wrapped error = %q, want SlowDown", got)
	}
	if got := ErrorCode(errors.New("x")); got != "" {
		t.Errorf("ErrorCode of a plain error = %q, want empty", got)
	}
	if got := ErrorCode(nil); got != "" {
		t.Errorf("ErrorCode(nil) = %q, want empty", got)
	}
}

// TestParseContentRange reads "bytes S-E/T" and refuses every other form:
// the 416 form, an unknown total, ranges out of order or past the total.
func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in      string
		s, e, t int64
		wantErr bool
	}{
		{in: "bytes 0-99/1234", s: 0, e: 99, t: 1234},
		{in: "bytes 100-199/200", s: 100, e: 199, t: 200},
		{in: "bytes 0-0/1", s: 0, e: 0, t: 1},
		{in: "bytes 1099511627776-1099512676351/5497558138880", s: 1 << 40, e: 1<<40 + 1<<20 - 1, t: 5497558138880},
		{in: "bytes */5000", wantErr: true},
		{in: "bytes 0-99/*", wantErr: true},
		{in: "bytes 0-99/", wantErr: true},
		{in: "bytes 0-99", wantErr: true},
		{in: "", wantErr: true},
		{in: "bytes 0-99/12x", wantErr: true},
		{in: "bytes 10-9/100", wantErr: true},
		{in: "bytes 0-100/100", wantErr: true},
		{in: "bytes -1-5/100", wantErr: true},
		{in: "items 0-9/100", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, e, total, err := parseContentRange(tt.in)
			if (err != nil) != tt.wantErr || (err == nil && (s != tt.s || e != tt.e || total != tt.t)) {
				t.Errorf("parseContentRange(%q) = %d, %d, %d, %v; want %d, %d, %d, error %v", tt.in, s, e, total, err, tt.s, tt.e, tt.t, tt.wantErr)
			}
		})
	}
}

// TestHTTPRange renders Range headers: none for a whole-object read, an
// open range for "to the end", and inclusive ends otherwise.
func TestHTTPRange(t *testing.T) {
	tests := []struct {
		off, length int64
		want        string
	}{
		{off: 0, length: -1, want: ""},
		{off: 5, length: -1, want: "bytes=5-"},
		{off: 0, length: 1, want: "bytes=0-0"},
		{off: 0, length: 100, want: "bytes=0-99"},
		{off: 100, length: 50, want: "bytes=100-149"},
		{off: 1 << 40, length: 1 << 20, want: "bytes=1099511627776-1099512676351"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d+%d", tt.off, tt.length), func(t *testing.T) {
			if got := httpRange(tt.off, tt.length); got != tt.want {
				t.Errorf("httpRange(%d, %d) = %q, want %q", tt.off, tt.length, got, tt.want)
			}
		})
	}
}

// TestCredentialsRejected checks which error codes mean the server refused
// the credentials themselves, as opposed to a missing permission.
func TestCredentialsRejected(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{err: &Error{Code: "InvalidAccessKeyId", Kind: ErrAccessDenied}, want: true},
		{err: &Error{Code: "SignatureDoesNotMatch", Kind: ErrAccessDenied}, want: true},
		{err: fmt.Errorf("wrapped: %w", &Error{Code: "ExpiredToken", Kind: ErrOther}), want: true},
		{err: &Error{Code: "AccessDenied", Kind: ErrAccessDenied}, want: false},
		{err: &Error{Status: 403, Kind: ErrAccessDenied}, want: false},
		{err: errors.New("InvalidAccessKeyId"), want: false},
	}
	for _, tt := range tests {
		if got := CredentialsRejected(tt.err); got != tt.want {
			t.Errorf("CredentialsRejected(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestRetryWaits: the retryer bucketfs builds retries refused connections,
// 503s and 409 ConditionalRequestConflict (not a 403), and its waits grow from up to 250 ms to the 5 s cap, so the
// default five retries span a few seconds (a server restart), not the
// SDK's own well under a second.
func TestRetryWaits(t *testing.T) {
	var n atomic.Int64
	r := newRetryer(5, &n)
	if got := r.MaxAttempts(); got != 6 {
		t.Errorf("MaxAttempts = %d, want 6", got)
	}
	refused := &smithyhttp.RequestSendError{Err: &url.Error{Op: "Get", URL: "http://127.0.0.1:1/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}}
	if !r.IsErrorRetryable(refused) {
		t.Error("a refused connection is not retried")
	}
	if conflict := sdkResponseErr("PutObject", 409, "", generic("ConditionalRequestConflict")); !r.IsErrorRetryable(conflict) {
		t.Error("a 409 ConditionalRequestConflict is not retried")
	}
	if denied := sdkResponseErr("PutObject", 403, "", generic("AccessDenied")); r.IsErrorRetryable(denied) {
		t.Error("a 403 is retried")
	}
	var total time.Duration
	for attempt := 1; attempt <= 5; attempt++ {
		limit := min(retryBase<<(attempt-1), retryMaxBackoff)
		var most time.Duration
		for range 200 {
			d, err := r.RetryDelay(attempt, refused)
			if err != nil {
				t.Fatal(err)
			}
			if d < 0 || d > limit {
				t.Fatalf("retry %d waited %v, want at most %v", attempt, d, limit)
			}
			most = max(most, d)
		}
		// Full jitter: 200 draws come near the top of the range.
		if most < limit*8/10 {
			t.Errorf("retry %d: longest of 200 waits %v, want near %v", attempt, most, limit)
		}
		total += most
	}
	if total < 6*time.Second {
		t.Errorf("five retries span at most %v; an outage of a few seconds would fail reads", total)
	}
	if got := n.Load(); got != 5*200 {
		t.Errorf("counted %d retries, want %d", got, 5*200)
	}
}

// TestConnsCounted: the client counts its open connections to the store,
// and the count falls when the server closes them.
func TestConnsCounted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"e"`)
		w.Header().Set("Content-Length", "2")
		w.Write([]byte("hi"))
	}))
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	st, err := NewS3(context.Background(), S3Config{Endpoint: srv.URL, PathStyle: true, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.Get(context.Background(), GetInput{Bucket: "b", Key: "k", Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, out.Body)
	out.Body.Close()
	if got := st.Conns.Load(); got != 1 {
		t.Errorf("after one GET: %d connections, want 1", got)
	}
	srv.CloseClientConnections()
	deadline := time.Now().Add(5 * time.Second)
	for st.Conns.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := st.Conns.Load(); got != 0 {
		t.Errorf("after the server closed them: %d connections, want 0", got)
	}
}
