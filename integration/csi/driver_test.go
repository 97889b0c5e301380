package csitest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// driver is a `bucketfs csi` process.
type driver struct {
	Sock     string // the CSI socket
	StateDir string
	cmd      *exec.Cmd
	out      *syncBuffer
	done     chan struct{}
}

// driverEnv is the driver's environment: no AWS credentials, no AWS files
// and no instance metadata service, so that the secrets of the requests
// are the only way to the store (and nothing leaves 127.0.0.0/8).
func driverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
}

// startDriver runs `bucketfs csi` with the process mounter on sock and
// stateDir, and waits until it answers Probe. The test's end stops it and
// clears every mount left under stateDir's volumes.
func startDriver(t *testing.T, sock, stateDir string) *driver {
	t.Helper()
	d := &driver{Sock: sock, StateDir: stateDir, out: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "csi", "--endpoint", "unix://"+sock, "--node-id", "test-node",
		"--state-dir", stateDir, "--mounter", "process", "--log-level", "debug")
	d.cmd.Env = driverEnv()
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("driver log:\n%s", d.out.String())
		}
	})
	conn := dial(t, sock)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := csipb.NewIdentityClient(conn).Probe(ctx, &csipb.ProbeRequest{})
		cancel()
		if err == nil {
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("the driver exited: %s", d.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the driver does not answer: %v\n%s", err, d.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 kills the driver with SIGKILL, as an OOM kill or a node agent
// would, and waits for it to be gone.
func (d *driver) kill9(t *testing.T) {
	t.Helper()
	d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the driver survived SIGKILL")
	}
}

// stop ends the driver with SIGTERM (SIGKILL after 10 s).
func (d *driver) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// dial connects to a CSI socket.
func dial(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// published is a state file of the driver, as the tests read it.
type published struct {
	VolumeID string `json:"volumeID"`
	Target   string `json:"target"`
	PID      int    `json:"pid"`
	LogFile  string `json:"logFile"`
}

// states reads the driver's state files.
func states(t *testing.T, stateDir string) []published {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(stateDir, "volumes", "*.json"))
	var out []published
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var p published
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, p)
	}
	return out
}

// stateOf returns the state of target.
func stateOf(t *testing.T, stateDir, target string) published {
	t.Helper()
	for _, p := range states(t, stateDir) {
		if p.Target == target {
			return p
		}
	}
	t.Fatalf("no state for %s", target)
	return published{}
}

// clearMounts detaches every mount under dir and kills the daemons the
// driver's state names: a test that failed halfway leaves nothing behind.
func clearMounts(t *testing.T, stateDir, dir string) {
	for _, p := range states(t, stateDir) {
		if p.PID > 0 && alive(p.PID) {
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	out, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
}

// daemonLog returns the log of target's daemon, for failure messages.
func daemonLog(t *testing.T, stateDir, target string) string {
	for _, p := range states(t, stateDir) {
		if p.Target == target && p.LogFile != "" {
			b, _ := os.ReadFile(p.LogFile)
			return string(b)
		}
	}
	return ""
}

func mountCap(mode csipb.VolumeCapability_AccessMode_Mode) *csipb.VolumeCapability {
	return &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode},
	}
}

// volumeParams are the StorageClass parameters of a volume in bucket.
func volumeParams(bucket string) map[string]string {
	return map[string]string{"bucket": bucket, "endpoint": endpoint, "region": "us-east-1", "pathStyle": "true"}
}
