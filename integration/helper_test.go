package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
)

// helperEnv is the environment mount(8) would give mount.fuse3, with the
// test binary first on PATH as `bucketfs`.
func helperEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(dir, "bucketfs")); err != nil {
		t.Fatal(err)
	}
	return append(harness.Env(endpoint), "PATH="+dir+":/usr/sbin:/usr/bin:/sbin:/bin")
}

// TestMountHelper mounts as `mount -t fuse.bucketfs` and /etc/fstab do:
// mount(8) runs mount.fuse3, which runs `bucketfs SOURCE DIR -o OPTIONS`
// and waits. It returns once the mount is up with the daemon in the
// background; umount ends the daemon.
func TestMountHelper(t *testing.T) {
	const helper = "/sbin/mount.fuse3"
	if _, err := os.Stat(helper); err != nil {
		t.Fatalf("%s missing (Debian package fuse3): %v", helper, err)
	}
	b := newBucket(t, map[string][]byte{"sets/a.mp3": []byte("audio"), "sets/a.txt": []byte("tracks")})
	dir := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "bucketfs.log")
	opts := "rw,_netdev,nofail,noatime,x-systemd.automount,endpoint=" + endpoint + ",path_style,metadata_ttl=1m,log_file=" + logFile
	cmd := exec.Command(helper, b+"/sets", dir, "-t", "fuse.bucketfs", "-o", opts)
	cmd.Env = helperEnv(t)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mount.fuse3: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	if ok, _ := harness.IsMounted(dir); !ok {
		t.Fatalf("not mounted after the helper returned (%v)", time.Since(start))
	}
	if got, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(got) != "tracks" {
		t.Fatalf("read through the helper's mount: %q %v", got, err)
	}
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	waitFor(t, 10*time.Second, "the daemon to log its exit", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "msg=unmounted")
	})
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "msg=mounted") {
		t.Errorf("log file:\n%s", b)
	}

	// A bad option fails the mount with one clear line.
	cmd = exec.Command(helper, b+"/sets", dir, "-t", "fuse.bucketfs", "-o", "endpoint="+endpoint+",path_style,no_such_option")
	cmd.Env = helperEnv(t)
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown flag: --no-such-option") {
		t.Errorf("mount with an unknown option: %v\n%s", err, out)
	}
	if ok, _ := harness.IsMounted(dir); ok {
		t.Error("mounted despite the bad option")
	}
}

// TestSystemdNotify: under systemd (Type=notify, contrib/bucketfs@.service)
// the daemon sends READY=1 once mounted and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := newBucket(t, map[string][]byte{"x": []byte("x")})
	dir := t.TempDir()
	m, err := harness.StartMount(bin, append(harness.Env(endpoint), "NOTIFY_SOCKET="+sock), dir, mountArgs(b)...)
	if err != nil {
		t.Fatal(err)
	}
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("notify socket: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Errorf("first notification %q, want READY=1", got)
	}
	if ok, _ := harness.IsMounted(dir); !ok {
		t.Error("READY=1 before the mount was up")
	}
	m.Signal(syscall.SIGTERM)
	if got := read(); got != "STOPPING=1" {
		t.Errorf("notification on SIGTERM %q, want STOPPING=1", got)
	}
	if err := m.Wait(15 * time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
}
