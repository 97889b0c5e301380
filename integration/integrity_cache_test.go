package integration

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucketfs/bucketfs/integration/harness"
)

// TestDiskCacheOtherBlockSize reads a 6 MiB object through a mount with a
// disk cache cut in 4 MiB blocks, then through a mount with 2 MiB blocks on
// the same cache directory, then with 4 MiB again: every read returns the
// object's bytes. When block files were keyed by their index alone, the
// second mount served bytes 4-6 MiB where 2-4 MiB belong.
func TestDiskCacheOtherBlockSize(t *testing.T) {
	data := make([]byte, 6<<20)
	rng := rand.NewChaCha8([32]byte{6})
	rng.Read(data)
	bucket := newBucket(t, map[string][]byte{"set.mp3": data})
	px := startProxy(t)
	cacheDir := t.TempDir()
	for _, bs := range []string{"4MiB", "2MiB", "4MiB"} {
		m := cacheMount(t, px, bucket, cacheDir, "--block-size", bs)
		readExact(t, m, "set.mp3", data)
		m.stop()
	}
}

// TestDiskCacheRefusesForeignTaggedDir mounts with --cache-dir on a
// directory another tool marked with a CACHEDIR.TAG (cargo writes one): the
// mount fails with one line and every file in the directory stays.
func TestDiskCacheRefusesForeignTaggedDir(t *testing.T) {
	bucket := newBucket(t, map[string][]byte{"a": []byte("x")})
	dir := t.TempDir()
	files := map[string]string{
		"CACHEDIR.TAG":  "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cargo.\n",
		"tmp/build.o":   "object code",
		"blocks/x":      "not a block",
		"lock":          "",
		"registry/data": "crates",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mnt := t.TempDir()
	m, err := harness.StartMount(bin, harness.Env(endpoint), mnt, mountArgs("--cache-dir", dir, bucket)...)
	if err == nil {
		m.Stop()
		t.Fatalf("mount on a foreign cache directory succeeded")
	}
	msg := strings.TrimSpace(err.Error())
	if !strings.Contains(msg, "not a bucketfs cache") {
		t.Errorf("mount failed with %q, want it to say the directory is not a bucketfs cache", msg)
	}
	for name, content := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != content {
			t.Errorf("%s after the refused mount: %q, %v; want it untouched", name, got, err)
		}
	}
}
