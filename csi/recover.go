package csi

import (
	"context"
	"errors"
	"os"

	"github.com/sirupsen/logrus"
)

// Recover looks after the mounts of the state directory, made by this
// process or an earlier one (the driver was restarted, upgraded or
// killed), when the driver starts:
//   - a mount that serves is left alone: its daemon never depended on the
//     driver;
//   - a dead mount (its daemon was OOM-killed or crashed while the driver
//     was away) is detached (umount -l) and mounted again from its state
//     and credentials file, so nobody has to `umount` by hand
//     (k8s-csi-s3 #86, #156). New pods, and containers that restart, see
//     the new mount; a running container keeps its bind of the dead one
//     (ENOTCONN) until it restarts: the new mount is attached beside the
//     dead one's place in the host's tree, not inside it, so mount
//     propagation does not carry it into the container. A liveness probe
//     that reads the volume restarts such a container;
//   - a target that is no longer mounted and whose directory is gone (its
//     pod was removed while the driver was away) has its state removed;
//     one whose directory is still there keeps it, for the kubelet's next
//     NodePublishVolume or NodeUnpublishVolume.
//
// A target being looked after is locked: a NodePublishVolume or
// NodeUnpublishVolume of it meanwhile answers Aborted and is retried.
func (d *Driver) Recover(ctx context.Context) {
	states, err := d.state.all()
	if err != nil {
		d.log.WithError(err).Warn("reading the published volumes' state")
	}
	for _, st := range states {
		if ctx.Err() != nil {
			return
		}
		d.recoverOne(ctx, st)
	}
}

func (d *Driver) recoverOne(ctx context.Context, st *publishState) {
	log := d.log.WithFields(logrus.Fields{"volume_id": st.VolumeID, "target": st.Target})
	unlock, err := d.ops.lock("target " + st.Target)
	if err != nil {
		return // a call of the kubelet is at it already
	}
	defer unlock()
	// The state may have changed before the lock was taken.
	if cur, err := d.state.load(targetKey(st.Target)); err != nil || cur == nil {
		return
	} else {
		st = cur
	}
	ms, err := d.mounts().check(st.Target)
	switch ms {
	case serving:
		log.WithFields(logrus.Fields{"unit": st.Unit, "pid": st.PID}).Info("mount still serving")
	case dead:
		log.Warn("dead mount (its daemon is gone): detaching it and mounting again")
		if err := d.mounts().unmountAll(st.Target, true); err != nil {
			log.WithError(err).Error("detaching the dead mount")
			return
		}
		if st.Credentials != "" {
			if _, err := os.Stat(st.Credentials); err != nil {
				log.WithError(err).Error("the credentials file is gone: the next NodePublishVolume mounts it")
				return
			}
		}
		if err := d.mount(ctx, st, log); err != nil {
			log.WithError(err).Error("mounting again")
		}
	case notMounted:
		if err != nil {
			log.WithError(err).Warn("checking the mount")
			return
		}
		if _, err := os.Stat(st.Target); errors.Is(err, os.ErrNotExist) {
			log.Info("target gone while the driver was away: forgetting it")
			d.state.remove(targetKey(st.Target))
			return
		}
		log.Info("published but not mounted (the node rebooted?): left for the kubelet's next call")
	default:
		log.WithError(err).WithField("state", ms.String()).Warn("the target's mount is not bucketfs's or does not answer: left alone")
	}
}
