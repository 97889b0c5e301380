package csitest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

// TestSanity runs csi-sanity (kubernetes-csi/csi-test v5) against the
// driver's real socket: the Identity, Controller and Node suites, with
// real volumes in a bucket of the local server and real mounts, and the
// secrets passed as Kubernetes passes them (csi-sanity's secrets file:
// CreateVolumeSecret, DeleteVolumeSecret, NodePublishVolumeSecret, ...).
// Afterwards every volume it made is gone from the bucket and nothing is
// mounted.
func TestSanity(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	t.Cleanup(func() { clearMounts(t, stateDir, dir) })
	bucket := newBucket(t)
	d := startDriver(t, filepath.Join(dir, "csi.sock"), stateDir)

	secretsFile := writeSecrets(t, dir)
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + d.Sock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.SecretsFile = secretsFile
	cfg.TestVolumeParameters = volumeParams(bucket)
	sanity.Test(t, cfg)

	checkClean(t, bucket, stateDir, dir, d)
}

// TestSanityCLI runs the same suite as the csi-sanity command, built from
// the csi-test module, with its parameters and secrets in files as an
// operator would give them: --csi.testvolumeparameters (bucket, endpoint,
// region, pathStyle) and --csi.secrets (accessKeyID, secretAccessKey).
func TestSanityCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	t.Cleanup(func() { clearMounts(t, stateDir, dir) })
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cli := filepath.Join(dir, "csi-sanity")
	build := exec.CommandContext(ctx, "go", "build", "-o", cli, "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building csi-sanity: %v\n%s", err, out)
	}
	bucket := newBucket(t)
	d := startDriver(t, filepath.Join(dir, "csi.sock"), stateDir)
	params := filepath.Join(dir, "params.yaml")
	var yaml strings.Builder
	for k, v := range volumeParams(bucket) {
		fmt.Fprintf(&yaml, "%s: %q\n", k, v)
	}
	if err := os.WriteFile(params, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, cli, "--csi.endpoint", "unix://"+d.Sock,
		"--csi.testvolumeparameters", params, "--csi.secrets", writeSecrets(t, dir),
		"--csi.mountdir", filepath.Join(dir, "target"), "--csi.stagingdir", filepath.Join(dir, "staging"),
		"--ginkgo.no-color")
	out, err := cmd.CombinedOutput()
	summary := regexp.MustCompile(`\d+ Passed \| \d+ Failed \| \d+ Pending \| \d+ Skipped`).FindString(string(out))
	if err != nil {
		t.Fatalf("csi-sanity: %v\n%s", err, out)
	}
	t.Logf("csi-sanity: %s", summary)
	checkClean(t, bucket, stateDir, dir, d)
}

// writeSecrets writes csi-sanity's secrets file: the local server's keys
// for every call that carries secrets, as Kubernetes passes a Secret's
// data.
func writeSecrets(t *testing.T, dir string) string {
	t.Helper()
	var yaml strings.Builder
	for _, kind := range []string{"CreateVolumeSecret", "DeleteVolumeSecret", "NodePublishVolumeSecret",
		"ControllerValidateVolumeCapabilitiesSecret"} {
		fmt.Fprintf(&yaml, "%s:\n  accessKeyID: %s\n  secretAccessKey: %s\n", kind, harness.AccessKey, harness.SecretKey)
	}
	p := filepath.Join(dir, "secrets.yaml")
	if err := os.WriteFile(p, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkClean checks what a csi-sanity run leaves: no object in the bucket
// (every volume it made was deleted), no published volume, no mount under
// dir, and no secret in the driver's log.
func checkClean(t *testing.T, bucket, stateDir, dir string, d *driver) {
	t.Helper()
	if left := keys(t, bucket); len(left) > 0 {
		t.Errorf("objects left in the bucket after csi-sanity deleted its volumes: %v", left)
	}
	if s := states(t, stateDir); len(s) > 0 {
		t.Errorf("published volumes left: %+v", s)
	}
	if out, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(out), dir) {
		t.Errorf("mounts left under %s", dir)
	}
	if strings.Contains(d.out.String(), harness.SecretKey) {
		t.Error("the secret key is in the driver's log")
	}
}
