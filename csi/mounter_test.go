package csi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// fakeSystemd records the calls of the systemd mounter and answers them.
type fakeSystemd struct {
	activeState string            // of the unit before the start
	startResult string            // "done" or "failed"
	props       []sddbus.Property // of the last started unit
	calls       []string
}

func (f *fakeSystemd) StartTransientUnitContext(_ context.Context, name, mode string, props []sddbus.Property, ch chan<- string) (int, error) {
	f.calls = append(f.calls, "start "+name+" "+mode)
	f.props = props
	ch <- f.startResult
	return 1, nil
}

func (f *fakeSystemd) StopUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	f.calls = append(f.calls, "stop "+name)
	ch <- "done"
	return 2, nil
}

func (f *fakeSystemd) ResetFailedUnitContext(_ context.Context, name string) error {
	f.calls = append(f.calls, "reset-failed "+name)
	return errors.New("not loaded")
}

func (f *fakeSystemd) GetUnitPropertyContext(_ context.Context, unit, name string) (*sddbus.Property, error) {
	if name == "ActiveState" && f.activeState != "" {
		return &sddbus.Property{Name: name, Value: dbus.MakeVariant(f.activeState)}, nil
	}
	return nil, errors.New("no such unit")
}

func (f *fakeSystemd) GetServicePropertyContext(_ context.Context, unit, name string) (*sddbus.Property, error) {
	switch name {
	case "MainPID":
		return &sddbus.Property{Name: name, Value: dbus.MakeVariant(uint32(777))}, nil
	case "ExecMainStatus":
		return &sddbus.Property{Name: name, Value: dbus.MakeVariant(int32(1))}, nil
	}
	return nil, errors.New("no such property")
}

func (f *fakeSystemd) Close() {}

func (f *fakeSystemd) prop(name string) any {
	for _, p := range f.props {
		if p.Name == name {
			return p.Value.Value()
		}
	}
	return nil
}

// TestSystemdMounter: the unit is what `systemd-run --property=Type=notify
// --collect -p Restart=no` makes, runs the installed binary with the
// mount's flags, source and target, and gets the credentials file by path
// in its environment (no secret on a command line); an earlier unit of the
// same name still active is stopped first; a failed start names the unit
// to read in the journal.
func TestSystemdMounter(t *testing.T) {
	ctx := context.Background()
	f := &fakeSystemd{startResult: "done", activeState: "active"}
	m := &SystemdMounter{Bin: "/var/lib/bucketfs-csi/bin/bucketfs", connect: func(context.Context) (systemdConn, error) { return f, nil }}
	r := MountRequest{Key: "abc", VolumeID: "vol-1", Source: "s3://media/sets", Target: "/var/lib/kubelet/pods/p/volumes/v/mount",
		Options: []string{"allow-other", "endpoint=https://t3.storage.dev", "read-only"}, CredentialsFile: "/var/lib/bucketfs-csi/secrets/abc"}
	got, err := m.Mount(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Unit != "bucketfs-csi-abc.service" || got.PID != 777 {
		t.Errorf("mounted %+v", got)
	}
	if want := []string{"stop bucketfs-csi-abc.service", "reset-failed bucketfs-csi-abc.service", "start bucketfs-csi-abc.service fail"}; !slices.Equal(f.calls, want) {
		t.Errorf("calls %v, want %v", f.calls, want)
	}
	if f.prop("Type") != "notify" || f.prop("CollectMode") != "inactive-or-failed" || f.prop("Restart") != "no" {
		t.Errorf("unit properties %v", f.props)
	}
	exec := fmt.Sprint(f.prop("ExecStart"))
	for _, want := range []string{"/var/lib/bucketfs-csi/bin/bucketfs mount --allow-other --endpoint=https://t3.storage.dev --read-only s3://media/sets /var/lib/kubelet/pods/p/volumes/v/mount"} {
		if !strings.Contains(exec, want) {
			t.Errorf("ExecStart %s, want %q", exec, want)
		}
	}
	env, _ := f.prop("Environment").([]string)
	if !slices.Equal(env, []string{"AWS_SHARED_CREDENTIALS_FILE=/var/lib/bucketfs-csi/secrets/abc", "AWS_CONFIG_FILE=/dev/null"}) {
		t.Errorf("environment %v", env)
	}

	f = &fakeSystemd{startResult: "failed"}
	_, err = m.Mount(ctx, r)
	if err == nil || !strings.Contains(err.Error(), "journalctl -u bucketfs-csi-abc.service") || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("failed start: %v", err)
	}
	if slices.Contains(f.calls, "stop bucketfs-csi-abc.service") {
		t.Error("stopped a unit that was not there")
	}
}

// TestDaemonEnv: a daemon with its own credentials file gets none of the
// driver's AWS credential variables (they would win over the file), and
// no daemon gets the driver's notify socket or ready descriptor.
func TestDaemonEnv(t *testing.T) {
	base := []string{"PATH=/bin", "AWS_ACCESS_KEY_ID=driver", "AWS_SECRET_ACCESS_KEY=driver", "AWS_PROFILE=x",
		"AWS_CA_BUNDLE=/ca.pem", "NOTIFY_SOCKET=/run/systemd/notify", "BUCKETFS_READY_FD=3"}
	if got := daemonEnv(base, true); !slices.Equal(got, []string{"PATH=/bin", "AWS_CA_BUNDLE=/ca.pem"}) {
		t.Errorf("with a credentials file: %v", got)
	}
	if got := daemonEnv(base, false); !slices.Equal(got, base[:5]) {
		t.Errorf("without: %v", got)
	}
}

// TestProcessMounterFailure: a helper that fails returns its last lines as
// the error (what the daemon said is what the kubelet's event shows).
func TestProcessMounterFailure(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	script := t.TempDir() + "/helper"
	os.WriteFile(script, []byte("#!"+sh+"\necho 'bucketfs: bucket media does not exist' >&2\nexit 1\n"), 0o755)
	m := &ProcessMounter{Exe: script, Env: os.Environ()}
	_, err = m.Mount(context.Background(), MountRequest{Source: "s3://media", Target: t.TempDir(), Options: []string{"allow-other"}})
	if err == nil || !strings.Contains(err.Error(), "bucket media does not exist") {
		t.Errorf("Mount: %v", err)
	}
	_, err = m.Mount(context.Background(), MountRequest{Source: "s3://media", Target: t.TempDir(), LogFile: "/a,b"})
	if err == nil || !strings.Contains(err.Error(), "comma") {
		t.Errorf("an option with a comma: %v", err)
	}
}
