package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var _ csipb.NodeServer = (*Driver)(nil)

// NodeGetInfo implements csipb.NodeServer. No topology: a bucket is
// reachable from every node; no limit on volumes per node.
func (d *Driver) NodeGetInfo(context.Context, *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	return &csipb.NodeGetInfoResponse{NodeId: d.cfg.NodeID}, nil
}

// NodeGetCapabilities implements csipb.NodeServer. There is no staging
// step: each publication is a mount of its own, so that one pod's daemon
// dying or being unmounted touches no other pod.
func (d *Driver) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	capability := func(t csipb.NodeServiceCapability_RPC_Type) *csipb.NodeServiceCapability {
		return &csipb.NodeServiceCapability{Type: &csipb.NodeServiceCapability_Rpc{Rpc: &csipb.NodeServiceCapability_RPC{Type: t}}}
	}
	return &csipb.NodeGetCapabilitiesResponse{Capabilities: []*csipb.NodeServiceCapability{
		capability(csipb.NodeServiceCapability_RPC_GET_VOLUME_STATS),
		capability(csipb.NodeServiceCapability_RPC_VOLUME_CONDITION),
	}}, nil
}

// Volume attributes (a PersistentVolume's spec.csi.volumeAttributes, or
// the volume context CreateVolume returned): bucket, prefix, endpoint,
// region, pathStyle, mountOptions. Keys with a '/' are Kubernetes' own
// (csi.storage.k8s.io/pod.name, storage.kubernetes.io/csiProvisionerIdentity)
// and ignored.

// publishSpec is what NodePublishVolume mounts: the volume, and the
// bucketfs flags (without dashes, sorted) that mount it.
func publishSpec(id string, attrs, secrets map[string]string, capability *csipb.VolumeCapability, readonly bool) (volume, []string, error) {
	v, _ := parseVolumeID(id) // a dynamic volume's id says where it is; its attributes too
	mountOptions := ""
	var err error
	for k, val := range attrs {
		val = strings.TrimSpace(val)
		switch k {
		case paramBucket:
			v.Bucket = val
		case paramPrefix:
			if v.Prefix, err = normalizePrefix(val); err != nil {
				return v, nil, err
			}
		case paramEndpoint:
			v.Endpoint = val
		case paramRegion:
			v.Region = val
		case paramPathStyle:
			if v.PathStyle, err = parseBool(k, val); err != nil {
				return v, nil, err
			}
		case paramMountOptions:
			mountOptions = val
		default:
			if !strings.Contains(k, "/") {
				return v, nil, fmt.Errorf("unknown volume attribute %q (known: bucket, prefix, endpoint, region, pathStyle, mountOptions)", k)
			}
		}
	}
	if v.Bucket == "" {
		return v, nil, errors.New("volume attribute \"bucket\" is required")
	}
	if err := checkBucketName(v.Bucket); err != nil {
		return v, nil, err
	}
	if v.Endpoint == "" {
		v.Endpoint = strings.TrimSpace(secrets[secretEndpoint])
	}
	if v.Region == "" {
		v.Region = strings.TrimSpace(secrets[secretRegion])
	}
	if v.PathStyle == "" {
		if v.PathStyle, err = parseBool(secretPathStyle, secrets[secretPathStyle]); err != nil {
			return v, nil, err
		}
	}
	if err := checkEndpoint(v.Endpoint); err != nil {
		return v, nil, err
	}
	if err := checkRegion(v.Region); err != nil {
		return v, nil, err
	}
	flags, err := parseMountOptions(mountOptions, strings.Join(capability.GetMount().GetMountFlags(), ","))
	if err != nil {
		return v, nil, err
	}
	if v.Endpoint != "" {
		flags = setFlag(flags, flag{Name: "endpoint", Value: v.Endpoint, HasValue: true})
	}
	if v.Region != "" {
		flags = setFlag(flags, flag{Name: "region", Value: v.Region, HasValue: true})
	}
	if v.PathStyle == "true" {
		flags = setFlag(flags, flag{Name: "path-style"})
	}
	switch capability.GetAccessMode().GetMode() {
	case csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		readonly = true
	}
	if readonly {
		flags = setFlag(flags, flag{Name: "read-only"})
	}
	// Pods run as any user; the daemon runs as root. Without allow_other
	// the kernel lets nobody but root into the mount. bucketfs checks
	// modes itself (uid, gid, file-mode, dir-mode in mountOptions).
	flags = setFlag(flags, flag{Name: "allow-other"})
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	opts := make([]string, len(flags))
	for i, f := range flags {
		opts[i] = f.option()
	}
	return v, opts, nil
}

// publishDigest identifies a publication: what is mounted, how. The
// credentials are not part of it (a rotated secret is the same volume).
func publishDigest(id, source string, opts []string) string {
	h := sha256.Sum256([]byte(strings.Join(append([]string{id, source}, opts...), "\x00")))
	return hex.EncodeToString(h[:12])
}

// NodePublishVolume implements csipb.NodeServer. It returns only once
// the target serves: mountinfo shows a fuse.bucketfs mount there, and a
// stat and a statfs of its root answer. Never an empty directory that the kubelet
// would bind into the pod (k8s-csi-s3 #107). The same publication again
// succeeds at once. A dead mount at the target (its daemon was killed or
// crashed: ENOTCONN) is detached and mounted again.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	case target == "":
		return nil, status.Error(codes.InvalidArgument, "target path missing")
	case req.GetVolumeCapability() == nil:
		return nil, status.Error(codes.InvalidArgument, "volume capability missing")
	case !filepath.IsAbs(target):
		return nil, status.Errorf(codes.InvalidArgument, "target path %q is not absolute", target)
	}
	if err := checkCapabilities([]*csipb.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	v, opts, err := publishSpec(id, req.GetVolumeContext(), req.GetSecrets(), req.GetVolumeCapability(), req.GetReadonly())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	creds, err := secretCredentials(req.GetSecrets())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	target = filepath.Clean(target)
	unlock, err := d.ops.lock("target " + target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	key := targetKey(target)
	log := d.log.WithFields(logrus.Fields{"volume_id": id, "target": target})
	old, err := d.state.load(key)
	if err != nil {
		log.WithError(err).Warn("unreadable state file: replacing it")
	}
	digest := publishDigest(id, v.source(), opts)
	if base, ok := optionValue(opts, "cache-dir"); ok {
		// The driver picks the volume's directory under the one asked for,
		// and the same publication keeps the one it had.
		dir, kept := "", false
		if old != nil && old.Digest == digest {
			dir, kept = optionValue(old.Options, "cache-dir")
		}
		if !kept {
			dir = d.cacheDir(base, id, key)
		}
		opts = replaceCacheDir(opts, dir)
	}
	ms, err := d.mounts().check(target)
	switch ms {
	case serving:
		if old != nil && old.Digest == digest {
			log.Info("already published and serving")
			return &csipb.NodePublishVolumeResponse{}, nil
		}
		if old != nil {
			return nil, status.Errorf(codes.AlreadyExists, "%s already has volume %q published with other options", target, old.VolumeID)
		}
		return nil, status.Errorf(codes.AlreadyExists, "%s is already a bucketfs mount this driver did not make", target)
	case dead:
		log.Warn("dead mount at the target (its daemon is gone): detaching it and mounting again")
		if err := d.mounts().unmountAll(target, true); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	case unresponsive:
		return nil, status.Errorf(codes.Unavailable, "the mount at %s does not answer: %v", target, err)
	case foreign:
		return nil, status.Errorf(codes.FailedPrecondition, "%s is already a mount of another filesystem", target)
	default:
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "creating the target: %v", err)
	}
	st := &publishState{
		VolumeID: id, Target: target, Source: v.source(), Options: opts,
		Digest: digest, Mounter: d.cfg.Mounter.Name(), Published: time.Now().UTC(),
	}
	if creds.AccessKeyID != "" {
		if st.Credentials, err = d.state.writeCredentials(key, creds); err != nil {
			return nil, status.Errorf(codes.Internal, "writing the credentials file: %v", err)
		}
	} else {
		os.Remove(d.state.credentialsPath(key)) // none: the daemon's AWS chain
	}
	if err := d.mount(ctx, st, log); err != nil {
		d.state.remove(key)
		return nil, err
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

// mount mounts what st describes and records who serves it. The state is
// saved before mounting, so a driver killed in the middle finds the mount
// again; a failed mount leaves nothing mounted at the target.
func (d *Driver) mount(ctx context.Context, st *publishState, log *logrus.Entry) error {
	key := targetKey(st.Target)
	if d.cfg.Mounter.Name() == "process" {
		st.LogFile = d.state.logPath(key)
	}
	st.Mounter = d.cfg.Mounter.Name()
	if err := d.state.save(st); err != nil {
		return status.Errorf(codes.Internal, "saving the state: %v", err)
	}
	mctx, cancel := context.WithTimeout(ctx, d.cfg.MountTimeout)
	defer cancel()
	start := time.Now()
	m, err := d.cfg.Mounter.Mount(mctx, MountRequest{
		Key: key, VolumeID: st.VolumeID, Source: st.Source, Target: st.Target,
		Options: st.Options, CredentialsFile: st.Credentials, LogFile: st.LogFile,
	})
	if err != nil {
		d.mounts().unmountAll(st.Target, true)
		return status.Errorf(codes.Internal, "mounting %s: %v", st.Source, err)
	}
	// The mounter returns once the daemon said it mounted; check that
	// the kernel agrees before the kubelet binds the target into a pod.
	var ms mountState
	for deadline := time.Now().Add(d.serveWait); ; time.Sleep(50 * time.Millisecond) {
		ms, err = d.mounts().check(st.Target)
		if ms == serving || time.Now().After(deadline) {
			break
		}
	}
	if ms != serving {
		d.cfg.Mounter.Abandon(m)
		d.mounts().unmountAll(st.Target, true)
		return status.Errorf(codes.Internal, "mounted %s, but %s is %s (%v)", st.Source, st.Target, ms, err)
	}
	st.Unit, st.PID = m.Unit, m.PID
	if err := d.state.save(st); err != nil {
		log.WithError(err).Warn("saving the state")
	}
	log.WithFields(logrus.Fields{"source": st.Source, "unit": m.Unit, "pid": m.PID, "took": time.Since(start).Round(time.Millisecond)}).Info("mounted")
	return nil
}

// mounts is the driver's view of the kernel's mounts.
func (d *Driver) mounts() *mountChecker {
	if d.checker == nil {
		return defaultChecker
	}
	return d.checker
}

var defaultChecker = newMountChecker()

// NodeUnpublishVolume implements csipb.NodeServer: it unmounts the target
// (lazily when the mount is dead, busy or does not answer), removes its
// credentials file, state and log, and the target directory. Whatever
// driver process made the mount. Nothing there is success.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csipb.NodeUnpublishVolumeRequest) (*csipb.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	case target == "":
		return nil, status.Error(codes.InvalidArgument, "target path missing")
	}
	target = filepath.Clean(target)
	unlock, err := d.ops.lock("target " + target)
	if err != nil {
		return nil, err
	}
	defer unlock()
	log := d.log.WithFields(logrus.Fields{"volume_id": id, "target": target})
	ms, err := d.mounts().check(target)
	if ms != notMounted {
		if err := d.mounts().unmountAll(target, ms != serving && ms != foreign); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		log.WithField("was", ms.String()).Info("unmounted")
	} else if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := d.state.remove(targetKey(target)); err != nil {
		log.WithError(err).Warn("removing the state")
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "removing the target: %v", err)
	}
	return &csipb.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats implements csipb.NodeServer. What it reports, and
// why:
//   - the volume condition, which is true: normal while the mount serves;
//     abnormal, saying so, when its daemon is gone (ENOTCONN) or its root
//     does not answer in time;
//   - one usage entry in bytes with every field 0, which the CSI spec
//     reads as "not reported": an S3 bucket has no capacity and no free
//     space, and summing the sizes of every object under the prefix would
//     cost a full listing at every kubelet poll. (bucketfs's statfs shows
//     a large, empty filesystem so that programs checking free space
//     write; reporting that here would be invented numbers.) csi-sanity
//     wants a usage entry whenever GET_VOLUME_STATS is offered.
//
// A path with no mount of the volume is NotFound.
func (d *Driver) NodeGetVolumeStats(ctx context.Context, req *csipb.NodeGetVolumeStatsRequest) (*csipb.NodeGetVolumeStatsResponse, error) {
	id, path := req.GetVolumeId(), req.GetVolumePath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	case path == "":
		return nil, status.Error(codes.InvalidArgument, "volume path missing")
	}
	path = filepath.Clean(path)
	ms, checkErr := d.mounts().check(path)
	switch ms {
	case notMounted:
		if checkErr != nil {
			return nil, status.Error(codes.Internal, checkErr.Error())
		}
		return nil, status.Errorf(codes.NotFound, "no volume is mounted at %s", path)
	case foreign:
		return nil, status.Errorf(codes.NotFound, "%s is not a bucketfs mount", path)
	}
	if st, err := d.state.load(targetKey(path)); err == nil && st != nil && st.VolumeID != id {
		return nil, status.Errorf(codes.NotFound, "%s holds volume %q, not %q", path, st.VolumeID, id)
	}
	cond := &csipb.VolumeCondition{Message: "mounted and serving"}
	switch ms {
	case dead:
		cond = &csipb.VolumeCondition{Abnormal: true, Message: "the bucketfs daemon of this mount is gone (transport endpoint is not connected); the next NodePublishVolume or a restart of the driver mounts it again, and containers see the new mount once they restart"}
	case unresponsive:
		cond = &csipb.VolumeCondition{Abnormal: true, Message: fmt.Sprintf("the mount does not answer: %v", checkErr)}
	}
	return &csipb.NodeGetVolumeStatsResponse{
		Usage:           []*csipb.VolumeUsage{{Unit: csipb.VolumeUsage_BYTES}},
		VolumeCondition: cond,
	}, nil
}

// cacheDir picks the --cache-dir of a publication under base, the
// directory the volume's mountOptions name: a directory per volume, so a
// StorageClass's many volumes share no cache (bucketfs takes one mount per
// cache directory), and the same one again for the same volume, so
// --write-back uploads a daemon left behind are sent by the next mount of
// the volume. A second mount of the volume on this node at once (two pods)
// gets a numbered sibling.
func (d *Driver) cacheDir(base, id, key string) string {
	inUse := map[string]bool{}
	if states, err := d.state.all(); err == nil {
		for _, st := range states {
			if targetKey(st.Target) == key {
				continue
			}
			if cd, ok := cacheDirOf(st.Options); ok {
				inUse[cd] = true
			}
		}
	}
	dir := filepath.Join(base, "vol-"+shortHash(id))
	for n := 2; inUse[dir]; n++ {
		dir = filepath.Join(base, fmt.Sprintf("vol-%s-%d", shortHash(id), n))
	}
	return dir
}

// optionValue returns the value of option name in opts ("name=value").
func optionValue(opts []string, name string) (string, bool) {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func cacheDirOf(opts []string) (string, bool) { return optionValue(opts, "cache-dir") }

// replaceCacheDir sets the cache-dir option of opts to dir.
func replaceCacheDir(opts []string, dir string) []string {
	out := make([]string, 0, len(opts))
	for _, o := range opts {
		if strings.HasPrefix(o, "cache-dir=") {
			o = "cache-dir=" + dir
		}
		out = append(out, o)
	}
	return out
}
