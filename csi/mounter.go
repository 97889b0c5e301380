package csi

import (
	"context"
	"os"
)

// Mounters: where the bucketfs daemons run.
//
// A FUSE mount lives exactly as long as the process that serves it. If the
// daemons were children of the driver, a restart or an upgrade of the
// driver's pod would kill every mount on the node, and each pod using a
// volume would see "Transport endpoint is not connected" until it is
// recreated: k8s-csi-s3's users hit exactly that (#29) until it moved its
// daemons into systemd units. So the daemons never live in the driver's
// process tree, its cgroup or its container:
//
//   - systemd (the default where the host runs systemd): each mount is a
//     transient unit of the host's systemd, started over its private D-Bus
//     socket (the DaemonSet mounts the host's /run/systemd), exactly what
//     `systemd-run --unit=bucketfs-csi-KEY --property=Type=notify --collect
//     -p Restart=no` does, without a systemd-run binary in the image. The
//     daemon runs on the host, in the host's mount namespace, out of the
//     driver's cgroup: killing, restarting or upgrading the driver's pod
//     leaves it serving. Type=notify makes the start return only once the
//     daemon said READY=1, after its mount is up. Restart=no: a daemon
//     that dies leaves a dead mount that the next NodePublishVolume, or
//     the driver's start, replaces (a restart loop would hide the cause).
//     Its logs are in the journal (journalctl -u bucketfs-csi-KEY).
//     The alternative, mountpoint-s3-csi v2's, mounts in the driver and
//     hands the /dev/fuse descriptor to a long-lived mounter pod: it
//     needs a controller creating pods per volume and a protocol to pass
//     the descriptor; a unit per mount needs neither, and systemd already
//     supervises, logs and accounts for it.
//   - process (where there is no systemd, and in tests): the mount helper
//     (`bucketfs SOURCE TARGET -o OPTIONS`), which starts the daemon in a
//     session of its own and returns once the mount is up; the daemon is
//     re-parented away from the driver. It survives the driver process
//     (a crash, kill -9, an upgrade of the binary) but not the driver's
//     container: a container restart kills every process in its cgroup.
//     In Kubernetes use it only where the host has no systemd.
type Mounter interface {
	// Name is "systemd" or "process".
	Name() string
	// Mount mounts r and returns only once the mount serves, or fails.
	Mount(ctx context.Context, r MountRequest) (Mounted, error)
	// Abandon ends the daemon of a mount being given up (its check after
	// Mount failed, or NodePublishVolume gave up), if it still runs.
	Abandon(m Mounted)
}

// MountRequest is one mount to make.
type MountRequest struct {
	// Key names the mount's unit and files (targetKey of Target).
	Key      string
	VolumeID string
	// Source is "s3://bucket[/prefix]".
	Source string
	Target string
	// Options are bucketfs mount flags without their dashes
	// ("endpoint=http://...", "read-only"), already checked.
	Options []string
	// CredentialsFile is the volume's AWS shared credentials file, or ""
	// to let the daemon use the AWS chain of its environment.
	CredentialsFile string
	// LogFile is where a daemon that has no journal logs.
	LogFile string
}

// Mounted says who serves a mount.
type Mounted struct {
	Unit string
	PID  int
}

// AutoMounter names the mounter for this host: systemd when it booted with
// systemd (the test sd_booted(3) makes), else process.
func AutoMounter() string {
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		return "systemd"
	}
	return "process"
}
