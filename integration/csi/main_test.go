// Package csitest tests the CSI driver end to end: the real bucketfs
// binary serving `bucketfs csi` on a unix socket, with the process mounter,
// making real FUSE mounts of a real S3 server (versitygw on 127.0.0.1).
// It is its own test binary because csi-sanity's Ginkgo suite may run only
// once per binary.
package csitest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bucketfs/bucketfs/integration/harness"
)

var (
	bin      string     // the bucketfs binary under test
	endpoint string     // versitygw's URL
	client   *s3.Client // SDK client for seeding and checking
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ok, why := harness.FUSEAvailable()
	switch v, msg := harness.SuiteVerdict(ok, why, os.Geteuid() == 0, harness.InCI()); v {
	case harness.Fail:
		fmt.Fprintln(os.Stderr, msg)
		return 1
	case harness.Skip:
		fmt.Fprintln(os.Stderr, msg)
		return 0
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "SKIP: the CSI driver mounts as root")
		return 0
	}
	tmp, err := os.MkdirTemp("", "bucketfs-csi-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if bin, err = harness.BuildBinary(tmp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err := harness.StartServer(filepath.Join(tmp, "s3data"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Stop()
	endpoint = srv.Endpoint
	client = harness.Client(endpoint)
	return m.Run()
}

// secrets are the Kubernetes secret of every test volume: the local
// server's keys, as a Secret's data names them.
func secrets() map[string]string {
	return map[string]string{"accessKeyID": harness.AccessKey, "secretAccessKey": harness.SecretKey}
}

// newBucket creates a bucket with a name unique to the test.
func newBucket(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("csi-%d", time.Now().UnixNano())
	if err := harness.CreateBucket(context.Background(), client, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// keys lists every key of bucket.
func keys(t *testing.T, bucket string) []string {
	t.Helper()
	var out []string
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			out = append(out, aws.ToString(o.Key))
		}
	}
	return out
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether process pid exists (and is no zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// statfsErr is the error of statfs(2) on path: ENOTCONN at once for a
// dead FUSE mount (a stat may be answered from the kernel's attribute
// cache for minutes).
func statfsErr(path string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return nil
}

var errNotConnected = syscall.ENOTCONN

func isNotConnected(err error) bool { return errors.Is(err, errNotConnected) }
