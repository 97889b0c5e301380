package csi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var testSecrets = map[string]string{"accessKeyID": "AKIDTEST", "secretAccessKey": "s3cr3t-key-value"}

func mountCap(mode csipb.VolumeCapability_AccessMode_Mode, flags ...string) *csipb.VolumeCapability {
	return &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{MountFlags: flags}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode},
	}
}

func rwx() *csipb.VolumeCapability {
	return mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
}

func createReq(name string, params map[string]string, size int64) *csipb.CreateVolumeRequest {
	return &csipb.CreateVolumeRequest{
		Name:               name,
		VolumeCapabilities: []*csipb.VolumeCapability{rwx()},
		CapacityRange:      &csipb.CapacityRange{RequiredBytes: size},
		Parameters:         params,
		Secrets:            testSecrets,
	}
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: %v, want %s", what, err, code)
	}
}

// TestCreateVolumePrefix: a volume is a fresh prefix named after the PVC,
// with a directory marker carrying its name and id; the same request again
// returns the same volume; the same name with another capacity or other
// parameters is AlreadyExists; a prefix holding objects of nobody's volume
// is not taken over; a missing bucket is FailedPrecondition; and the store
// is reached with the request's secret and the StorageClass's endpoint.
func TestCreateVolumePrefix(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, "media")
	params := map[string]string{"bucket": "media", "prefix": "vols", "endpoint": "http://127.0.0.1:9000",
		"pathStyle": "true", "csi.storage.k8s.io/pvc/name": "recordings"}
	resp, err := d.CreateVolume(ctx, createReq("pvc-1", params, 10<<30))
	if err != nil {
		t.Fatal(err)
	}
	vol := resp.GetVolume()
	if vol.GetCapacityBytes() != 10<<30 {
		t.Errorf("capacity %d", vol.GetCapacityBytes())
	}
	wantCtx := map[string]string{"bucket": "media", "prefix": "vols/recordings/", "endpoint": "http://127.0.0.1:9000", "pathStyle": "true"}
	if fmt.Sprint(vol.GetVolumeContext()) != fmt.Sprint(wantCtx) {
		t.Errorf("volume context %v, want %v", vol.GetVolumeContext(), wantCtx)
	}
	marker, err := d.store.Head(ctx, "media", "vols/recordings/")
	if err != nil {
		t.Fatalf("no marker: %v", err)
	}
	if marker.Metadata[metaName] != "pvc-1" || marker.Metadata[metaID] != vol.GetVolumeId() {
		t.Errorf("marker metadata %v", marker.Metadata)
	}
	if c := d.store.configs[0]; c.AccessKeyID != "AKIDTEST" || c.SecretAccessKey != "s3cr3t-key-value" || c.Endpoint != "http://127.0.0.1:9000" || !c.PathStyle {
		t.Errorf("store config %+v", c)
	}

	again, err := d.CreateVolume(ctx, createReq("pvc-1", params, 10<<30))
	if err != nil || again.GetVolume().GetVolumeId() != vol.GetVolumeId() {
		t.Errorf("second CreateVolume: %v %v, want the same volume", again, err)
	}
	_, err = d.CreateVolume(ctx, createReq("pvc-1", params, 20<<30))
	wantCode(t, "same name, other capacity", err, codes.AlreadyExists)
	other := map[string]string{"bucket": "media", "prefix": "vols", "endpoint": "http://127.0.0.1:9000",
		"pathStyle": "true", "csi.storage.k8s.io/pvc/name": "recordings", "mountOptions": "uid=1000"}
	_, err = d.CreateVolume(ctx, createReq("pvc-1", other, 10<<30))
	wantCode(t, "same name, other mount options", err, codes.AlreadyExists)
	// Another PVC of the same name (another namespace) lands on the same
	// prefix: refused, never shared.
	_, err = d.CreateVolume(ctx, createReq("pvc-2", params, 10<<30))
	wantCode(t, "another volume on the same prefix", err, codes.AlreadyExists)

	d.store.seed("media", "existing/data.bin", nil)
	_, err = d.CreateVolume(ctx, createReq("existing", map[string]string{"bucket": "media"}, 0))
	wantCode(t, "a prefix with foreign objects", err, codes.AlreadyExists)
	if keys := d.store.keys("media"); strings.Contains(strings.Join(keys, ","), "existing/,") {
		t.Errorf("a marker was put over foreign data: %v", keys)
	}
	_, err = d.CreateVolume(ctx, createReq("pvc-3", map[string]string{"bucket": "nosuch"}, 0))
	wantCode(t, "a missing bucket", err, codes.FailedPrecondition)

	// A server without If-None-Match still gets its marker.
	d.store.noIfNoneMatch = true
	if _, err := d.CreateVolume(ctx, createReq("pvc-4", map[string]string{"bucket": "media"}, 0)); err != nil {
		t.Errorf("without conditional writes: %v", err)
	}
}

// TestCreateVolumeErrors: the argument checks, each with its code.
func TestCreateVolumeErrors(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, "media")
	ok := map[string]string{"bucket": "media"}
	block := &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	for _, tt := range []struct {
		what string
		req  *csipb.CreateVolumeRequest
		code codes.Code
	}{
		{"no name", &csipb.CreateVolumeRequest{VolumeCapabilities: []*csipb.VolumeCapability{rwx()}, Parameters: ok}, codes.InvalidArgument},
		{"no capabilities", &csipb.CreateVolumeRequest{Name: "v", Parameters: ok}, codes.InvalidArgument},
		{"block", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{block}, Parameters: ok}, codes.InvalidArgument},
		{"single-node single-writer", &csipb.CreateVolumeRequest{Name: "v", Parameters: ok,
			VolumeCapabilities: []*csipb.VolumeCapability{mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)}}, codes.InvalidArgument},
		{"no bucket", createReq("v", map[string]string{}, 0), codes.InvalidArgument},
		{"a StorageClass mount option outside the allow-list", &csipb.CreateVolumeRequest{Name: "v", Parameters: ok,
			VolumeCapabilities: []*csipb.VolumeCapability{mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "uid=1000", "metrics-addr=:9100")}}, codes.InvalidArgument},
		{"required above limit", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{rwx()}, Parameters: ok,
			CapacityRange: &csipb.CapacityRange{RequiredBytes: 2, LimitBytes: 1}}, codes.OutOfRange},
		{"half a secret", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{rwx()}, Parameters: ok,
			Secrets: map[string]string{"accessKeyID": "AKID"}}, codes.InvalidArgument},
		{"from a snapshot", &csipb.CreateVolumeRequest{Name: "v", VolumeCapabilities: []*csipb.VolumeCapability{rwx()}, Parameters: ok,
			VolumeContentSource: &csipb.VolumeContentSource{}}, codes.InvalidArgument},
	} {
		_, err := d.CreateVolume(ctx, tt.req)
		wantCode(t, tt.what, err, tt.code)
	}
}

// TestCreateVolumeNewBucket: with newBucket, each volume is a bucket named
// after its PVC, with a marker object; CreateVolume again finds it; a
// bucket of the caller's own that holds objects, or a name another
// account holds, is AlreadyExists.
func TestCreateVolumeNewBucket(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	params := map[string]string{"newBucket": "true", "bucket": "homelab", "csi.storage.k8s.io/pvc/name": "Recordings"}
	resp, err := d.CreateVolume(ctx, createReq("pvc-9", params, 0))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := parseVolumeID(resp.GetVolume().GetVolumeId())
	if !ok || !v.OwnBucket || v.Bucket != "homelab-recordings" {
		t.Fatalf("volume %+v (id %q)", v, resp.GetVolume().GetVolumeId())
	}
	if !d.store.hasBucket("homelab-recordings") {
		t.Fatal("no bucket made")
	}
	if _, err := d.store.Head(ctx, "homelab-recordings", markerKey); err != nil {
		t.Errorf("no marker: %v", err)
	}
	if resp.GetVolume().GetVolumeContext()["prefix"] != "" {
		t.Errorf("context %v", resp.GetVolume().GetVolumeContext())
	}
	again, err := d.CreateVolume(ctx, createReq("pvc-9", params, 0))
	if err != nil || again.GetVolume().GetVolumeId() != resp.GetVolume().GetVolumeId() {
		t.Errorf("again: %v %v", again, err)
	}

	d.store.seed("homelab-full", "data", nil)
	_, err = d.CreateVolume(ctx, createReq("pvc-10", map[string]string{"newBucket": "true", "bucket": "homelab", "csi.storage.k8s.io/pvc/name": "full"}, 0))
	wantCode(t, "an own bucket with objects", err, codes.AlreadyExists)
	d.store.taken["theirs"] = true
	_, err = d.CreateVolume(ctx, createReq("pvc-11", map[string]string{"newBucket": "true", "csi.storage.k8s.io/pvc/name": "theirs"}, 0))
	wantCode(t, "a name another account holds", err, codes.AlreadyExists)
	// An empty bucket of our own (a CreateVolume interrupted before its
	// marker) is taken.
	d.store.seed("half", "x", nil)
	d.store.DeleteKeys(ctx, "half", []string{"x"})
	if _, err := d.CreateVolume(ctx, createReq("pvc-12", map[string]string{"newBucket": "true", "csi.storage.k8s.io/pvc/name": "half"}, 0)); err != nil {
		t.Errorf("an empty own bucket: %v", err)
	}
}

// TestDeleteVolume: a prefix volume's keys (2,500 of them, more than one
// listing page and one DeleteObjects) go, its marker last, and nothing
// outside its prefix; deleting again, or an id of no volume of ours,
// succeeds; a marker naming another volume id stops the delete; a
// volume's own bucket is emptied and removed.
func TestDeleteVolume(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, "media")
	resp, err := d.CreateVolume(ctx, createReq("pvc-1", map[string]string{"bucket": "media"}, 0))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	for i := range 2500 {
		d.store.seed("media", fmt.Sprintf("pvc-1/dir/f%04d", i), nil)
	}
	d.store.seed("media", "pvc-10/keep", nil) // a neighbour sharing the name's start
	d.store.seed("media", "pvc-1.txt", nil)
	if _, err := d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: id, Secrets: testSecrets}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.store.keys("media"), ","); got != "pvc-1.txt,pvc-10/keep" {
		t.Errorf("left after delete: %s", got)
	}
	if _, err := d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: id, Secrets: testSecrets}); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, err := d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: "fake-vol-id", Secrets: testSecrets}); err != nil {
		t.Errorf("delete of an id that is no volume of ours: %v", err)
	}
	_, err = d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{Secrets: testSecrets})
	wantCode(t, "no volume id", err, codes.InvalidArgument)

	// A marker naming another id: not ours to delete.
	forged := volume{Bucket: "media", Prefix: "other/"}
	d.store.seed("media", "other/", map[string]string{metaID: "1p|media|other/|x||"})
	d.store.seed("media", "other/file", nil)
	_, err = d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: forged.volumeID(), Secrets: testSecrets})
	wantCode(t, "a marker of another volume", err, codes.FailedPrecondition)
	if len(d.store.keys("media")) != 4 {
		t.Errorf("keys deleted despite the foreign marker: %v", d.store.keys("media"))
	}

	own, err := d.CreateVolume(ctx, createReq("pvc-own", map[string]string{"newBucket": "true"}, 0))
	if err != nil {
		t.Fatal(err)
	}
	d.store.seed("pvc-own", "a/b", nil)
	if _, err := d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: own.GetVolume().GetVolumeId(), Secrets: testSecrets}); err != nil {
		t.Fatal(err)
	}
	if d.store.hasBucket("pvc-own") {
		t.Error("the volume's own bucket is still there")
	}
	if _, err := d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: own.GetVolume().GetVolumeId(), Secrets: testSecrets}); err != nil {
		t.Errorf("second delete of an own bucket: %v", err)
	}
}

// TestValidateVolumeCapabilities: an existing volume's supported
// capabilities are confirmed, block is not; an unknown or deleted volume
// is NotFound; missing fields are InvalidArgument.
func TestValidateVolumeCapabilities(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, "media")
	resp, err := d.CreateVolume(ctx, createReq("pvc-1", map[string]string{"bucket": "media"}, 0))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	modes := []csipb.VolumeCapability_AccessMode_Mode{
		csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER,
	}
	for _, m := range modes {
		r, err := d.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: id, Secrets: testSecrets,
			VolumeCapabilities: []*csipb.VolumeCapability{mountCap(m)}})
		if err != nil || r.GetConfirmed() == nil {
			t.Errorf("%s: %v %v", m, r, err)
		}
	}
	block := &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	r, err := d.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: id, Secrets: testSecrets,
		VolumeCapabilities: []*csipb.VolumeCapability{block}})
	if err != nil || r.GetConfirmed() != nil || !strings.Contains(r.GetMessage(), "block") {
		t.Errorf("block: %v %v", r, err)
	}
	_, err = d.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: "fake-vol-id-1", Secrets: testSecrets,
		VolumeCapabilities: []*csipb.VolumeCapability{rwx()}})
	wantCode(t, "unknown id", err, codes.NotFound)
	d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: id, Secrets: testSecrets})
	_, err = d.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: id, Secrets: testSecrets,
		VolumeCapabilities: []*csipb.VolumeCapability{rwx()}})
	wantCode(t, "deleted volume", err, codes.NotFound)
	_, err = d.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: []*csipb.VolumeCapability{rwx()}})
	wantCode(t, "no id", err, codes.InvalidArgument)
	_, err = d.ValidateVolumeCapabilities(ctx, &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: id})
	wantCode(t, "no capabilities", err, codes.InvalidArgument)
}

// TestCapabilities: the identity and capability answers.
func TestCapabilities(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	info, _ := d.GetPluginInfo(ctx, nil)
	if info.GetName() != "csi.bucketfs.dev" || info.GetVendorVersion() != "test" {
		t.Errorf("plugin info %v", info)
	}
	pc, _ := d.GetPluginCapabilities(ctx, nil)
	if len(pc.GetCapabilities()) != 1 || pc.GetCapabilities()[0].GetService().GetType() != csipb.PluginCapability_Service_CONTROLLER_SERVICE {
		t.Errorf("plugin capabilities %v", pc)
	}
	cc, _ := d.ControllerGetCapabilities(ctx, nil)
	if len(cc.GetCapabilities()) != 1 || cc.GetCapabilities()[0].GetRpc().GetType() != csipb.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME {
		t.Errorf("controller capabilities %v", cc)
	}
	nc, _ := d.NodeGetCapabilities(ctx, nil)
	if got := fmt.Sprint(nc.GetCapabilities()); !strings.Contains(got, "GET_VOLUME_STATS") || !strings.Contains(got, "VOLUME_CONDITION") || len(nc.GetCapabilities()) != 2 {
		t.Errorf("node capabilities %v", got)
	}
	ni, _ := d.NodeGetInfo(ctx, nil)
	if ni.GetNodeId() != "node-1" {
		t.Errorf("node id %q", ni.GetNodeId())
	}
	d.cfg.Controller = false
	if pc, _ := d.GetPluginCapabilities(ctx, nil); len(pc.GetCapabilities()) != 0 {
		t.Errorf("node only: %v", pc)
	}
}

// TestKeyLocks: a second operation on a busy key is Aborted; another key,
// or the same one after release, goes ahead.
func TestKeyLocks(t *testing.T) {
	var k keyLocks
	unlock, err := k.lock("a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.lock("a")
	wantCode(t, "busy key", err, codes.Aborted)
	u2, err := k.lock("b")
	if err != nil {
		t.Fatal(err)
	}
	u2()
	unlock()
	if u, err := k.lock("a"); err != nil {
		t.Errorf("after release: %v", err)
	} else {
		u()
	}
}

// TestDeleteVolumeOwnBucketWithoutMarker: an own-bucket volume id whose
// bucket holds no marker (a bucket named like a volume, a static PV's
// handle in the id format, or a bucket re-created under a deleted
// volume's name) is not emptied: only a marker naming the id vouches for
// deleting objects. A bucket an interrupted delete left empty, its marker
// last to go, is still removed.
func TestDeleteVolumeOwnBucketWithoutMarker(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, "photos")
	d.store.seed("photos", "2024/img.jpg", nil)
	d.store.seed("photos", ".bucketfs-csi-volumx", nil)
	id := volume{Bucket: "photos", OwnBucket: true}.volumeID()
	_, err := d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: id, Secrets: testSecrets})
	wantCode(t, "a bucket without the volume's marker", err, codes.FailedPrecondition)
	if got := strings.Join(d.store.keys("photos"), ","); got != ".bucketfs-csi-volumx,2024/img.jpg" {
		t.Errorf("objects of a bucket without a marker were deleted; left: %q", got)
	}

	// The marker goes last: a delete interrupted before it leaves the
	// marker, and the retry finishes the job.
	own, err := d.CreateVolume(ctx, createReq("pvc-own", map[string]string{"newBucket": "true"}, 0))
	if err != nil {
		t.Fatal(err)
	}
	ownID := own.GetVolume().GetVolumeId()
	v, _ := parseVolumeID(ownID)
	d.store.seed(v.Bucket, "!early", nil) // sorts before the marker
	d.store.seed(v.Bucket, "z", nil)
	var order []string
	d.store.onDelete = func(keys []string) { order = append(order, keys...) }
	if _, err := d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: ownID, Secrets: testSecrets}); err != nil {
		t.Fatal(err)
	}
	if len(order) == 0 || order[len(order)-1] != markerKey {
		t.Errorf("delete order %v: the marker must go last", order)
	}
	if d.store.hasBucket(v.Bucket) {
		t.Error("the volume's own bucket is still there")
	}
	// An empty bucket without its marker (a delete interrupted between
	// the marker and the bucket) is removed.
	d.store.seed(v.Bucket, "x", nil)
	d.store.DeleteKeys(ctx, v.Bucket, []string{"x"})
	if _, err := d.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: ownID, Secrets: testSecrets}); err != nil {
		t.Errorf("empty bucket without marker: %v", err)
	}
	if d.store.hasBucket(v.Bucket) {
		t.Error("an empty bucket left by an interrupted delete is still there")
	}
}
