package csi

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessMounter mounts with bucketfs's mount helper: `EXE SOURCE TARGET
// -o OPTIONS` starts the daemon in its own session and exits once the
// mount is up (or with the daemon's error). See Mounter for when to use it.
type ProcessMounter struct {
	// Exe is the bucketfs binary (the driver's own).
	Exe string
	// Env is the environment the daemons start from (the driver's).
	Env []string
}

var _ Mounter = (*ProcessMounter)(nil)

// Name implements Mounter.
func (p *ProcessMounter) Name() string { return "process" }

// keptAWSVars are the AWS_ variables a daemon with its own credentials
// file keeps: none of them chooses credentials.
var keptAWSVars = map[string]bool{"AWS_CA_BUNDLE": true, "AWS_EC2_METADATA_DISABLED": true}

// daemonEnv is the environment of a daemon: the driver's, without what
// would tie the daemon to the driver (systemd's notify socket, the
// helper's ready descriptor) and, when the volume has a credentials file,
// without the AWS variables that would win over it.
func daemonEnv(base []string, ownCredentials bool) []string {
	var env []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "NOTIFY_SOCKET" || k == "BUCKETFS_READY_FD":
		case ownCredentials && strings.HasPrefix(k, "AWS_") && !keptAWSVars[k]:
		default:
			env = append(env, kv)
		}
	}
	return env
}

// Mount implements Mounter.
func (p *ProcessMounter) Mount(ctx context.Context, r MountRequest) (Mounted, error) {
	opts := append([]string(nil), r.Options...)
	if r.CredentialsFile != "" {
		opts = append(opts, "credentials_file="+r.CredentialsFile, "config_file="+os.DevNull)
	}
	if r.LogFile != "" {
		opts = append(opts, "log_file="+r.LogFile)
	}
	for _, o := range opts {
		if strings.Contains(o, ",") {
			return Mounted{}, fmt.Errorf("mount option %q holds a comma", o)
		}
	}
	// The helper's output goes to a file, not a pipe: the daemon inherits
	// it until it has mounted, and a pipe would keep Wait waiting.
	out, err := os.CreateTemp("", "bucketfs-csi-mount-*.log")
	if err != nil {
		return Mounted{}, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, p.Exe, r.Source, r.Target, "-o", strings.Join(opts, ","))
	cmd.Env = daemonEnv(p.Env, r.CredentialsFile != "")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if runErr != nil {
		// The daemon may have started before the helper was stopped.
		if pid := findDaemon(r.Target); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		msg, _ := os.ReadFile(out.Name())
		if ctx.Err() != nil {
			return Mounted{}, fmt.Errorf("the mount did not come up in time: %v %s", ctx.Err(), lastLines(msg, 3))
		}
		return Mounted{}, fmt.Errorf("%v: %s", runErr, lastLines(msg, 3))
	}
	return Mounted{PID: findDaemon(r.Target)}, nil
}

// Abandon implements Mounter.
func (p *ProcessMounter) Abandon(m Mounted) {
	if m.PID > 0 {
		syscall.Kill(m.PID, syscall.SIGKILL)
	}
}

// findDaemon returns the pid of the bucketfs daemon serving target (a
// process whose command line is `... mount ... TARGET`), or 0.
func findDaemon(target string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if len(args) < 3 || args[1] != "mount" || args[len(args)-1] != target {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil {
			return pid
		}
	}
	return 0
}

// lastLines returns the last n non-empty lines of b, joined by " / ".
func lastLines(b []byte, n int) string {
	var lines []string
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if l := strings.TrimSpace(string(l)); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}
