package main

import (
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
	lsyslog "github.com/sirupsen/logrus/hooks/syslog"
	"golang.org/x/sys/unix"
)

// bucketfs as a mount helper. `mount -t fuse.bucketfs SOURCE DIR -o OPTS`
// and /etc/fstab lines of type fuse.bucketfs make mount(8) run mount.fuse3,
// which runs `bucketfs SOURCE DIR -o OPTS` (found in /usr/local/bin or
// another system directory) and waits for it. So called, bucketfs turns the
// options into mount flags (cache_dir=/x is --cache-dir=/x, allow_other is
// --allow-other), starts the daemon in the background and exits 0 once the
// mount is up, or with the daemon's error.

// isHelperCall reports whether args (without the program name) are mount
// helper arguments rather than a bucketfs command line.
// Every command of the tree is one (cobra adds help and completion only
// when it runs), so a new command cannot be taken for a bucket.
func isHelperCall(args []string) bool {
	if len(args) < 2 || strings.HasPrefix(args[0], "-") {
		return false
	}
	switch args[0] {
	case "help", "completion", "__complete", "__completeNoDesc":
		return false
	}
	for _, c := range newRootCmd(runMount).Commands() {
		if c.Name() == args[0] || c.HasAlias(args[0]) {
			return false
		}
	}
	return true
}

// mountOnlyOptions are options meant for mount(8) or the kernel that mean
// nothing to bucketfs (a bucketfs mount is nodev and nosuid; rw is its
// default, and ro is --read-only, translated in helperArgs).
var mountOnlyOptions = map[string]bool{
	"rw": true, "defaults": true, "auto": true, "noauto": true,
	"user": true, "nouser": true, "users": true, "owner": true, "group": true,
	"_netdev": true, "nofail": true, "dev": true, "nodev": true, "suid": true,
	"nosuid": true, "exec": true, "noexec": true, "atime": true, "noatime": true,
	"relatime": true, "norelatime": true, "strictatime": true, "diratime": true,
	"nodiratime": true, "lazytime": true, "sync": true, "async": true,
	"comment": true,
}

// helperArgs turns mount helper arguments into a `bucketfs mount` command
// line and environment. -f or the option "foreground" keeps the daemon in
// the foreground.
func helperArgs(args []string) (mountArgs, env []string, foreground bool, err error) {
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-o":
			if i+1 == len(args) {
				return nil, nil, false, fmt.Errorf("-o needs a list of options")
			}
			opts = append(opts, strings.Split(args[i+1], ",")...)
			i++
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case a == "-f":
			foreground = true
		case a == "-n" || a == "-s" || a == "-v": // mount(8)'s: no mtab, sloppy, verbose
		case strings.HasPrefix(a, "-"):
			return nil, nil, false, fmt.Errorf("unknown mount helper argument %q", a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, nil, false, fmt.Errorf("expected SOURCE MOUNTPOINT [-o OPTIONS], got %d arguments", len(pos))
	}
	for _, o := range opts {
		name, val, hasVal := strings.Cut(strings.TrimSpace(o), "=")
		switch {
		case name == "" || mountOnlyOptions[name] || strings.HasPrefix(name, "x-"):
		case name == "foreground":
			foreground = true
		case name == "ro":
			mountArgs = append(mountArgs, "--read-only")
		case name == "credentials_file" && hasVal:
			env = append(env, "AWS_SHARED_CREDENTIALS_FILE="+val)
		case name == "config_file" && hasVal:
			env = append(env, "AWS_CONFIG_FILE="+val)
		default:
			flag := "--" + strings.ReplaceAll(name, "_", "-")
			if hasVal {
				flag += "=" + val
			}
			mountArgs = append(mountArgs, flag)
		}
	}
	return append(mountArgs, pos[0], pos[1]), env, foreground, nil
}

// readyFDEnv names the environment variable holding the descriptor on
// which a daemon started by the helper says it has mounted.
const readyFDEnv = "BUCKETFS_READY_FD"

// runHelper mounts as mount(8) wants: in the background, returning once the
// mount is up.
func runHelper(args []string) error {
	mountArgs, env, foreground, err := helperArgs(args)
	if err != nil {
		return err
	}
	if foreground {
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
		root := newRootCmd(runMount)
		root.SetArgs(append([]string{"mount"}, mountArgs...))
		return root.Execute()
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, append([]string{"mount"}, mountArgs...)...)
	cmd.Env = append(append(os.Environ(), env...), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr // logs, unless --log-file
	// Its own session: the daemon outlives the helper and its terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	w.Close()
	buf := make([]byte, 16)
	if n, _ := r.Read(buf); n > 0 {
		return nil // mounted; the daemon runs on
	}
	// The daemon exited before mounting; it printed why.
	if err := cmd.Wait(); err != nil {
		os.Exit(exitCode(err))
	}
	return fmt.Errorf("the daemon exited without mounting")
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return 1
}

// notifyMounted tells whoever started the daemon that the mount is up: the
// mount helper (through BUCKETFS_READY_FD) and systemd (Type=notify,
// through NOTIFY_SOCKET). A daemon started by the helper then lets go of
// the helper's standard streams, as daemons do: its logs go to --log-file,
// or else to syslog (the journal, under systemd).
func notifyMounted(log *logrus.Logger, logFile string) {
	if fd := os.Getenv(readyFDEnv); fd == "3" {
		os.Unsetenv(readyFDEnv)
		if logFile == "" {
			if hook, err := lsyslog.NewSyslogHook("", "", syslog.LOG_INFO|syslog.LOG_DAEMON, "bucketfs"); err == nil {
				log.AddHook(hook)
			} else {
				log.WithError(err).Warn("no syslog: from now on logs are dropped; give log_file=PATH to keep them")
			}
			log.SetOutput(io.Discard)
		}
		if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
			for fd := range 3 {
				unix.Dup2(int(devnull.Fd()), fd)
			}
			devnull.Close()
		}
		if f := os.NewFile(3, "ready"); f != nil {
			f.Write([]byte("mounted\n"))
			f.Close()
		}
	}
	sdNotify("READY=1")
}

// sdNotify sends state to systemd's notify socket, if there is one.
// NOTIFY_SOCKET stays set: READY=1 at mount is followed by STOPPING=1 at the
// first signal. A failed send is ignored: the daemon runs the same whether
// or not a service manager listens.
func sdNotify(state string) {
	daemon.SdNotify(false, state)
}
