package csi

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// TestSecretsNeverLogged runs every RPC that carries secrets through the
// logging interceptor, successful and failing, with the log at debug, and
// checks that no secret value appears in the log, in a mount's command
// options or in an error, while the volume ids do appear in the log.
func TestSecretsNeverLogged(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, "media")
	secrets := map[string]string{"accessKeyID": "AKIDNEVERLOG", "secretAccessKey": "SECRETNEVERLOG", "sessionToken": "TOKENNEVERLOG"}
	call := func(method string, req any, h func(context.Context, any) (any, error)) (any, error) {
		return d.logRPC(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/csi.v1.X/" + method}, h)
	}
	var errs []error
	resp, err := call("CreateVolume", &csipb.CreateVolumeRequest{Name: "pvc-1", Parameters: map[string]string{"bucket": "media"},
		VolumeCapabilities: []*csipb.VolumeCapability{rwx()}, Secrets: secrets},
		func(ctx context.Context, r any) (any, error) {
			return d.CreateVolume(ctx, r.(*csipb.CreateVolumeRequest))
		})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.(*csipb.CreateVolumeResponse).GetVolume().GetVolumeId()
	target := filepath.Join(t.TempDir(), "t")
	for _, req := range []*csipb.NodePublishVolumeRequest{
		{VolumeId: id, TargetPath: target, VolumeCapability: rwx(), Secrets: secrets},
		{VolumeId: id, TargetPath: target + "2", VolumeCapability: rwx(), Secrets: secrets,
			VolumeContext: map[string]string{"bucket": "media", "mountOptions": "nope"}},
		{VolumeId: id, TargetPath: target + "3", VolumeCapability: rwx(),
			Secrets: map[string]string{"accessKeyID": "AKIDNEVERLOG", "secretAccessKey": "SECRETNEVERLOG\nx"}},
	} {
		_, err := call("NodePublishVolume", req, func(ctx context.Context, r any) (any, error) {
			return d.NodePublishVolume(ctx, r.(*csipb.NodePublishVolumeRequest))
		})
		errs = append(errs, err)
	}
	d.mounter.fail = errors.New("bucketfs: credentials rejected")
	_, err = call("NodePublishVolume", &csipb.NodePublishVolumeRequest{VolumeId: id, TargetPath: target + "4", VolumeCapability: rwx(), Secrets: secrets},
		func(ctx context.Context, r any) (any, error) {
			return d.NodePublishVolume(ctx, r.(*csipb.NodePublishVolumeRequest))
		})
	errs = append(errs, err)
	_, err = call("DeleteVolume", &csipb.DeleteVolumeRequest{VolumeId: id, Secrets: secrets},
		func(ctx context.Context, r any) (any, error) {
			return d.DeleteVolume(ctx, r.(*csipb.DeleteVolumeRequest))
		})
	errs = append(errs, err)
	_, err = call("ValidateVolumeCapabilities", &csipb.ValidateVolumeCapabilitiesRequest{VolumeId: id, Secrets: secrets, VolumeCapabilities: []*csipb.VolumeCapability{rwx()}},
		func(ctx context.Context, r any) (any, error) {
			return d.ValidateVolumeCapabilities(ctx, r.(*csipb.ValidateVolumeCapabilitiesRequest))
		})
	errs = append(errs, err)

	logs := d.logs.String()
	var seen []string
	for _, e := range errs {
		if e != nil {
			seen = append(seen, e.Error())
		}
	}
	for _, r := range d.mounter.calls() {
		seen = append(seen, strings.Join(r.Options, ","), r.Source, r.CredentialsFile)
	}
	all := logs + strings.Join(seen, "\n")
	for _, s := range []string{"AKIDNEVERLOG", "SECRETNEVERLOG", "TOKENNEVERLOG"} {
		if strings.Contains(all, s) {
			t.Errorf("secret %s leaked:\n%s", s, all)
		}
	}
	if !strings.Contains(logs, "volume_id=\""+id+"\"") || strings.Count(logs, "rpc=NodePublishVolume") != 4 {
		t.Errorf("every RPC is logged with its volume id:\n%s", logs)
	}
}
