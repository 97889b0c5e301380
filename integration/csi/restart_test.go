package csitest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// volumeFixture is a dynamically provisioned volume holding one file,
// published at a target, with the driver that published it.
type volumeFixture struct {
	dir, stateDir, sock, target string
	bucket, volumeID            string
	volCtx                      map[string]string
	drv                         *driver
}

const trackName, trackBody = "set/track.mp3", "ID3 a recording of the evening set"

// publishVolume starts a driver, creates a volume (CreateVolume on the
// driver's controller), puts a file into it through S3 and publishes it
// (NodePublishVolume) at a target of its own. The whole test is bounded
// by ctx.
func publishVolume(t *testing.T, ctx context.Context) *volumeFixture {
	t.Helper()
	f := &volumeFixture{dir: t.TempDir()}
	f.stateDir = filepath.Join(f.dir, "state")
	f.sock = filepath.Join(f.dir, "csi.sock")
	f.target = filepath.Join(f.dir, "pods", "p1", "volumes", "mount")
	t.Cleanup(func() { clearMounts(t, f.stateDir, f.dir) })
	f.bucket = newBucket(t)
	f.drv = startDriver(t, f.sock, f.stateDir)
	conn := dial(t, f.sock)
	vol, err := csipb.NewControllerClient(conn).CreateVolume(ctx, &csipb.CreateVolumeRequest{
		Name:               "pvc-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")),
		VolumeCapabilities: []*csipb.VolumeCapability{mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
		Parameters:         volumeParams(f.bucket),
		Secrets:            secrets(),
	})
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	f.volumeID, f.volCtx = vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()
	if err := harness.Put(ctx, client, f.bucket, f.volCtx["prefix"]+trackName, []byte(trackBody)); err != nil {
		t.Fatal(err)
	}
	f.publish(t, ctx)
	f.mustRead(t, "through the new mount")
	return f
}

// node is a Node client on the fixture's socket.
func (f *volumeFixture) node(t *testing.T) csipb.NodeClient {
	return csipb.NewNodeClient(dial(t, f.sock))
}

func (f *volumeFixture) publish(t *testing.T, ctx context.Context) {
	t.Helper()
	_, err := f.node(t).NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{
		VolumeId:         f.volumeID,
		TargetPath:       f.target,
		VolumeCapability: mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER),
		VolumeContext:    f.volCtx,
		Secrets:          secrets(),
	})
	if err != nil {
		t.Fatalf("NodePublishVolume: %v\ndaemon log:\n%s", err, daemonLog(t, f.stateDir, f.target))
	}
}

// mustRead reads the file through the mount, opening it anew.
func (f *volumeFixture) mustRead(t *testing.T, when string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(f.target, trackName))
	if err != nil || string(got) != trackBody {
		t.Fatalf("read %s: %q %v", when, got, err)
	}
}

func (f *volumeFixture) stats(t *testing.T, ctx context.Context) *csipb.VolumeCondition {
	t.Helper()
	st, err := f.node(t).NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: f.volumeID, VolumePath: f.target})
	if err != nil {
		t.Fatalf("NodeGetVolumeStats: %v", err)
	}
	return st.GetVolumeCondition()
}

// unpublishAndDelete unpublishes and deletes the volume and checks that
// nothing is left: no mount, no target, no daemon, no state, no object.
func (f *volumeFixture) unpublishAndDelete(t *testing.T, ctx context.Context) {
	t.Helper()
	pid := stateOf(t, f.stateDir, f.target).PID
	// Aborted (the driver is busy with the target) is retried, as the
	// kubelet does.
	for {
		_, err := f.node(t).NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: f.volumeID, TargetPath: f.target})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Aborted || ctx.Err() != nil {
			t.Fatalf("NodeUnpublishVolume: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ok, _ := harness.IsMounted(f.target); ok {
		t.Error("still mounted after NodeUnpublishVolume")
	}
	if _, err := os.Stat(f.target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target still there: %v", err)
	}
	waitFor(t, 15*time.Second, "the daemon to exit after the unmount", func() bool { return !alive(pid) })
	if s := states(t, f.stateDir); len(s) > 0 {
		t.Errorf("state left: %+v", s)
	}
	if secrets, _ := os.ReadDir(filepath.Join(f.stateDir, "secrets")); len(secrets) > 0 {
		t.Errorf("credentials files left: %v", secrets)
	}
	if _, err := csipb.NewControllerClient(dial(t, f.sock)).DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: f.volumeID, Secrets: secrets()}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	if left := keys(t, f.bucket); len(left) > 0 {
		t.Errorf("objects left after DeleteVolume: %v", left)
	}
}

// TestDriverRestart: the mounts outlive the driver. A volume is published
// and a file read through it; the driver is killed with SIGKILL; the file
// still reads (opened anew) and the daemon runs on; a new driver process
// on the same state directory and socket finds the mount serving and
// unpublishes it.
func TestDriverRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := publishVolume(t, ctx)
	daemon := stateOf(t, f.stateDir, f.target).PID
	if !alive(daemon) {
		t.Fatalf("the state names daemon %d, which is not running", daemon)
	}
	if ppid := parentOf(daemon); ppid == f.drv.cmd.Process.Pid {
		t.Errorf("the daemon is the driver's child")
	}

	f.drv.kill9(t)
	f.mustRead(t, "after the driver was killed")
	if !alive(daemon) {
		t.Fatal("the daemon died with the driver")
	}

	f.drv = startDriver(t, f.sock, f.stateDir)
	waitFor(t, 10*time.Second, "the new driver to look at the mount", func() bool {
		return strings.Contains(f.drv.out.String(), "mount still serving")
	})
	if c := f.stats(t, ctx); c.GetAbnormal() {
		t.Errorf("condition after the restart: %v", c)
	}
	f.mustRead(t, "after the driver restarted")
	if got := stateOf(t, f.stateDir, f.target).PID; got != daemon {
		t.Errorf("daemon %d after the restart, want the same %d", got, daemon)
	}
	f.unpublishAndDelete(t, ctx)
}

// TestDeadMountRecovery: a daemon killed with SIGKILL (an OOM kill) leaves
// a dead mount (ENOTCONN) that NodeGetVolumeStats reports abnormal; the
// next NodePublishVolume detaches it and mounts again; and when a daemon
// dies while the driver is down, the driver's start does the same without
// being asked.
func TestDeadMountRecovery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := publishVolume(t, ctx)

	killDaemon := func() {
		t.Helper()
		pid := stateOf(t, f.stateDir, f.target).PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill daemon %d: %v", pid, err)
		}
		waitFor(t, 10*time.Second, "the mount to be dead", func() bool { return isNotConnected(statfsErr(f.target)) })
	}
	killDaemon()
	if c := f.stats(t, ctx); !c.GetAbnormal() || !strings.Contains(c.GetMessage(), "not connected") {
		t.Errorf("condition of a dead mount: %v", c)
	}
	f.publish(t, ctx)
	f.mustRead(t, "after NodePublishVolume replaced the dead mount")
	if c := f.stats(t, ctx); c.GetAbnormal() {
		t.Errorf("condition after the remount: %v", c)
	}
	if n := mountsAt(f.target); n != 1 {
		t.Errorf("%d mounts stacked at the target, want 1", n)
	}

	// The daemon dies while the driver is away.
	f.drv.kill9(t)
	killDaemon()
	f.drv = startDriver(t, f.sock, f.stateDir)
	waitFor(t, 60*time.Second, "the restarted driver to mount the volume again", func() bool {
		return strings.Contains(f.drv.out.String(), "msg=mounted")
	})
	f.mustRead(t, "after the restarted driver replaced the dead mount")
	if c := f.stats(t, ctx); c.GetAbnormal() {
		t.Errorf("condition after the recovery: %v", c)
	}
	if n := mountsAt(f.target); n != 1 {
		t.Errorf("%d mounts stacked at the target, want 1", n)
	}
	f.unpublishAndDelete(t, ctx)
}

// TestPublishFailure: a volume whose bucket does not exist fails
// NodePublishVolume with the daemon's reason, and leaves no mount, no
// state and no credentials behind; the same with credentials the store
// rejects.
func TestPublishFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	t.Cleanup(func() { clearMounts(t, stateDir, dir) })
	d := startDriver(t, filepath.Join(dir, "csi.sock"), stateDir)
	bucket := newBucket(t)
	node := csipb.NewNodeClient(dial(t, d.Sock))
	for _, tt := range []struct {
		what    string
		attrs   map[string]string
		secrets map[string]string
		want    string
	}{
		{"missing bucket", volumeParams("no-such-bucket"), secrets(), "not found"},
		{"rejected credentials", volumeParams(bucket), map[string]string{"accessKeyID": "wrong", "secretAccessKey": "wrong"}, "credentials"},
	} {
		target := filepath.Join(dir, "t-"+strings.ReplaceAll(tt.what, " ", "-"))
		_, err := node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{
			VolumeId: "static-" + tt.attrs["bucket"], TargetPath: target, VolumeContext: tt.attrs, Secrets: tt.secrets,
			VolumeCapability: mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER),
		})
		if status.Code(err) != codes.Internal || !strings.Contains(strings.ToLower(err.Error()), tt.want) {
			t.Errorf("%s: %v, want Internal saying %q", tt.what, err, tt.want)
		}
		if ok, _ := harness.IsMounted(target); ok {
			t.Errorf("%s: mounted", tt.what)
		}
	}
	if s := states(t, stateDir); len(s) > 0 {
		t.Errorf("state left: %+v", s)
	}
	if secrets, _ := os.ReadDir(filepath.Join(stateDir, "secrets")); len(secrets) > 0 {
		t.Errorf("credentials files left: %v", secrets)
	}
}

// parentOf returns the parent pid of pid, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// mountsAt counts the mounts at path in the mount table.
func mountsAt(path string) int {
	out, _ := os.ReadFile("/proc/self/mountinfo")
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}
