package csi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// SystemdMounter runs each mount as a transient unit of the host's
// systemd. See Mounter for why.
type SystemdMounter struct {
	// Bin is the bucketfs binary the units run: a copy of the driver's on
	// the host (InstallBinary), since the driver's own lives in its image.
	Bin string
	// StartTimeout bounds a unit's start (default 60 s).
	StartTimeout time.Duration
	// connect opens a connection to systemd (a fake in tests).
	connect func(ctx context.Context) (systemdConn, error)
}

var _ Mounter = (*SystemdMounter)(nil)

// systemdConn is what the mounter calls of go-systemd's *dbus.Conn.
type systemdConn interface {
	StartTransientUnitContext(ctx context.Context, name, mode string, props []sddbus.Property, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	ResetFailedUnitContext(ctx context.Context, name string) error
	GetUnitPropertyContext(ctx context.Context, unit, name string) (*sddbus.Property, error)
	GetServicePropertyContext(ctx context.Context, unit, name string) (*sddbus.Property, error)
	Close()
}

// NewSystemdMounter returns a mounter whose units run bin, talking to
// systemd over /run/systemd/private (as systemctl does for root).
func NewSystemdMounter(bin string) *SystemdMounter {
	return &SystemdMounter{Bin: bin, connect: func(ctx context.Context) (systemdConn, error) {
		return sddbus.NewSystemdConnectionContext(ctx)
	}}
}

// Name implements Mounter.
func (s *SystemdMounter) Name() string { return "systemd" }

// unitName is the unit of a mount.
func unitName(key string) string { return "bucketfs-csi-" + key + ".service" }

// unitProperties are the properties of the unit that mounts r: what
// `systemd-run --unit=NAME --description=... --property=Type=notify
// --collect -p Restart=no --setenv=... BIN mount ... SOURCE TARGET` sets.
func (s *SystemdMounter) unitProperties(r MountRequest) []sddbus.Property {
	argv := []string{s.Bin, "mount"}
	for _, o := range r.Options {
		argv = append(argv, "--"+o)
	}
	argv = append(argv, r.Source, r.Target)
	var env []string
	if r.CredentialsFile != "" {
		env = append(env, "AWS_SHARED_CREDENTIALS_FILE="+r.CredentialsFile, "AWS_CONFIG_FILE="+os.DevNull)
	}
	timeout := s.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	return []sddbus.Property{
		sddbus.PropDescription("bucketfs CSI mount of " + r.VolumeID + " at " + r.Target),
		sddbus.PropType("notify"),
		sddbus.PropExecStart(argv, false),
		{Name: "Environment", Value: dbus.MakeVariant(env)},
		{Name: "CollectMode", Value: dbus.MakeVariant("inactive-or-failed")},
		{Name: "Restart", Value: dbus.MakeVariant("no")},
		{Name: "TimeoutStartUSec", Value: dbus.MakeVariant(uint64(timeout.Microseconds()))},
	}
}

// Mount implements Mounter. A unit of the same name still there (a daemon
// draining its write-back uploads after an unmount, or a failed unit not
// yet collected) is stopped and reset first: the caller only mounts a
// target that has no serving mount.
func (s *SystemdMounter) Mount(ctx context.Context, r MountRequest) (Mounted, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return Mounted{}, fmt.Errorf("connecting to systemd: %v", err)
	}
	defer conn.Close()
	unit := unitName(r.Key)
	if p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveState"); err == nil {
		if st, _ := p.Value.Value().(string); st != "inactive" && st != "failed" && st != "" {
			if err := waitJob(ctx, func(ch chan<- string) (int, error) {
				return conn.StopUnitContext(ctx, unit, "replace", ch)
			}); err != nil {
				return Mounted{}, fmt.Errorf("stopping the earlier %s: %v", unit, err)
			}
		}
	}
	conn.ResetFailedUnitContext(ctx, unit) // fails when there is nothing to reset
	err = waitJob(ctx, func(ch chan<- string) (int, error) {
		return conn.StartTransientUnitContext(ctx, unit, "fail", s.unitProperties(r), ch)
	})
	if err != nil {
		status := ""
		if p, perr := conn.GetServicePropertyContext(ctx, unit, "ExecMainStatus"); perr == nil {
			status = fmt.Sprintf(", exit status %v", p.Value.Value())
		}
		return Mounted{}, fmt.Errorf("unit %s: %v%s (journalctl -u %s on the node says why)", unit, err, status, unit)
	}
	m := Mounted{Unit: unit}
	if p, err := conn.GetServicePropertyContext(ctx, unit, "MainPID"); err == nil {
		if pid, ok := p.Value.Value().(uint32); ok {
			m.PID = int(pid)
		}
	}
	return m, nil
}

// waitJob starts a systemd job and waits for its result: "done" is
// success, anything else ("failed", "timeout", "canceled", "dependency")
// an error.
func waitJob(ctx context.Context, start func(ch chan<- string) (int, error)) error {
	ch := make(chan string, 1)
	if _, err := start(ch); err != nil {
		return err
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("job %s", res)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Abandon implements Mounter: the unit is stopped.
func (s *SystemdMounter) Abandon(m Mounted) {
	if m.Unit == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := s.connect(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	waitJob(ctx, func(ch chan<- string) (int, error) { return conn.StopUnitContext(ctx, m.Unit, "replace", ch) })
}

// InstallBinary copies the running binary to dir/bucketfs (mode 0755) for
// systemd units to run, unless an identical copy is there, and returns its
// path. The copy replaces the old one with a rename, so daemons still
// running the old binary keep it.
func InstallBinary(dir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "bucketfs")
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
		return dst, nil
	}
	if err := writeFileAtomic(dst, data, 0o755); err != nil {
		return "", fmt.Errorf("installing %s: %v", dst, err)
	}
	return dst, nil
}

// errNoSystemd says the host has no systemd to run units.
var errNoSystemd = errors.New("no systemd on this host (/run/systemd/system is missing): use --mounter process")

// CheckSystemd fails when the host has no systemd whose private socket the
// driver can reach.
func CheckSystemd() error {
	if AutoMounter() != "systemd" {
		return errNoSystemd
	}
	if _, err := os.Stat("/run/systemd/private"); err != nil {
		return fmt.Errorf("systemd's private socket: %v (mount the host's /run/systemd into the driver)", err)
	}
	return nil
}
