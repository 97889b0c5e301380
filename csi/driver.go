package csi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DriverName is the CSI driver's name: a CSIDriver object, StorageClasses'
// provisioner and PersistentVolumes' spec.csi.driver say it.
const DriverName = "csi.bucketfs.dev"

// Config configures a Driver.
type Config struct {
	// Version is reported by GetPluginInfo.
	Version string
	// Controller serves the Controller service (dynamic provisioning);
	// Node serves the Node service (mounts). At least one.
	Controller, Node bool

	// Node service
	NodeID string
	// StateDir holds the state of each published volume, its credentials
	// file and, for the systemd mounter, the bucketfs binary the units
	// run. It must be on the host, at the same path inside the driver's
	// container as on the host (a hostPath volume).
	StateDir string
	Mounter  Mounter
	// MountTimeout bounds one mount (default 60 s).
	MountTimeout time.Duration

	// Controller service
	NewStore NewStoreFunc

	Log *logrus.Logger
}

// Driver serves the CSI services.
type Driver struct {
	csipb.UnimplementedIdentityServer
	csipb.UnimplementedControllerServer
	csipb.UnimplementedNodeServer

	// Dependencies
	checker *mountChecker // nil: the kernel's (tests stand in)

	// serveWait bounds the wait, after a mount, for the kernel to show it
	// serving (default 5 s).
	serveWait time.Duration

	// Constant data
	cfg   Config
	log   *logrus.Entry
	state *stateDir // nil without the node service

	// Mutable state
	ops keyLocks // one operation at a time per volume name or target path
}

// New checks cfg and returns a driver; with the node service it creates
// the state directory.
func New(cfg Config) (*Driver, error) {
	if !cfg.Controller && !cfg.Node {
		return nil, errors.New("neither the controller nor the node service is enabled")
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.MountTimeout == 0 {
		cfg.MountTimeout = 60 * time.Second
	}
	d := &Driver{cfg: cfg, log: cfg.Log.WithField("component", "csi"), serveWait: 5 * time.Second}
	if cfg.Node {
		if cfg.NodeID == "" {
			return nil, errors.New("the node service needs a node id (--node-id)")
		}
		if cfg.Mounter == nil {
			return nil, errors.New("the node service needs a mounter")
		}
		st, err := openStateDir(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		d.state = st
	}
	if cfg.Controller && cfg.NewStore == nil {
		d.cfg.NewStore = NewS3Store
	}
	return d, nil
}

// Register adds the enabled services to srv.
func (d *Driver) Register(srv *grpc.Server) {
	csipb.RegisterIdentityServer(srv, d)
	if d.cfg.Controller {
		csipb.RegisterControllerServer(srv, d)
	}
	if d.cfg.Node {
		csipb.RegisterNodeServer(srv, d)
	}
}

// Listen opens a CSI endpoint: unix:///path/csi.sock (a stale socket file
// is removed first) or tcp://host:port.
func Listen(endpoint string) (net.Listener, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %v", endpoint, err)
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if p == "" {
			p = u.Opaque // unix:relative/path
		}
		if p == "" {
			return nil, fmt.Errorf("endpoint %q: no socket path", endpoint)
		}
		if err := os.MkdirAll(path.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing the old socket: %v", err)
		}
		return net.Listen("unix", p)
	case "tcp":
		return net.Listen("tcp", u.Host)
	}
	return nil, fmt.Errorf("endpoint %q: want unix:///path or tcp://host:port", endpoint)
}

// Run serves on endpoint until ctx ends, then stops gracefully. With the
// node service it first looks after the mounts an earlier driver process
// made (see recover.go), in the background: a target being recovered
// answers Aborted until it is done, and the kubelet retries.
// Mounts stay when the driver stops: that is the point.
func (d *Driver) Run(ctx context.Context, endpoint string) error {
	l, err := Listen(endpoint)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(d.logRPC))
	d.Register(srv)
	if d.cfg.Node {
		go d.Recover(ctx)
	}
	d.log.WithFields(logrus.Fields{"endpoint": endpoint, "controller": d.cfg.Controller, "node": d.cfg.Node,
		"node_id": d.cfg.NodeID, "mounter": d.mounterName(), "version": d.cfg.Version}).Info("serving CSI")
	go func() {
		<-ctx.Done()
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			srv.Stop()
		}
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

func (d *Driver) mounterName() string {
	if d.cfg.Mounter == nil {
		return ""
	}
	return d.cfg.Mounter.Name()
}

// quietMethods are called every few seconds by the liveness probe and the
// sidecars; they carry no volume and are logged at debug, not info.
var quietMethods = map[string]bool{
	"Probe": true, "GetPluginInfo": true, "GetPluginCapabilities": true,
	"ControllerGetCapabilities": true, "NodeGetCapabilities": true, "NodeGetInfo": true,
}

// logRPC logs each call with what names its subject (volume id, name,
// target path), how long it took and its result. Requests are never
// logged whole: they carry secrets.
func (d *Driver) logRPC(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	f := logrus.Fields{"rpc": method, "took": time.Since(start).Round(time.Millisecond)}
	if r, ok := req.(interface{ GetVolumeId() string }); ok && r.GetVolumeId() != "" {
		f["volume_id"] = r.GetVolumeId()
	}
	if r, ok := req.(interface{ GetName() string }); ok && r.GetName() != "" {
		f["name"] = r.GetName()
	}
	if r, ok := req.(interface{ GetTargetPath() string }); ok && r.GetTargetPath() != "" {
		f["target"] = r.GetTargetPath()
	}
	if r, ok := resp.(*csipb.CreateVolumeResponse); ok && r.GetVolume() != nil {
		f["volume_id"] = r.GetVolume().GetVolumeId()
	}
	e := d.log.WithFields(f)
	switch {
	case err != nil:
		e.WithField("code", status.Code(err)).WithError(err).Info("rpc failed")
	case quietMethods[method]:
		e.Debug("rpc")
	default:
		e.Info("rpc")
	}
	return resp, err
}

// keyLocks lets one operation at a time work on a key (a volume name or
// id, a target path). A second one gets Aborted, which the CSI spec
// reserves for "an operation for this volume is already in progress": the
// caller retries.
type keyLocks struct {
	mu   sync.Mutex
	busy map[string]bool // GUARDED_BY(mu)
}

// lock takes key or fails with Aborted; the returned func releases it.
func (k *keyLocks) lock(key string) (func(), error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.busy[key] {
		return nil, status.Errorf(codes.Aborted, "an operation on %s is in progress", key)
	}
	if k.busy == nil {
		k.busy = map[string]bool{}
	}
	k.busy[key] = true
	return func() {
		k.mu.Lock()
		delete(k.busy, key)
		k.mu.Unlock()
	}, nil
}
