package csi

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func publishReq(id, target string, attrs map[string]string) *csipb.NodePublishVolumeRequest {
	return &csipb.NodePublishVolumeRequest{
		VolumeId:         id,
		TargetPath:       target,
		VolumeCapability: rwx(),
		VolumeContext:    attrs,
		Secrets:          testSecrets,
	}
}

// TestNodePublishStatic: a static volume's attributes become the mount's
// source and flags (endpoint, region, path-style, the allowed
// mountOptions, the PV's mount flags, allow-other); the credentials go to
// a 0600 file passed by path; the state records the mount; publishing
// again does nothing; another volume at the same target is AlreadyExists.
func TestNodePublishStatic(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	target := filepath.Join(t.TempDir(), "pods", "uid", "volumes", "mount")
	attrs := map[string]string{"bucket": "media", "prefix": "sets/2024", "endpoint": "http://127.0.0.1:9000",
		"region": "us-east-1", "pathStyle": "true", "mountOptions": "cache-memory=256MiB,uid=1000",
		"csi.storage.k8s.io/pod.name": "player", "storage.kubernetes.io/csiProvisionerIdentity": "x"}
	req := publishReq("media-sets", target, attrs)
	req.VolumeCapability = mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "write-back", "cache-dir=/var/cache/bfs")
	if _, err := d.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	calls := d.mounter.calls()
	if len(calls) != 1 {
		t.Fatalf("%d mounts", len(calls))
	}
	r := calls[0]
	if r.Source != "s3://media/sets/2024" || r.Target != target {
		t.Errorf("source %q target %q", r.Source, r.Target)
	}
	wantOpts := []string{"allow-other", "cache-dir=/var/cache/bfs/vol-" + shortHash("media-sets"), "cache-memory=256MiB",
		"endpoint=http://127.0.0.1:9000", "path-style", "region=us-east-1", "uid=1000", "write-back"}
	if !slices.Equal(r.Options, wantOpts) {
		t.Errorf("options\n %v\nwant\n %v", r.Options, wantOpts)
	}
	fi, err := os.Stat(r.CredentialsFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(r.CredentialsFile)
	if string(b) != "[default]\naws_access_key_id = AKIDTEST\naws_secret_access_key = s3cr3t-key-value\n" {
		t.Errorf("credentials file:\n%s", b)
	}
	st, err := d.state.load(targetKey(target))
	if err != nil || st == nil || st.VolumeID != "media-sets" || st.PID != 4001 || st.Credentials != r.CredentialsFile {
		t.Errorf("state %+v %v", st, err)
	}

	if _, err := d.NodePublishVolume(ctx, req); err != nil {
		t.Errorf("second publish: %v", err)
	}
	if n := len(d.mounter.calls()); n != 1 {
		t.Errorf("second publish mounted again (%d mounts)", n)
	}
	_, err = d.NodePublishVolume(ctx, publishReq("other-volume", target, map[string]string{"bucket": "other"}))
	wantCode(t, "another volume at the target", err, codes.AlreadyExists)
	ro := publishReq("media-sets", target, attrs)
	ro.Readonly = true
	_, err = d.NodePublishVolume(ctx, ro)
	wantCode(t, "the same volume read-only at a read-write target", err, codes.AlreadyExists)
}

// TestNodePublishDynamic: a dynamic volume publishes from its id and
// context; read-only comes from the request or the access mode; without
// a secret no credentials file is written (the daemon's own chain); the
// endpoint may come from the secret.
func TestNodePublishDynamic(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t, "media")
	resp, err := d.CreateVolume(ctx, createReq("pvc-1", map[string]string{"bucket": "media", "region": "auto"}, 0))
	if err != nil {
		t.Fatal(err)
	}
	vol := resp.GetVolume()
	dir := t.TempDir()
	req := publishReq(vol.GetVolumeId(), filepath.Join(dir, "a"), vol.GetVolumeContext())
	req.Readonly = true
	req.Secrets = map[string]string{"accessKeyID": "AK", "secretAccessKey": "SK", "endpoint": "https://t3.storage.dev"}
	if _, err := d.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	req = publishReq(vol.GetVolumeId(), filepath.Join(dir, "b"), nil) // no context: the id says it all
	req.VolumeCapability = mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
	req.Secrets = nil
	if _, err := d.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	calls := d.mounter.calls()
	if got := calls[0].Options; !slices.Equal(got, []string{"allow-other", "endpoint=https://t3.storage.dev", "read-only", "region=auto"}) {
		t.Errorf("options %v", got)
	}
	if got := calls[1].Options; !slices.Equal(got, []string{"allow-other", "read-only", "region=auto"}) {
		t.Errorf("options from the id alone: %v", got)
	}
	if calls[0].Source != "s3://media/pvc-1" || calls[1].Source != "s3://media/pvc-1" {
		t.Errorf("sources %q %q", calls[0].Source, calls[1].Source)
	}
	if calls[1].CredentialsFile != "" {
		t.Errorf("a credentials file without a secret: %q", calls[1].CredentialsFile)
	}
}

// TestNodePublishErrors: missing fields, block, unknown attributes and
// options outside the allow-list are InvalidArgument, and mount nothing.
func TestNodePublishErrors(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	target := filepath.Join(t.TempDir(), "t")
	ok := map[string]string{"bucket": "media"}
	block := &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	for _, tt := range []struct {
		what string
		req  *csipb.NodePublishVolumeRequest
	}{
		{"no volume id", &csipb.NodePublishVolumeRequest{TargetPath: target, VolumeCapability: rwx(), VolumeContext: ok}},
		{"no target", &csipb.NodePublishVolumeRequest{VolumeId: "v", VolumeCapability: rwx(), VolumeContext: ok}},
		{"no capability", &csipb.NodePublishVolumeRequest{VolumeId: "v", TargetPath: target, VolumeContext: ok}},
		{"relative target", publishReq("v", "rel/path", ok)},
		{"block", &csipb.NodePublishVolumeRequest{VolumeId: "v", TargetPath: target, VolumeCapability: block, VolumeContext: ok}},
		{"no bucket", publishReq("v", target, map[string]string{"prefix": "x"})},
		{"unknown attribute", publishReq("v", target, map[string]string{"bucket": "media", "buckett": "x"})},
		{"endpoint in mountOptions", publishReq("v", target, map[string]string{"bucket": "media", "mountOptions": "endpoint=http://elsewhere"})},
		{"log-file in mountOptions", publishReq("v", target, map[string]string{"bucket": "media", "mountOptions": "log-file=/etc/cron.d/x"})},
		{"an unknown mount flag", &csipb.NodePublishVolumeRequest{VolumeId: "v", TargetPath: target, VolumeContext: ok,
			VolumeCapability: mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "no-such-flag")}},
		{"a secret with a line break", &csipb.NodePublishVolumeRequest{VolumeId: "v", TargetPath: target, VolumeCapability: rwx(), VolumeContext: ok,
			Secrets: map[string]string{"accessKeyID": "AK\n[evil]", "secretAccessKey": "x"}}},
	} {
		_, err := d.NodePublishVolume(ctx, tt.req)
		wantCode(t, tt.what, err, codes.InvalidArgument)
	}
	if n := len(d.mounter.calls()); n != 0 {
		t.Errorf("%d mounts for bad requests", n)
	}
}

// TestNodePublishDeadMount: a dead mount at the target (its daemon was
// killed) is detached lazily and mounted again by the next publish.
func TestNodePublishDeadMount(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	target := filepath.Join(t.TempDir(), "t")
	req := publishReq("v", target, map[string]string{"bucket": "media"})
	if _, err := d.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	d.kernel.kill(target)
	st, err := d.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: target})
	if err != nil || !st.GetVolumeCondition().GetAbnormal() || !strings.Contains(st.GetVolumeCondition().GetMessage(), "not connected") {
		t.Errorf("stats of a dead mount: %v %v", st, err)
	}
	if _, err := d.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := d.kernel.unmountLog(); !slices.Equal(got, []string{target + " lazy"}) {
		t.Errorf("unmounts %v, want one lazy unmount", got)
	}
	if n := len(d.mounter.calls()); n != 2 || d.kernel.depth(target) != 1 {
		t.Errorf("%d mounts, %d stacked at the target", n, d.kernel.depth(target))
	}
	st, err = d.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: target})
	if err != nil || st.GetVolumeCondition().GetAbnormal() {
		t.Errorf("stats after the remount: %v %v", st, err)
	}
}

// TestNodePublishFailures: a mount that fails, or that the mounter
// reports but the kernel does not show, leaves nothing mounted and no
// state or credentials behind, and fails the call (never an empty
// directory for the pod).
func TestNodePublishFailures(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	target := filepath.Join(t.TempDir(), "t")
	req := publishReq("v", target, map[string]string{"bucket": "media"})
	d.mounter.fail = errors.New("bucketfs: bucket media does not exist")
	_, err := d.NodePublishVolume(ctx, req)
	wantCode(t, "a failed mount", err, codes.Internal)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("the daemon's reason is lost: %v", err)
	}
	d.mounter.noMount = true
	_, err = d.NodePublishVolume(ctx, req)
	wantCode(t, "a mount the kernel does not show", err, codes.Internal)
	if len(d.mounter.abandoned) != 1 {
		t.Errorf("the daemon of the failed check was not abandoned: %v", d.mounter.abandoned)
	}
	entries, _ := os.ReadDir(filepath.Join(d.dir, "volumes"))
	secrets, _ := os.ReadDir(filepath.Join(d.dir, "secrets"))
	if len(entries)+len(secrets) != 0 {
		t.Errorf("left behind: %v %v", entries, secrets)
	}
}

// TestNodeUnpublish: the target is unmounted, its state, credentials and
// directory removed; again is success; a dead mount goes lazily; a target
// that never was is success.
func TestNodeUnpublish(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "t")
	if _, err := d.NodePublishVolume(ctx, publishReq("v", target, map[string]string{"bucket": "media"})); err != nil {
		t.Fatal(err)
	}
	creds := d.mounter.calls()[0].CredentialsFile
	for range 2 {
		if _, err := d.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	if d.kernel.depth(target) != 0 {
		t.Error("still mounted")
	}
	for _, p := range []string{target, creds, d.state.statePath(targetKey(target))} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there (%v)", p, err)
		}
	}
	dead := filepath.Join(dir, "dead")
	if _, err := d.NodePublishVolume(ctx, publishReq("v", dead, map[string]string{"bucket": "media"})); err != nil {
		t.Fatal(err)
	}
	d.kernel.kill(dead)
	if _, err := d.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: dead}); err != nil {
		t.Fatal(err)
	}
	if got := d.kernel.unmountLog(); !slices.Equal(got, []string{target + " plain", dead + " lazy"}) {
		t.Errorf("unmounts %v", got)
	}
	if _, err := d.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: filepath.Join(dir, "never")}); err != nil {
		t.Errorf("unpublish of a target never published: %v", err)
	}
	_, err := d.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{TargetPath: target})
	wantCode(t, "no volume id", err, codes.InvalidArgument)
	_, err = d.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v"})
	wantCode(t, "no target", err, codes.InvalidArgument)
}

// TestNodeGetVolumeStats: a serving volume reports a normal condition and
// one all-zero byte usage (S3 has no capacity); missing fields are
// InvalidArgument; a path without the volume is NotFound.
func TestNodeGetVolumeStats(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	target := filepath.Join(t.TempDir(), "t")
	if _, err := d.NodePublishVolume(ctx, publishReq("v", target, map[string]string{"bucket": "media"})); err != nil {
		t.Fatal(err)
	}
	st, err := d.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: target})
	if err != nil {
		t.Fatal(err)
	}
	if c := st.GetVolumeCondition(); c.GetAbnormal() || c.GetMessage() == "" {
		t.Errorf("condition %v", c)
	}
	if u := st.GetUsage(); len(u) != 1 || u[0].GetUnit() != csipb.VolumeUsage_BYTES || u[0].GetTotal() != 0 || u[0].GetAvailable() != 0 || u[0].GetUsed() != 0 {
		t.Errorf("usage %v", u)
	}
	_, err = d.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumePath: target})
	wantCode(t, "no id", err, codes.InvalidArgument)
	_, err = d.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v"})
	wantCode(t, "no path", err, codes.InvalidArgument)
	_, err = d.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: "some/path"})
	wantCode(t, "a path that does not exist", err, codes.NotFound)
	_, err = d.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "w", VolumePath: target})
	wantCode(t, "another volume's path", err, codes.NotFound)
	_, err = d.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: t.TempDir()})
	wantCode(t, "a directory with no mount", err, codes.NotFound)
}

// TestCacheDirPerVolume: volumes sharing a cache-dir option get a
// directory each; a second mount of one volume on the node gets a
// numbered sibling; a volume published again after its unpublish gets its
// first directory back (so pending --write-back uploads are found).
func TestCacheDirPerVolume(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	dir := t.TempDir()
	attrs := map[string]string{"bucket": "media", "mountOptions": "cache-dir=/cache,write-back"}
	publish := func(id, name string) string {
		t.Helper()
		if _, err := d.NodePublishVolume(ctx, publishReq(id, filepath.Join(dir, name), attrs)); err != nil {
			t.Fatal(err)
		}
		calls := d.mounter.calls()
		v, _ := optionValue(calls[len(calls)-1].Options, "cache-dir")
		return v
	}
	a1 := publish("a", "a1")
	b1 := publish("b", "b1")
	a2 := publish("a", "a2")
	if a1 != "/cache/vol-"+shortHash("a") || b1 != "/cache/vol-"+shortHash("b") || a2 != a1+"-2" {
		t.Errorf("cache dirs %s %s %s", a1, b1, a2)
	}
	d.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "a", TargetPath: filepath.Join(dir, "a1")})
	if a3 := publish("a", "a3"); a3 != a1 {
		t.Errorf("after the first mount went: %s, want %s", a3, a1)
	}
}

// TestRecover: at start, a serving mount is left alone, a dead one is
// detached and mounted again from its state and credentials file, and the
// state of a target whose directory is gone is forgotten.
func TestRecover(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	dir := t.TempDir()
	for _, n := range []string{"live", "dead", "gone"} {
		if _, err := d.NodePublishVolume(ctx, publishReq("v-"+n, filepath.Join(dir, n), map[string]string{"bucket": "media"})); err != nil {
			t.Fatal(err)
		}
	}
	first := d.mounter.calls()
	d.kernel.kill(filepath.Join(dir, "dead"))
	gone := filepath.Join(dir, "gone")
	d.kernel.checker().unmountAll(gone, true)
	os.Remove(gone)

	// A new driver process on the same state directory.
	d2 := newTestDriver(t)
	d2.state = d.state
	d2.checker = d.checker
	d2.mounter.k = d.kernel
	d2.Recover(ctx)
	calls := d2.mounter.calls()
	if len(calls) != 1 || calls[0].Target != filepath.Join(dir, "dead") {
		t.Fatalf("recovery mounted %v, want the dead one only", calls)
	}
	if calls[0].CredentialsFile != first[1].CredentialsFile || !slices.Equal(calls[0].Options, first[1].Options) {
		t.Errorf("remount %+v differs from the first mount %+v", calls[0], first[1])
	}
	states, _ := d.state.all()
	if len(states) != 2 {
		t.Errorf("%d states after recovery, want 2 (the gone target forgotten)", len(states))
	}
	// The new process unpublishes what the old one published.
	for _, n := range []string{"live", "dead"} {
		if _, err := d2.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v-" + n, TargetPath: filepath.Join(dir, n)}); err != nil {
			t.Error(err)
		}
	}
	if d.kernel.depth(filepath.Join(dir, "live"))+d.kernel.depth(filepath.Join(dir, "dead")) != 0 {
		t.Error("mounts left")
	}
}
