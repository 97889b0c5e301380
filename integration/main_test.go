// Package integration tests bucketfs end to end: the real binary, real FUSE
// mounts, and a real S3 server (versitygw, posix backend) on 127.0.0.1.
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bucketfs/bucketfs/integration/harness"
)

var (
	bin      string     // the bucketfs binary under test
	endpoint string     // versitygw's URL
	client   *s3.Client // SDK client for seeding
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
	tmp, err := os.MkdirTemp("", "bucketfs-it-")
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
	code := m.Run()
	if err := uploadsLeft(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = max(code, 1)
	}
	return code
}

// uploadsLeft fails when a bucket of the server holds multipart uploads
// that were neither completed nor aborted once every test is done: a
// failed or interrupted upload must not leave its parts behind (stores
// bill for them).
func uploadsLeft() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return fmt.Errorf("list buckets: %w", err)
	}
	var left []string
	for _, b := range out.Buckets {
		keys, err := openUploads(ctx, aws.ToString(b.Name))
		if err != nil {
			return err
		}
		for _, k := range keys {
			left = append(left, aws.ToString(b.Name)+"/"+k)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("multipart uploads left open after the suite: %v", left)
	}
	return nil
}

// mountArgs are the flags every test mount needs to reach the local server.
func mountArgs(extra ...string) []string {
	return append([]string{"--endpoint", endpoint, "--path-style", "--log-level", "debug"}, extra...)
}

// mount mounts bucketfs with args (the last positional BUCKET[/PREFIX] among
// them, if any) on a fresh directory and unmounts it when the test ends,
// checking for a clean exit.
func mount(t *testing.T, args ...string) *harness.Mount {
	t.Helper()
	dir := t.TempDir()
	m, err := harness.StartMount(bin, harness.Env(endpoint), dir, mountArgs(args...)...)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("bucketfs did not exit cleanly: %v\n%s", err, m.Log())
		}
		if ok, _ := harness.IsMounted(dir); ok {
			t.Errorf("%s still mounted after bucketfs exited", dir)
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("bucketfs log:\n%s", m.Log())
		}
	})
	return m
}

// newBucket creates a bucket with a name unique to the test and fills it.
func newBucket(t *testing.T, objects map[string][]byte) string {
	t.Helper()
	name := fmt.Sprintf("it-%d", time.Now().UnixNano())
	ctx := context.Background()
	if err := harness.CreateBucket(ctx, client, name); err != nil {
		t.Fatal(err)
	}
	putAll(t, name, objects)
	return name
}

// putAll uploads objects in parallel.
func putAll(t *testing.T, bucket string, objects map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(objects))
	for k, v := range objects {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- harness.Put(ctx, client, bucket, k, v)
		}()
	}
	for range objects {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
