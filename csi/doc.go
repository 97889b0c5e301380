// Package csi is bucketfs's Kubernetes CSI driver: pods mount buckets (or
// prefixes of buckets) as volumes, and the mounts survive restarts and
// upgrades of the driver.
//
// One Driver serves the CSI Identity service and, as configured, the
// Controller service (dynamic provisioning: a prefix of a shared bucket,
// or a bucket of its own, per volume; see controller.go) and the Node
// service (a bucketfs mount per publication; see node.go). The node side
// never runs a bucketfs daemon in its own process tree: a Mounter starts
// it as a transient systemd unit on the host, or through the mount
// helper in a session of its own (mounter.go says why and when). Each
// published target has a state file (state.go), so that a restarted
// driver finds its mounts, replaces dead ones (recover.go) and unmounts
// those an earlier process made.
//
// What the driver promises, and the reports of other S3 CSI drivers' users
// that shaped each promise:
//   - NodePublishVolume returns only once the target serves (k8s-csi-s3
//     #107 bound an empty directory into a pod after a mount timeout);
//   - a daemon that died leaves no dead mount behind: the next publish or
//     the driver's start detaches it and mounts again (k8s-csi-s3 #86,
//     #156);
//   - restarting the driver's pod leaves every mount serving (k8s-csi-s3
//     #29);
//   - credentials reach the daemon in a 0600 file, never on a command line
//     another pod could read in /proc, never in a log.
//
// The package imports store (for the controller's bucket and marker calls
// behind the ObjectStore interface) and nothing else of bucketfs: the
// mounts are made by the bucketfs binary itself.
//
// Lock order: Driver.ops (keyLocks.mu) is the package's only mutex, a
// leaf, held only to mark a key busy or free; the operation itself runs
// with the key marked, not with the mutex held.
package csi
