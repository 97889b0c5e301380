package csi

import (
	"context"
	"os"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var _ csipb.IdentityServer = (*Driver)(nil)

// GetPluginInfo implements csipb.IdentityServer.
func (d *Driver) GetPluginInfo(context.Context, *csipb.GetPluginInfoRequest) (*csipb.GetPluginInfoResponse, error) {
	v := d.cfg.Version
	if v == "" {
		v = "dev"
	}
	return &csipb.GetPluginInfoResponse{Name: DriverName, VendorVersion: v}, nil
}

// GetPluginCapabilities implements csipb.IdentityServer: the controller
// service when it runs. Volumes are reachable from every node (no
// topology), and have no size to expand.
func (d *Driver) GetPluginCapabilities(context.Context, *csipb.GetPluginCapabilitiesRequest) (*csipb.GetPluginCapabilitiesResponse, error) {
	resp := &csipb.GetPluginCapabilitiesResponse{}
	if d.cfg.Controller {
		resp.Capabilities = append(resp.Capabilities, &csipb.PluginCapability{
			Type: &csipb.PluginCapability_Service_{Service: &csipb.PluginCapability_Service{
				Type: csipb.PluginCapability_Service_CONTROLLER_SERVICE,
			}},
		})
	}
	return resp, nil
}

// fuseDevice is what the node service cannot mount without.
var fuseDevice = "/dev/fuse"

// Probe implements csipb.IdentityServer: ready, unless the node service
// has no /dev/fuse to mount with (FailedPrecondition: the DaemonSet lacks
// the device or privileges).
func (d *Driver) Probe(context.Context, *csipb.ProbeRequest) (*csipb.ProbeResponse, error) {
	if d.cfg.Node {
		if _, err := os.Stat(fuseDevice); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "no FUSE device: %v", err)
		}
	}
	return &csipb.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
