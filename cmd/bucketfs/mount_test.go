package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// TestCheckMountpoint checks the mountpoint checks made before mounting: a
// usable directory comes back absolute with symlinks resolved; a missing
// path, a regular file and an existing mount are refused with a message
// that says which.
func TestCheckMountpoint(t *testing.T) {
	dir := t.TempDir()
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(realDir, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    string // the path returned on success
		wantErr []string
	}{
		{name: "empty directory", path: dir, want: realDir},
		{name: "trailing slash", path: dir + "/", want: realDir},
		{name: "symlink to a directory", path: link, want: realDir},
		{name: "missing", path: filepath.Join(dir, "nope"), wantErr: []string{"does not exist", filepath.Join(dir, "nope")}},
		{name: "regular file", path: file, wantErr: []string{"not a directory", file}},
		{name: "below a regular file", path: filepath.Join(file, "x"), wantErr: []string{filepath.Join(file, "x")}},
		{name: "relative path is made absolute", path: "surely-missing-dir-xyz", wantErr: []string{"does not exist", "/surely-missing-dir-xyz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkMountpoint(tt.path)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Errorf("checkMountpoint(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkMountpoint(%q) = %q, want an error", tt.path, got)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.wantErr[0] == "does not exist" && !filepath.IsAbs(strings.Fields(err.Error())[1]) {
				t.Errorf("error %q does not name an absolute path", err)
			}
		})
	}
}

// TestCheckMountpointMounted: a directory with a mount on it (a tmpfs
// this test mounts in its own temporary directory) is refused with the
// command that unmounts it. Needs root to mount.
func TestCheckMountpointMounted(t *testing.T) {
	dir := mountTmpfs(t, filepath.Join(t.TempDir(), "mnt"))
	_, err := checkMountpoint(dir)
	if err == nil || !strings.Contains(err.Error(), "already a mount") || !strings.Contains(err.Error(), "umount "+dir) {
		t.Errorf("checkMountpoint on a tmpfs: %v, want already a mount with umount %s", err, dir)
	}
}

// mountTmpfs creates dir if needed, mounts a small tmpfs on it for the test and
// returns dir with symlinks resolved. It skips the test when not root
// (only root may mount) and fails it when root cannot mount.
func mountTmpfs(t *testing.T, dir string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs fixture needs root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a tmpfs as root: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return real
}

// TestCheckMountpointEscaped mounts a tmpfs on a directory whose name holds
// a space, a tab and a backslash, which /proc/self/mountinfo escapes (\040,
// \011, \134), and checks that it is still recognised as a mount. Needs root.
func TestCheckMountpointEscaped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "with space\tand tab\\and backslash")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := checkMountpoint(dir); err != nil {
		t.Fatalf("before mounting: %v", err)
	}
	real := mountTmpfs(t, dir)
	if mounted, err := isMountpoint(real); err != nil || !mounted {
		t.Errorf("isMountpoint(%q) = %v, %v; want true", real, mounted, err)
	}
	if _, err := checkMountpoint(dir); err == nil || !strings.Contains(err.Error(), "already a mount") {
		t.Errorf("checkMountpoint on the tmpfs: %v, want already a mount", err)
	}
	if mounted, err := isMountpoint(filepath.Dir(real)); err != nil || mounted {
		t.Errorf("isMountpoint of the parent = %v, %v; want false", mounted, err)
	}
}

// TestDescribeStoreErr turns failed start-up requests into one sentence each
// and checks that the sentence names the cause: missing bucket, rejected
// credentials, denied access, a timeout, an unreachable endpoint, missing
// credentials, or anything else.
func TestDescribeStoreErr(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	withBucket := &mountOptions{Bucket: "bkt", Endpoint: "http://minio:9000", StartupTimeout: 7 * time.Second}
	allBuckets := &mountOptions{StartupTimeout: 7 * time.Second}
	tests := []struct {
		name string
		err  error
		o    *mountOptions
		want []string
	}{
		{name: "bucket not found", o: withBucket,
			err:  &store.Error{Op: "ListObjectsV2", Bucket: "bkt", Status: 404, Code: "NoSuchBucket", Kind: store.ErrNotFound},
			want: []string{`bucket "bkt" not found at http://minio:9000`}},
		{name: "invalid access key", o: withBucket,
			err:  &store.Error{Op: "ListObjectsV2", Bucket: "bkt", Status: 403, Code: "InvalidAccessKeyId", Kind: store.ErrAccessDenied},
			want: []string{"credentials rejected by http://minio:9000", "InvalidAccessKeyId", "AWS_ACCESS_KEY_ID"}},
		{name: "bad signature", o: allBuckets,
			err:  &store.Error{Op: "ListBuckets", Status: 403, Code: "SignatureDoesNotMatch", Kind: store.ErrAccessDenied},
			want: []string{"credentials rejected by AWS S3", "SignatureDoesNotMatch"}},
		{name: "expired token", o: allBuckets,
			err:  &store.Error{Op: "ListBuckets", Status: 400, Code: "ExpiredToken", Kind: store.ErrOther},
			want: []string{"credentials rejected", "ExpiredToken"}},
		{name: "access denied to a bucket", o: withBucket,
			err:  &store.Error{Op: "ListObjectsV2", Bucket: "bkt", Status: 403, Code: "AccessDenied", Kind: store.ErrAccessDenied},
			want: []string{`access denied to bucket "bkt" by http://minio:9000 (AccessDenied)`}},
		{name: "access denied without a code", o: allBuckets,
			err:  &store.Error{Op: "ListBuckets", Status: 403, Kind: store.ErrAccessDenied},
			want: []string{"access denied to listing buckets by AWS S3 (403)"}},
		{name: "deadline", o: withBucket,
			err:  errors.Join(context.DeadlineExceeded, &store.Error{Op: "ListObjectsV2", Kind: store.ErrOther, Err: context.DeadlineExceeded}),
			want: []string{"endpoint http://minio:9000 unreachable: no answer within 7s"}},
		{name: "connection refused", o: withBucket,
			err:  &store.Error{Op: "ListObjectsV2", Kind: store.ErrUnreachable, Err: fmt.Errorf("operation error S3: ListObjectsV2, request send failed: %w", refused)},
			want: []string{"endpoint http://minio:9000 unreachable: connection refused"}},
		{name: "no credentials", o: allBuckets,
			err: &store.Error{Op: "ListBuckets", Kind: store.ErrOther, Err: errors.New("operation error S3: ListBuckets, get identity: get credentials: " +
				"failed to refresh cached credentials, no EC2 IMDS role found, operation error ec2imds: GetMetadata, access disabled to EC2 IMDS")},
			want: []string{"no AWS credentials found"}},
		{name: "no credentials, metadata service unreachable", o: allBuckets,
			err: &store.Error{Op: "ListBuckets", Kind: store.ErrUnreachable, Err: fmt.Errorf("operation error S3: ListBuckets, get identity: get credentials: "+
				"failed to refresh cached credentials, no EC2 IMDS role found, operation error ec2imds: GetMetadata, request send failed: %w", refused)},
			want: []string{"no AWS credentials found"}},
		{name: "no credentials, older signer wording", o: allBuckets,
			err:  &store.Error{Op: "ListBuckets", Kind: store.ErrOther, Err: errors.New("failed to sign request: failed to retrieve credentials: boom")},
			want: []string{"no AWS credentials found"}},
		{name: "anything else", o: withBucket,
			err:  &store.Error{Op: "ListObjectsV2", Bucket: "bkt", Status: 500, Code: "InternalError", Kind: store.ErrOther},
			want: []string{"checking http://minio:9000", "InternalError"}},
		{name: "missing bucket in all-buckets mode is not a bucket error", o: allBuckets,
			err:  &store.Error{Op: "ListBuckets", Status: 404, Kind: store.ErrNotFound},
			want: []string{"checking AWS S3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeStoreErr(tt.err, tt.o).Error()
			for _, s := range tt.want {
				if !strings.Contains(got, s) {
					t.Errorf("message %q does not contain %q", got, s)
				}
			}
			if strings.Contains(got, "\n") {
				t.Errorf("message %q spans lines", got)
			}
		})
	}
}

// TestEndpointName checks where the endpoint named in messages comes from:
// the flag, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, else AWS.
func TestEndpointName(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	if got := endpointName(&mountOptions{}); got != "AWS S3" {
		t.Errorf("no endpoint: %q", got)
	}
	t.Setenv("AWS_ENDPOINT_URL", "http://generic")
	if got := endpointName(&mountOptions{}); got != "http://generic" {
		t.Errorf("AWS_ENDPOINT_URL: %q", got)
	}
	t.Setenv("AWS_ENDPOINT_URL_S3", "http://s3-specific")
	if got := endpointName(&mountOptions{}); got != "http://s3-specific" {
		t.Errorf("AWS_ENDPOINT_URL_S3: %q", got)
	}
	if got := endpointName(&mountOptions{Endpoint: "http://flag"}); got != "http://flag" {
		t.Errorf("--endpoint: %q", got)
	}
}

// TestCheckStore runs the start-up check against the fake: an existing
// bucket or prefix passes, a missing bucket is named, a store slower than
// the start-up timeout is reported as unreachable within that time.
func TestCheckStore(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	f := store.NewFake()
	f.Seed("bkt", "p/x", []byte("x"))
	f.CreateBucket("empty")
	ctx := context.Background()
	tests := []struct {
		name    string
		o       mountOptions
		latency time.Duration
		wantErr string
	}{
		{name: "bucket", o: mountOptions{Bucket: "bkt"}},
		{name: "empty bucket", o: mountOptions{Bucket: "empty"}},
		{name: "bucket and prefix", o: mountOptions{Bucket: "bkt", Prefix: "p/"}},
		{name: "absent prefix is fine", o: mountOptions{Bucket: "bkt", Prefix: "nothing/"}},
		{name: "all buckets", o: mountOptions{}},
		{name: "missing bucket", o: mountOptions{Bucket: "nope"}, wantErr: `bucket "nope" not found at AWS S3`},
		{name: "slow store", o: mountOptions{Bucket: "bkt"}, latency: time.Minute, wantErr: "unreachable: no answer within 50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.SetLatency(tt.latency)
			defer f.SetLatency(0)
			tt.o.StartupTimeout = 50 * time.Millisecond
			start := time.Now()
			err := checkStore(ctx, f, &tt.o)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("checkStore took %v with a 50ms timeout", d)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("checkStore: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("checkStore: %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestCheckStoreNoCredentials runs the start-up check with the real S3
// client, no credentials anywhere and the EC2 metadata service disabled,
// against a local endpoint: the check must say credentials are missing and
// send nothing to the endpoint.
func TestCheckStoreNoCredentials(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	dir := t.TempDir()
	for _, kv := range [][2]string{
		{"AWS_ACCESS_KEY_ID", ""}, {"AWS_SECRET_ACCESS_KEY", ""}, {"AWS_SESSION_TOKEN", ""},
		{"AWS_PROFILE", ""}, {"AWS_DEFAULT_PROFILE", ""},
		{"AWS_CONFIG_FILE", filepath.Join(dir, "config")}, {"AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials")},
		{"AWS_EC2_METADATA_DISABLED", "true"},
		{"AWS_CONTAINER_CREDENTIALS_FULL_URI", ""}, {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""},
		{"AWS_WEB_IDENTITY_TOKEN_FILE", ""}, {"AWS_ROLE_ARN", ""},
		{"AWS_ENDPOINT_URL_S3", ""}, {"AWS_ENDPOINT_URL", ""},
	} {
		t.Setenv(kv[0], kv[1])
	}
	ctx := context.Background()
	st, err := store.NewS3(ctx, store.S3Config{Endpoint: srv.URL, Region: "us-east-1", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	o := &mountOptions{Bucket: "bkt", Endpoint: srv.URL, StartupTimeout: 5 * time.Second}
	err = checkStore(ctx, st, o)
	if err == nil || !strings.Contains(err.Error(), "no AWS credentials found") {
		t.Errorf("checkStore without credentials: %v, want a message saying no credentials were found", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the endpoint got %d requests, want none", n)
	}
}

// TestRootCause checks that the innermost cause is found through store
// errors, joined errors and wrapping.
func TestRootCause(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "plain", err: errors.New("boom"), want: "boom"},
		{name: "wrapped", err: fmt.Errorf("a: %w", fmt.Errorf("b: %w", errors.New("root"))), want: "root"},
		{name: "store error", err: &store.Error{Op: "GetObject", Kind: store.ErrUnreachable, Err: fmt.Errorf("send: %w", refused)}, want: "connection refused"},
		{name: "wrapped store error", err: fmt.Errorf("check: %w", &store.Error{Op: "GetObject", Kind: store.ErrUnreachable, Err: refused}), want: "connection refused"},
		{name: "store error without cause", err: &store.Error{Op: "GetObject", Kind: store.ErrOther}, want: "GetObject: request failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rootCause(tt.err); got != tt.want {
				t.Errorf("rootCause = %q, want %q", got, tt.want)
			}
		})
	}
}
