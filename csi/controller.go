package csi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/bucketfs/bucketfs/store"
	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The controller provisions volumes in the store: a prefix of a shared
// bucket (marked by its "prefix/" directory marker object), or a bucket
// of its own (marked by markerKey in it). The marker's user metadata names
// the volume, its id and a digest of its parameters: CreateVolume called
// again with the same name finds it (idempotency) or refuses other
// parameters (AlreadyExists), and DeleteVolume removes only what a marker
// of that very volume id vouches for. The controller keeps no state of its
// own: it runs as a Deployment that can move freely.

var _ csipb.ControllerServer = (*Driver)(nil)

// Marker object and its metadata (user metadata keys are lower case).
const (
	markerKey     = ".bucketfs-csi-volume" // in a volume's own bucket
	metaName      = "csi-volume-name"
	metaID        = "csi-volume-id"
	metaParams    = "csi-parameters"
	markerContent = "bucketfs CSI volume marker: deleting the volume deletes this bucket\n"
)

// StorageClass parameters.
const (
	paramBucket       = "bucket"
	paramPrefix       = "prefix"
	paramEndpoint     = "endpoint"
	paramRegion       = "region"
	paramPathStyle    = "pathStyle"
	paramNewBucket    = "newBucket"
	paramMountOptions = "mountOptions"
	// paramPVCName is passed by the external-provisioner with
	// --extra-create-metadata.
	paramPVCName = "csi.storage.k8s.io/pvc/name"
)

// createParams are a CreateVolume's StorageClass parameters, checked.
type createParams struct {
	Bucket       string // a shared bucket; with NewBucket, the new bucket's name prefix
	Prefix       string // "" or ends in "/"
	NewBucket    bool
	Endpoint     string
	Region       string
	PathStyle    string // "true", "false" or ""
	MountOptions string // canonical
	PVCName      string
}

// parseCreateParams checks parameters. Keys with a '/' (csi.storage.k8s.io/
// and the like) are Kubernetes' and ignored but for the PVC name; any
// other unknown key is refused, so a typo fails the PVC instead of being
// silently dropped.
func parseCreateParams(params map[string]string) (createParams, error) {
	var p createParams
	var err error
	for k, v := range params {
		switch k {
		case paramBucket:
			p.Bucket = strings.TrimSpace(v)
		case paramPrefix:
			if p.Prefix, err = normalizePrefix(strings.TrimSpace(v)); err != nil {
				return p, err
			}
		case paramEndpoint:
			p.Endpoint = strings.TrimSpace(v)
		case paramRegion:
			p.Region = strings.TrimSpace(v)
		case paramPathStyle:
			if p.PathStyle, err = parseBool(k, v); err != nil {
				return p, err
			}
		case paramNewBucket:
			b, err := parseBool(k, v)
			if err != nil {
				return p, err
			}
			p.NewBucket = b == "true"
		case paramMountOptions:
			flags, err := parseMountOptions(v)
			if err != nil {
				return p, err
			}
			p.MountOptions = formatMountOptions(flags)
		case paramPVCName:
			p.PVCName = v
		default:
			if !strings.Contains(k, "/") {
				return p, fmt.Errorf("unknown parameter %q (known: bucket, prefix, newBucket, endpoint, region, pathStyle, mountOptions)", k)
			}
		}
	}
	switch {
	case !p.NewBucket && p.Bucket == "":
		return p, fmt.Errorf("parameter %q is required (or newBucket: \"true\")", paramBucket)
	case !p.NewBucket:
		if err := checkBucketName(p.Bucket); err != nil {
			return p, err
		}
	case p.Prefix != "":
		return p, fmt.Errorf("parameters %q and %q do not go together: a new bucket holds the volume at its root", paramPrefix, paramNewBucket)
	}
	if err := checkEndpoint(p.Endpoint); err != nil {
		return p, err
	}
	return p, checkRegion(p.Region)
}

// volume places the volume named name (or its PVC's name, when given).
func (p createParams) volume(name string) (volume, error) {
	n := name
	if p.PVCName != "" {
		n = p.PVCName
	}
	v := volume{Endpoint: p.Endpoint, Region: p.Region, PathStyle: p.PathStyle}
	if p.NewBucket {
		v.Bucket, v.OwnBucket = bucketName(p.Bucket, n), true
		return v, nil
	}
	v.Bucket = p.Bucket
	return fitPrefix(v, p.Prefix, keyName(n))
}

// digest sums up what must match for CreateVolume to return an existing
// volume: parameters and capacity.
func (p createParams) digest(required, limit int64) string {
	s := strings.Join([]string{p.Bucket, p.Prefix, strconv.FormatBool(p.NewBucket), p.Endpoint, p.Region,
		p.PathStyle, p.MountOptions, strconv.FormatInt(required, 10), strconv.FormatInt(limit, 10)}, "\x00")
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:12])
}

// volumeContext is what NodePublishVolume will get for v.
func (p createParams) volumeContext(v volume) map[string]string {
	c := map[string]string{paramBucket: v.Bucket}
	add := func(k, val string) {
		if val != "" {
			c[k] = val
		}
	}
	add(paramPrefix, v.Prefix)
	add(paramEndpoint, v.Endpoint)
	add(paramRegion, v.Region)
	add(paramPathStyle, v.PathStyle)
	add(paramMountOptions, p.MountOptions)
	return c
}

// supportedModes are the access modes a bucketfs volume serves: one node
// or many, read-write or read-only (ReadWriteOnce, ReadWriteMany,
// ReadOnlyMany). Many writers on many nodes is what S3 gives: each close
// stores a whole object, the last one wins (see the README's Writes).
var supportedModes = map[csipb.VolumeCapability_AccessMode_Mode]bool{
	csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER:      true,
	csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY: true,
	csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:  true,
	csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER: true,
}

// checkCapabilities refuses block volumes, a missing access type, mount
// flags outside the allow-list and access modes other than
// supportedModes.
func checkCapabilities(caps []*csipb.VolumeCapability) error {
	for _, c := range caps {
		if c == nil {
			return errors.New("a volume capability is empty")
		}
		if c.GetBlock() != nil {
			return errors.New("block volumes are not supported: bucketfs volumes are filesystems (volumeMode: Filesystem)")
		}
		if c.GetMount() == nil {
			return errors.New("a volume capability has no access type: want mount")
		}
		// A StorageClass's or PersistentVolume's mountOptions: refused
		// here already, rather than at the first mount.
		if _, err := parseMountOptions(strings.Join(c.GetMount().GetMountFlags(), ",")); err != nil {
			return err
		}
		if m := c.GetAccessMode().GetMode(); !supportedModes[m] {
			return fmt.Errorf("access mode %s is not supported (supported: SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY, MULTI_NODE_READER_ONLY, MULTI_NODE_MULTI_WRITER)", m)
		}
	}
	return nil
}

// CreateVolume implements csipb.ControllerServer.
func (d *Driver) CreateVolume(ctx context.Context, req *csipb.CreateVolumeRequest) (*csipb.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "volume name missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if req.GetVolumeContentSource() != nil {
		return nil, status.Error(codes.InvalidArgument, "volumes from snapshots or other volumes are not supported")
	}
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return nil, status.Errorf(codes.OutOfRange, "capacity range: required %d bytes, limit %d", required, limit)
	}
	p, err := parseCreateParams(req.GetParameters())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	v, err := p.volume(name)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	unlock, err := d.ops.lock("volume " + name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := d.storeFor(ctx, v, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	id := v.volumeID()
	meta := map[string]string{metaName: name, metaID: id, metaParams: p.digest(required, limit)}
	log := d.log.WithFields(logrus.Fields{"volume_id": id, "name": name})
	if v.OwnBucket {
		err = d.createBucketVolume(ctx, st, v, meta, log)
	} else {
		err = d.createPrefixVolume(ctx, st, v, meta, log)
	}
	if err != nil {
		return nil, err
	}
	// An S3 volume has no size: it holds what the store accepts. The
	// capacity asked for is what is reported (so the PV shows the PVC's
	// request); 0 when none was.
	capacity := required
	if capacity == 0 {
		capacity = limit
	}
	return &csipb.CreateVolumeResponse{Volume: &csipb.Volume{
		VolumeId:      id,
		CapacityBytes: capacity,
		VolumeContext: p.volumeContext(v),
	}}, nil
}

// storeFor builds the store client that reaches v with secrets.
func (d *Driver) storeFor(ctx context.Context, v volume, secrets map[string]string) (ObjectStore, error) {
	sc, err := storeConfig(v, secrets)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	st, err := d.cfg.NewStore(ctx, sc)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "S3 client: %v", err)
	}
	return st, nil
}

// createPrefixVolume makes v's prefix: its directory marker, carrying
// meta, in a prefix that must hold nothing yet.
func (d *Driver) createPrefixVolume(ctx context.Context, st ObjectStore, v volume, meta map[string]string, log *logrus.Entry) error {
	obj, err := st.Head(ctx, v.Bucket, v.Prefix)
	if err == nil {
		return sameVolume(obj, v.Bucket+"/"+v.Prefix, meta)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return storeStatus(err)
	}
	page, err := st.List(ctx, store.ListInput{Bucket: v.Bucket, Prefix: v.Prefix, MaxKeys: 1})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Errorf(codes.FailedPrecondition, "bucket %s does not exist (create it, or set newBucket: \"true\")", v.Bucket)
	case err != nil:
		return storeStatus(err)
	case len(page.Objects)+len(page.Prefixes)+len(page.Skipped) > 0:
		return status.Errorf(codes.AlreadyExists, "%s/%s already holds objects that are no volume's: not taking it over (use a static PersistentVolume for existing data)", v.Bucket, v.Prefix)
	}
	if err := putMarker(ctx, st, v.Bucket, v.Prefix, nil, meta); err != nil {
		if errors.Is(err, store.ErrPreconditionFailed) {
			// Made meanwhile by a concurrent call.
			obj, herr := st.Head(ctx, v.Bucket, v.Prefix)
			if herr != nil {
				return storeStatus(herr)
			}
			return sameVolume(obj, v.Bucket+"/"+v.Prefix, meta)
		}
		return storeStatus(err)
	}
	log.WithFields(logrus.Fields{"bucket": v.Bucket, "prefix": v.Prefix}).Info("volume created")
	return nil
}

// createBucketVolume makes v's bucket and its marker. A bucket that exists
// already is taken only when it is the caller's own and empty: what an
// earlier, interrupted CreateVolume of this volume leaves.
func (d *Driver) createBucketVolume(ctx context.Context, st ObjectStore, v volume, meta map[string]string, log *logrus.Entry) error {
	obj, err := st.Head(ctx, v.Bucket, markerKey)
	if err == nil {
		return sameVolume(obj, v.Bucket, meta)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return storeStatus(err)
	}
	if err := st.CreateBucket(ctx, v.Bucket); err != nil {
		if !errors.Is(err, store.ErrBucketExists) {
			return storeStatus(err)
		}
		if store.ErrorCode(err) != "BucketAlreadyOwnedByYou" {
			return status.Errorf(codes.AlreadyExists, "bucket name %s is taken by another account", v.Bucket)
		}
	}
	page, err := st.List(ctx, store.ListInput{Bucket: v.Bucket, MaxKeys: 1})
	if err != nil {
		return storeStatus(err)
	}
	if len(page.Objects)+len(page.Prefixes)+len(page.Skipped) > 0 {
		return status.Errorf(codes.AlreadyExists, "bucket %s already exists and holds objects that are no volume's: not taking it over", v.Bucket)
	}
	if err := putMarker(ctx, st, v.Bucket, markerKey, []byte(markerContent), meta); err != nil {
		if errors.Is(err, store.ErrPreconditionFailed) {
			obj, herr := st.Head(ctx, v.Bucket, markerKey)
			if herr != nil {
				return storeStatus(herr)
			}
			return sameVolume(obj, v.Bucket, meta)
		}
		return storeStatus(err)
	}
	log.WithField("bucket", v.Bucket).Info("volume created (a bucket of its own)")
	return nil
}

// putMarker stores a marker only where none is (If-None-Match: *, or a
// plain PUT on a server without conditional writes).
func putMarker(ctx context.Context, st ObjectStore, bucket, key string, body []byte, meta map[string]string) error {
	in := store.PutInput{Bucket: bucket, Key: key, Body: bytes.NewReader(body), Size: int64(len(body)), Metadata: meta, IfNoneMatch: true}
	_, err := st.Put(ctx, in)
	if errors.Is(err, store.ErrNotImplemented) {
		in.IfNoneMatch = false
		in.Body = bytes.NewReader(body)
		_, err = st.Put(ctx, in)
	}
	return err
}

// metaGet reads user metadata case-insensitively (servers differ).
func metaGet(m map[string]string, key string) string {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// sameVolume checks that an existing marker at where is the volume meta
// describes: same name and same parameters, else AlreadyExists.
func sameVolume(marker *store.Object, where string, meta map[string]string) error {
	name := metaGet(marker.Metadata, metaName)
	switch {
	case name == "":
		return status.Errorf(codes.AlreadyExists, "%s already exists and is no volume's", where)
	case name != meta[metaName]:
		return status.Errorf(codes.AlreadyExists, "%s already holds volume %q (another PVC of the same name in another namespace?)", where, name)
	case metaGet(marker.Metadata, metaParams) != meta[metaParams]:
		return status.Errorf(codes.AlreadyExists, "volume %q exists with other parameters or capacity", name)
	}
	return nil
}

// DeleteVolume implements csipb.ControllerServer. It removes every key of
// a prefix volume and then its marker, or empties a volume's own bucket
// and removes it. Deleting what is gone already succeeds, and so does an
// id this driver never made (nothing of it to delete).
func (d *Driver) DeleteVolume(ctx context.Context, req *csipb.DeleteVolumeRequest) (*csipb.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	}
	v, ok := parseVolumeID(id)
	if !ok {
		d.log.WithField("volume_id", id).Info("not a volume id of this driver: nothing to delete")
		return &csipb.DeleteVolumeResponse{}, nil
	}
	unlock, err := d.ops.lock("volume " + id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := d.storeFor(ctx, v, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	key := v.Prefix
	if v.OwnBucket {
		key = markerKey
	}
	marker, err := st.Head(ctx, v.Bucket, key)
	switch {
	case err == nil:
		if got := metaGet(marker.Metadata, metaID); got != id {
			return nil, status.Errorf(codes.FailedPrecondition, "the marker of %s/%s names volume %q, not this one: not deleting", v.Bucket, key, got)
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, storeStatus(err)
	case !v.OwnBucket:
		// The marker goes last: without it, the volume is gone.
		return &csipb.DeleteVolumeResponse{}, nil
	default:
		// An own bucket without its marker: no object in it is vouched
		// for (a bucket of that name made by someone else, or the empty
		// bucket a delete interrupted after the marker, which goes last,
		// leaves). Only the bucket itself is removed, which the store
		// refuses unless it is empty.
		if err := st.DeleteBucket(ctx, v.Bucket); err != nil && !errors.Is(err, store.ErrNotFound) {
			if store.ErrorCode(err) == "BucketNotEmpty" {
				return nil, status.Errorf(codes.FailedPrecondition, "bucket %s holds objects but no marker of volume %q: not deleting them", v.Bucket, id)
			}
			return nil, storeStatus(err)
		}
		return &csipb.DeleteVolumeResponse{}, nil
	}
	log := d.log.WithFields(logrus.Fields{"volume_id": id, "bucket": v.Bucket, "prefix": v.Prefix})
	// The marker goes last, once the rest is gone: a delete interrupted
	// before it is finished by the next call.
	n, err := deleteKeys(ctx, st, v.Bucket, v.Prefix, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) && v.OwnBucket {
			return &csipb.DeleteVolumeResponse{}, nil // the bucket is gone
		}
		return nil, storeStatus(err)
	}
	if err := st.DeleteKeys(ctx, v.Bucket, []string{key}); err != nil {
		return nil, storeStatus(err)
	}
	if v.OwnBucket {
		if err := st.DeleteBucket(ctx, v.Bucket); err != nil && !errors.Is(err, store.ErrNotFound) {
			if store.ErrorCode(err) == "BucketNotEmpty" {
				return nil, status.Errorf(codes.FailedPrecondition, "bucket %s is not empty after deleting its %d objects and its marker (object versions, or uploads left open?): %v", v.Bucket, n+1, err)
			}
			return nil, storeStatus(err)
		}
		log.WithField("objects", n+1).Info("volume deleted (its bucket and every object in it)")
		return &csipb.DeleteVolumeResponse{}, nil
	}
	log.WithField("objects", n).Info("volume deleted (every object under its prefix, then its marker)")
	return &csipb.DeleteVolumeResponse{}, nil
}

// deleteKeys removes every key under prefix in bucket but keep, a page of
// up to 1,000 at a time, and returns how many. It passes over the keys
// again until a pass finds none (a writer that was still busy). Keys the
// listing could not name (see store.ListPage.Skipped) cannot be deleted by
// name and fail the call, naming one.
func deleteKeys(ctx context.Context, st ObjectStore, bucket, prefix, keep string) (int, error) {
	total := 0
	for pass := 0; pass < 5; pass++ {
		found := 0
		token := ""
		for {
			page, err := st.List(ctx, store.ListInput{Bucket: bucket, Prefix: prefix, Token: token})
			if err != nil {
				return total, err
			}
			if len(page.Skipped) > 0 {
				return total, fmt.Errorf("%s/%s holds keys the driver cannot name, such as %q: delete them by hand", bucket, prefix, page.Skipped[0])
			}
			keys := make([]string, 0, len(page.Objects))
			for _, o := range page.Objects {
				if o.Key != keep {
					keys = append(keys, o.Key)
				}
			}
			if len(keys) > 0 {
				if err := st.DeleteKeys(ctx, bucket, keys); err != nil {
					return total, err
				}
			}
			found += len(keys)
			if page.NextToken == "" {
				break
			}
			token = page.NextToken
		}
		total += found
		if found == 0 {
			return total, nil
		}
	}
	return total, fmt.Errorf("%s/%s: objects keep appearing while the volume is deleted", bucket, prefix)
}

// storeStatus turns a store error into a gRPC status the provisioner
// understands: PermissionDenied for refused credentials or access,
// Unavailable for a store that cannot be reached or throttles (retried),
// NotFound, DeadlineExceeded, else Internal.
func storeStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, store.ErrAccessDenied):
		code = codes.PermissionDenied
	case errors.Is(err, store.ErrUnreachable), errors.Is(err, store.ErrThrottled):
		code = codes.Unavailable
	case errors.Is(err, store.ErrNotFound):
		code = codes.NotFound
	}
	return status.Error(code, err.Error())
}

// ValidateVolumeCapabilities implements csipb.ControllerServer: the
// volume must exist (its marker is there) and every capability be
// supported.
func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csipb.ValidateVolumeCapabilitiesRequest) (*csipb.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	v, ok := parseVolumeID(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %q is not a volume of this driver", id)
	}
	st, err := d.storeFor(ctx, v, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	key := v.Prefix
	if v.OwnBucket {
		key = markerKey
	}
	if _, err := st.Head(ctx, v.Bucket, key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "volume %q does not exist", id)
		}
		return nil, storeStatus(err)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csipb.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csipb.ValidateVolumeCapabilitiesResponse{Confirmed: &csipb.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// ControllerGetCapabilities implements csipb.ControllerServer: creating
// and deleting volumes, nothing else (no attach step, no snapshots, no
// expansion: an S3 volume has no size).
func (d *Driver) ControllerGetCapabilities(context.Context, *csipb.ControllerGetCapabilitiesRequest) (*csipb.ControllerGetCapabilitiesResponse, error) {
	return &csipb.ControllerGetCapabilitiesResponse{Capabilities: []*csipb.ControllerServiceCapability{{
		Type: &csipb.ControllerServiceCapability_Rpc{Rpc: &csipb.ControllerServiceCapability_RPC{
			Type: csipb.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		}},
	}}}, nil
}
