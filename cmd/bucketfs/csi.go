package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/bucketfs/bucketfs/csi"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// csiOptions are the flags of `bucketfs csi`.
type csiOptions struct {
	Endpoint   string
	NodeID     string
	StateDir   string
	Mounter    string // auto, systemd or process
	Controller bool
	Node       bool
	LogLevel   string
	LogFormat  string
}

func newCSICmd(run func(*csiOptions) error) *cobra.Command {
	o := &csiOptions{}
	c := &cobra.Command{
		Use:   "csi --endpoint unix:///csi/csi.sock --node-id NODE",
		Short: "Serve the Kubernetes CSI driver " + csi.DriverName,
		Long: `Serve the CSI driver ` + csi.DriverName + ` on --endpoint: the Identity service,
the Controller service (dynamic provisioning; --controller) and the Node
service (mounts; --node). Kubernetes runs the controller in a Deployment with
the csi-provisioner sidecar (--node=false) and the node service in a
DaemonSet (--controller=false).

The node service runs each mount's bucketfs daemon outside its own process
tree, so restarting or upgrading the driver leaves the mounts serving:
--mounter systemd runs each as a transient unit of the host's systemd (the
DaemonSet mounts the host's /run/systemd); --mounter process runs the mount
helper, whose daemon leaves the driver's session (for hosts without systemd:
it outlives the driver process, not its container); auto picks systemd when
/run/systemd/system exists. --state-dir must be a host directory at the
same path inside the container: it holds each published volume's state and
credentials file (0600) and, for systemd units, a copy of this binary.

Credentials come only from the Kubernetes secrets of each request
(accessKeyID, secretAccessKey, optional sessionToken), never from flags.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !o.Controller && !o.Node {
				return fmt.Errorf("--controller=false and --node=false: nothing to serve")
			}
			if o.Node && o.NodeID == "" {
				return fmt.Errorf("--node-id is required with the node service (in a DaemonSet: the node's name, from spec.nodeName)")
			}
			switch o.Mounter {
			case "auto", "systemd", "process":
			default:
				return fmt.Errorf("--mounter: %q is not auto, systemd or process", o.Mounter)
			}
			return run(o)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.Endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint: unix:///path/to/csi.sock or tcp://host:port")
	fl.StringVar(&o.NodeID, "node-id", "", "this node's id (the Kubernetes node name); required with --node")
	fl.StringVar(&o.StateDir, "state-dir", "/var/lib/bucketfs-csi", "host directory for published volumes' state and credentials, at the same path in the container")
	fl.StringVar(&o.Mounter, "mounter", "auto", "where mount daemons run: systemd (transient units on the host), process (mount helper, own session) or auto")
	fl.BoolVar(&o.Controller, "controller", true, "serve the Controller service (CreateVolume, DeleteVolume)")
	fl.BoolVar(&o.Node, "node", true, "serve the Node service (NodePublishVolume, NodeUnpublishVolume)")
	fl.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	return c
}

// runCSI serves the driver until SIGINT or SIGTERM. Mounts stay.
func runCSI(o *csiOptions) error {
	log, err := newLogger(&mountOptions{LogLevel: o.LogLevel, LogFormat: o.LogFormat})
	if err != nil {
		return err
	}
	cfg := csi.Config{Version: version, Controller: o.Controller, Node: o.Node, NodeID: o.NodeID, StateDir: o.StateDir, Log: log}
	if o.Node {
		if cfg.Mounter, err = newMounter(o, log); err != nil {
			return err
		}
	}
	d, err := csi.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return d.Run(ctx, o.Endpoint)
}

// newMounter builds the mounter --mounter names. The systemd mounter's
// units run a copy of this binary in the state directory, on the host.
func newMounter(o *csiOptions, log *logrus.Logger) (csi.Mounter, error) {
	kind := o.Mounter
	if kind == "auto" {
		kind = csi.AutoMounter()
	}
	if kind == "process" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		return &csi.ProcessMounter{Exe: exe, Env: os.Environ()}, nil
	}
	if err := csi.CheckSystemd(); err != nil {
		return nil, err
	}
	bin, err := csi.InstallBinary(filepath.Join(o.StateDir, "bin"))
	if err != nil {
		return nil, err
	}
	log.WithField("binary", bin).Info("systemd units run this copy of bucketfs")
	return csi.NewSystemdMounter(bin), nil
}
