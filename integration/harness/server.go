// Package harness runs the pieces of bucketfs's end-to-end tests, benchmarks
// and demo: a real S3 server (versitygw with its posix backend) on
// 127.0.0.1, the bucketfs binary built from this module, and real FUSE
// mounts of it.
package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersitygwVersion is the S3 server version the tests run against.
const VersitygwVersion = "v1.8.0"

// Test credentials of the local server's root account.
const (
	AccessKey = "bucketfs-test-access"
	SecretKey = "bucketfs-test-secret-key"
)

// ToolsDir is where versitygw is installed when missing: a per-user cache
// that outlives clean clones, so a machine installs it once.
func ToolsDir() string {
	if d := os.Getenv("BUCKETFS_TOOLS_DIR"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "bucketfs", "bin")
}

// Versitygw returns the path of a versitygw binary, installing it with
// `go install` into ToolsDir when it is neither there nor on PATH.
func Versitygw() (string, error) {
	cached := filepath.Join(ToolsDir(), "versitygw")
	if _, err := os.Stat(cached); err == nil {
		return cached, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(ToolsDir(), 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "installing versitygw %s into %s (once per machine)...\n", VersitygwVersion, ToolsDir())
	cmd := exec.Command("go", "install", "github.com/versity/versitygw/cmd/versitygw@"+VersitygwVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+ToolsDir())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("installing versitygw: %v", err)
	}
	return cached, nil
}

// Server is a running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	DataDir  string
	cmd      *exec.Cmd
	logFile  *os.File
}

// StartServer starts versitygw on a free loopback port, storing objects in
// dataDir, and waits until it accepts connections.
func StartServer(dataDir string) (*Server, error) {
	bin, err := Versitygw()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", addr, "--access", AccessKey, "--secret", SecretKey,
		"--quiet", "--keep-alive", "posix", dataDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting versitygw: %v", err)
	}
	s := &Server{Endpoint: "http://" + addr, DataDir: dataDir, cmd: cmd, logFile: logFile}
	if err := waitListening(addr, 10*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("versitygw did not start (log in %s): %v", logFile.Name(), err)
	}
	return s, nil
}

// Stop kills the server.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
	s.logFile.Close()
}

// Env returns the environment a bucketfs process needs to reach endpoint.
func Env(endpoint string) []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+AccessKey,
		"AWS_SECRET_ACCESS_KEY="+SecretKey,
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	)
}

// Client returns an SDK client for endpoint with the test credentials.
func Client(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		// versitygw does not need the SDK's default request checksums.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Put uploads data as bucket/key.
func Put(ctx context.Context, c *s3.Client, bucket, key string, data []byte) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(string(data))})
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// CreateBucket creates a bucket.
func CreateBucket(ctx context.Context, c *s3.Client, bucket string) error {
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

// FreeAddr returns a free 127.0.0.1:PORT.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
