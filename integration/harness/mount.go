package harness

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

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// ModuleRoot returns the directory holding bucketfs's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the bucketfs module")
	}
	return filepath.Dir(mod), nil
}

// BuildBinary builds cmd/bucketfs into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bucketfs")
	args := []string{"build", "-o", bin}
	if os.Getenv("BUCKETFS_RACE") == "1" {
		// make integration: the daemon under real mounts, with the race
		// detector (a race makes it exit 66, which the tests see).
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/bucketfs")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// FUSEAvailable says whether this process can make FUSE mounts, and why not.
func FUSEAvailable() (bool, string) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return false, "/dev/fuse is missing"
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return false, "not root and no fusermount on PATH"
			}
		}
	}
	return true, ""
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// Mount is a running bucketfs mount process.
type Mount struct {
	Dir    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error  // exit status, set when done is closed
	conn   string // FUSE connection id (the mount's minor device number)
}

// StartMount runs `bin mount args... dir` with env and waits until the
// daemon says it has mounted (it logs "mounted" at level info, after
// go-fuse's own post-mount checks, which briefly hold a file open in the
// mount), or the process exits. args must not lower the log level below
// info.
func StartMount(bin string, env []string, dir string, args ...string) (*Mount, error) {
	full := append([]string{"mount"}, args...)
	full = append(full, dir)
	cmd := exec.Command(bin, full...)
	cmd.Env = env
	m := &Mount{Dir: dir, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = m.stderr
	cmd.Stdout = m.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		m.err = cmd.Wait()
		close(m.done)
	}()
	deadline := time.After(20 * time.Second)
	for {
		if ok, _ := IsMounted(dir); ok && m.mounted() {
			var st syscall.Stat_t
			if err := syscall.Stat(dir, &st); err == nil {
				m.conn = fmt.Sprint(unix.Minor(st.Dev))
			}
			return m, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("bucketfs exited before mounting (%v): %s", m.err, m.stderr.String())
		case <-deadline:
			m.Kill()
			return nil, fmt.Errorf("bucketfs did not mount within 20s: %s", m.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// mounted reports whether the daemon logged that it is mounted.
func (m *Mount) mounted() bool {
	l := m.stderr.String()
	return strings.Contains(l, "msg=mounted") || strings.Contains(l, `"msg":"mounted"`)
}

// Log returns what the process wrote so far.
func (m *Mount) Log() string { return m.stderr.String() }

// Pid returns the daemon's process id.
func (m *Mount) Pid() int { return m.cmd.Process.Pid }

// Signal sends sig to the daemon.
func (m *Mount) Signal(sig os.Signal) error { return m.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the daemon to exit and returns its exit error.
func (m *Mount) Wait(timeout time.Duration) error {
	select {
	case <-m.done:
		return m.err
	case <-time.After(timeout):
		return fmt.Errorf("bucketfs still running after %s", timeout)
	}
}

// Stop unmounts with SIGTERM and waits for a clean exit.
func (m *Mount) Stop() error {
	select {
	case <-m.done:
		return m.err
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	if err := m.Wait(15 * time.Second); err != nil {
		m.Kill()
		return err
	}
	return nil
}

// Kill ends the daemon and clears any mount it left. A FUSE daemon can be
// stuck in the kernel on its own mount; detaching the mount and aborting
// the FUSE connections frees it.
func (m *Mount) Kill() {
	m.cmd.Process.Kill()
	select {
	case <-m.done:
	case <-time.After(2 * time.Second):
		syscall.Unmount(m.Dir, syscall.MNT_DETACH)
		if m.conn != "" {
			os.WriteFile("/sys/fs/fuse/connections/"+m.conn+"/abort", []byte("1"), 0o200)
		}
		<-m.done
	}
	if ok, _ := IsMounted(m.Dir); ok {
		syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	}
}

// IsMounted reports whether dir is a mount point. It reads the mount table,
// so a mount whose daemon died still counts.
func IsMounted(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(abs))
	if err != nil {
		return false, err
	}
	return len(mounts) > 0, nil
}
