//go:build compare

package compare

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// lockedBuffer is a bytes.Buffer for a process's output, safe to read while
// the process writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep the head: it says why a mount failed
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mounted is a running mount of any tool.
type mounted struct {
	dir  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error  // the exit status, once done is closed
	conn string // the FUSE connection id, to abort a stuck mount
}

// startMount runs exe with args and env (added to harness.Env's) and waits
// until dir is a mount point that answers a stat, the process exits, or
// 30 s pass.
func startMount(exe string, args, env []string, dir string) (*mounted, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(harness.Env(""), env...)
	m := &mounted{dir: dir, cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = m.out, m.out
	// Its own process group: a signal to the test does not reach it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { m.err = cmd.Wait(); close(m.done) }()
	deadline := time.After(30 * time.Second)
	for {
		if ok, _ := harness.IsMounted(dir); ok {
			var st syscall.Stat_t
			if err := syscall.Stat(dir, &st); err == nil {
				m.conn = fmt.Sprint(unix.Minor(st.Dev))
				return m, nil
			}
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("exited before mounting (%v): %s", m.err, tail(m.out.String()))
		case <-deadline:
			m.kill()
			return nil, fmt.Errorf("not mounted within 30 s: %s", tail(m.out.String()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop unmounts and waits for the process to exit: umount first (every
// tool exits when its mount goes; rclone and s3fs finish their uploads),
// then SIGTERM, then force. It returns what went wrong, if anything; the
// mount is gone either way.
func (m *mounted) stop() error {
	var problems []string
	wait := 60 * time.Second // for the uploads a tool finishes at unmount
	if ok, _ := harness.IsMounted(m.dir); !ok {
		// Detached already (forceUnmount): nothing to finish.
		m.kill()
	} else if out, err := exec.Command("umount", m.dir).CombinedOutput(); err != nil {
		problems = append(problems, fmt.Sprintf("umount: %v %s", err, strings.TrimSpace(string(out))))
		m.cmd.Process.Signal(syscall.SIGTERM)
		wait = 10 * time.Second
	}
	select {
	case <-m.done:
	case <-time.After(wait):
		problems = append(problems, fmt.Sprintf("still running %s after the unmount: killed", wait))
		m.kill()
	}
	if ok, _ := harness.IsMounted(m.dir); ok {
		problems = append(problems, "still mounted after the process exited: detached")
		forceUnmount(m.dir, m.conn)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// kill ends the process and clears its mount: a FUSE daemon stuck in the
// kernel on its own mount is freed by detaching the mount and aborting the
// connection.
func (m *mounted) kill() {
	syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-m.done:
	case <-time.After(2 * time.Second):
		forceUnmount(m.dir, m.conn)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
		}
	}
	if ok, _ := harness.IsMounted(m.dir); ok {
		forceUnmount(m.dir, m.conn)
	}
}

// forceUnmount detaches dir and aborts its FUSE connection, so that
// whatever is blocked on it returns with an error.
func forceUnmount(dir, conn string) {
	syscall.Unmount(dir, syscall.MNT_DETACH)
	if conn != "" {
		os.WriteFile("/sys/fs/fuse/connections/"+conn+"/abort", []byte("1"), 0o200)
	}
}

// sweepMounts detaches every mount left under root (after a panic or a
// stuck tool): a run never leaves mounts behind.
func sweepMounts(root string) []string {
	abs, _ := filepath.Abs(root)
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(abs))
	if err != nil {
		return nil
	}
	var left []string
	for _, mi := range ms {
		left = append(left, mi.Mountpoint)
		syscall.Unmount(mi.Mountpoint, syscall.MNT_DETACH)
		os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", mi.Minor), []byte("1"), 0o200)
	}
	return left
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 800 {
		s = "..." + s[len(s)-800:]
	}
	return s
}
