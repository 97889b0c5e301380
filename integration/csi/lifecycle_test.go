package csitest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bucketfs/bucketfs/integration/harness"
	csipb "github.com/container-storage-interface/spec/lib/go/csi"
)

// TestVolumeLifecycle drives both kinds of dynamic volume through the real
// server: a bucket of its own (newBucket), created by CreateVolume,
// written through its mount by a "pod" and read back through S3, deleted
// with its bucket; and a prefix volume holding 1,200 objects (two
// DeleteObjects requests), deleted without touching its neighbour.
func TestVolumeLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	t.Cleanup(func() { clearMounts(t, stateDir, dir) })
	d := startDriver(t, filepath.Join(dir, "csi.sock"), stateDir)
	conn := dial(t, d.Sock)
	ctrl, node := csipb.NewControllerClient(conn), csipb.NewNodeClient(conn)
	rwx := mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)

	// A bucket of its own, named after the PVC.
	pvc := fmt.Sprintf("rec-%d", time.Now().UnixNano())
	params := map[string]string{"newBucket": "true", "endpoint": endpoint, "region": "us-east-1", "pathStyle": "true",
		"csi.storage.k8s.io/pvc/name": pvc, "mountOptions": "uid=1000,gid=1000"}
	vol, err := ctrl.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "pvc-" + pvc, Parameters: params,
		VolumeCapabilities: []*csipb.VolumeCapability{rwx}, Secrets: secrets()})
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	bucket := vol.GetVolume().GetVolumeContext()["bucket"]
	if bucket != pvc {
		t.Fatalf("bucket %q, want %q", bucket, pvc)
	}
	target := filepath.Join(dir, "pods", "writer", "mount")
	if _, err := node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), TargetPath: target,
		VolumeCapability: rwx, VolumeContext: vol.GetVolume().GetVolumeContext(), Secrets: secrets()}); err != nil {
		t.Fatalf("NodePublishVolume: %v\n%s", err, daemonLog(t, stateDir, target))
	}
	if err := os.MkdirAll(filepath.Join(target, "2026"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "2026", "set.mp3"), []byte("recorded"), 0o644); err != nil {
		t.Fatalf("write through the mount: %v", err)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("2026/set.mp3")})
	if err != nil {
		t.Fatalf("the written file is not in the bucket: %v", err)
	}
	out.Body.Close()
	if _, err := node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), Secrets: secrets()}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err == nil {
		t.Errorf("bucket %s still there after DeleteVolume", bucket)
	}

	// A prefix volume of 1,200 objects beside another prefix.
	shared := newBucket(t)
	vol, err = ctrl.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "pvc-many", Parameters: volumeParams(shared),
		VolumeCapabilities: []*csipb.VolumeCapability{rwx}, Secrets: secrets()})
	if err != nil {
		t.Fatal(err)
	}
	prefix := vol.GetVolume().GetVolumeContext()["prefix"]
	sem := make(chan struct{}, 16)
	errs := make(chan error, 1201)
	for i := range 1200 {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- harness.Put(ctx, client, shared, fmt.Sprintf("%sd%d/f%04d", prefix, i%7, i), []byte("x"))
		}()
	}
	errs <- harness.Put(ctx, client, shared, strings.TrimSuffix(prefix, "/")+"-neighbour/keep", []byte("keep"))
	for range 1201 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ctrl.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), Secrets: secrets()}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	if left := keys(t, shared); len(left) != 1 || !strings.HasSuffix(left[0], "-neighbour/keep") {
		t.Errorf("left after deleting the volume: %d keys %v", len(left), left[:min(len(left), 5)])
	}
}
