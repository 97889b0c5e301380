package main

import (
	"strings"
	"testing"
)

// TestCSIFlags: `bucketfs csi` parses its flags without serving (the run
// function is injected): defaults, the node id it needs with the node
// service, the mounters it knows; and `bucketfs csi ...` is never taken
// for a mount helper call.
func TestCSIFlags(t *testing.T) {
	parse := func(args ...string) (*csiOptions, error) {
		var got *csiOptions
		c := newCSICmd(func(o *csiOptions) error { got = o; return nil })
		c.SetArgs(args)
		c.SilenceErrors, c.SilenceUsage = true, true
		return got, c.Execute()
	}
	o, err := parse("--endpoint", "unix:///csi/csi.sock", "--node-id", "n1")
	if err != nil {
		t.Fatal(err)
	}
	if !o.Controller || !o.Node || o.Mounter != "auto" || o.StateDir != "/var/lib/bucketfs-csi" || o.NodeID != "n1" {
		t.Errorf("defaults %+v", o)
	}
	if o, err = parse("--node=false"); err != nil || o.Node || !o.Controller {
		t.Errorf("controller only: %+v %v", o, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--node-id is required"},
		{[]string{"--node-id", "n", "--mounter", "docker"}, "not auto, systemd or process"},
		{[]string{"--controller=false", "--node=false"}, "nothing to serve"},
	} {
		if _, err := parse(tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
	if isHelperCall([]string{"csi", "--endpoint", "unix:///csi/csi.sock"}) {
		t.Error("bucketfs csi taken for a mount helper call")
	}
}
