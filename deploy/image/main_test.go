package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testVersion = "image-test-1"

var testTags = []string{
	"ghcr.io/bucketfs/bucketfs:" + testVersion,
	"ghcr.io/bucketfs/bucketfs:latest",
}

// buildStatic builds cmd/bucketfs the way `make image` does (CGO_ENABLED=0,
// -trimpath, the version in main.version) into dir.
func buildStatic(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build bucketfs: %v", err)
	}
	out := filepath.Join(dir, "bucketfs-static")
	cmd := exec.Command(goTool, "build", "-trimpath",
		"-ldflags", "-X main.version="+testVersion,
		"-o", out, "github.com/bucketfs/bucketfs/cmd/bucketfs")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// TestImageRunsBucketfs builds the real binary into an image archive, reads
// the archive back as docker load and ctr import do (manifest.json naming the
// config and layer files, both tags), unpacks the image's filesystem, and
// runs /bucketfs version from it.
func TestImageRunsBucketfs(t *testing.T) {
	dir := t.TempDir()
	bin := buildStatic(t, dir)
	archive := filepath.Join(dir, "out", "bucketfs-image.tar")
	if err := build(options{
		Binary:  bin,
		CACerts: "/etc/ssl/certs/ca-certificates.crt",
		Out:     archive,
		Tags:    testTags,
		Created: time.Unix(1700000000, 0).UTC(),
	}); err != nil {
		t.Fatal(err)
	}

	checkDockerArchive(t, archive)

	for _, ref := range testTags {
		tag, err := name.NewTag(ref, name.StrictValidation)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(archive, &tag)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
			t.Errorf("%s: platform %s/%s, want linux/%s", ref, cf.OS, cf.Architecture, runtime.GOARCH)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{"/bucketfs"}) {
			t.Errorf("%s: entrypoint %q", ref, cf.Config.Entrypoint)
		}
		if got := cf.Config.Labels["org.opencontainers.image.version"]; got != testVersion {
			t.Errorf("%s: version label %q, want %q", ref, got, testVersion)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers (%v), want 1", ref, len(layers), err)
		}
	}

	// Unpack the flattened filesystem and run the binary from it.
	tag, _ := name.NewTag(testTags[1], name.StrictValidation)
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "rootfs")
	files := extract(t, mutate.Extract(img), root)
	want := map[string]os.FileMode{
		"etc":                               os.ModeDir | 0o755,
		"etc/ssl":                           os.ModeDir | 0o755,
		"etc/ssl/certs":                     os.ModeDir | 0o755,
		"tmp":                               os.ModeDir | os.ModeSticky | 0o777,
		"bucketfs":                          0o755,
		"etc/ssl/certs/ca-certificates.crt": 0o644,
	}
	for p, mode := range want {
		if got, ok := files[p]; !ok {
			t.Errorf("image lacks /%s", p)
		} else if got != mode {
			t.Errorf("/%s: mode %v, want %v", p, got, mode)
		}
	}
	for p := range files {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected /%s in the image", p)
		}
	}
	gotCA, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	wantCA, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if !bytes.Equal(gotCA, wantCA) {
		t.Error("the image's CA bundle differs from the build machine's")
	}

	out, err := exec.Command(filepath.Join(root, "bucketfs"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("/bucketfs version: %v\n%s", err, out)
	}
	if got, want := string(out), "bucketfs "+testVersion+"\n"; got != want {
		t.Errorf("/bucketfs version printed %q, want %q", got, want)
	}
}

// checkDockerArchive reads the archive the way containerd's importer does: a
// manifest.json listing, per image, a config file, RepoTags and layer files,
// each of which must be in the tar; and a config that names the platform.
func checkDockerArchive(t *testing.T, archive string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[path.Clean(h.Name)] = b
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 {
		t.Fatalf("manifest.json lists %d images, want 1", len(manifest))
	}
	m := manifest[0]
	tags := slices.Sorted(slices.Values(m.RepoTags))
	if want := slices.Sorted(slices.Values(testTags)); !slices.Equal(tags, want) {
		t.Errorf("RepoTags %q, want %q", tags, want)
	}
	var cfg struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		RootFS       struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(entries[m.Config], &cfg); err != nil {
		t.Fatalf("config %q: %v", m.Config, err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || len(cfg.RootFS.DiffIDs) != 1 {
		t.Errorf("config: %+v", cfg)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("layers %q, want 1", m.Layers)
	}
	layer, ok := entries[m.Layers[0]]
	if !ok {
		t.Fatalf("layer %q is not in the archive", m.Layers[0])
	}
	if !bytes.HasPrefix(layer, []byte{0x1f, 0x8b}) || !strings.HasSuffix(m.Layers[0], ".tar.gz") {
		t.Errorf("layer %q is not gzip", m.Layers[0])
	}
}

// extract writes a flattened image filesystem into root and returns each
// entry's mode by its path relative to root.
func extract(t *testing.T, rc io.ReadCloser, root string) map[string]os.FileMode {
	t.Helper()
	defer rc.Close()
	modes := map[string]os.FileMode{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return modes
		}
		if err != nil {
			t.Fatal(err)
		}
		rel := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if rel == "." || strings.HasPrefix(rel, "../") {
			t.Fatalf("bad entry %q", h.Name)
		}
		modes[rel] = h.FileInfo().Mode()
		dst := filepath.Join(root, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, h.FileInfo().Mode().Perm()); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected entry %q of type %c", h.Name, h.Typeflag)
		}
	}
}

// tinyStatic builds a do-nothing static Go program: a valid input for the
// checks that come after the binary's.
func tinyStatic(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "tiny.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tiny")
	cmd := exec.Command(goTool, "build", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// TestBuildRefuses: inputs that would give an image that cannot run (a
// dynamically linked or non-ELF binary, no CA bundle) or a tag that would
// silently name Docker Hub are refused, and nothing is written.
func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	static := tinyStatic(t, dir)
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	noPEM := filepath.Join(dir, "empty.crt")
	if err := os.WriteFile(noPEM, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const ca = "/etc/ssl/certs/ca-certificates.crt"
	cases := []struct {
		name string
		o    options
		want string
	}{
		{"not ELF", options{Binary: notELF, CACerts: ca, Tags: []string{defaultTag}}, "not a Linux executable"},
		{"missing CA", options{Binary: static, CACerts: filepath.Join(dir, "none.crt"), Tags: []string{defaultTag}}, "CA bundle"},
		{"CA without PEM", options{Binary: static, CACerts: noPEM, Tags: []string{defaultTag}}, "no PEM certificate"},
		{"short tag", options{Binary: static, CACerts: ca, Tags: []string{"bucketfs"}}, "REGISTRY/REPOSITORY:TAG"},
	}
	// A dynamically linked binary, where the machine has one (Debian's true).
	if dynamic, err := exec.LookPath("true"); err == nil && hasInterp(dynamic) {
		cases = append(cases, struct {
			name string
			o    options
			want string
		}{"dynamic binary", options{Binary: dynamic, CACerts: ca, Tags: []string{defaultTag}}, "dynamically linked"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Out = filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".tar")
			err := build(tc.o)
			if err == nil {
				t.Fatalf("built %s", tc.o.Out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to mention %q", err, tc.want)
			}
			if _, err := os.Stat(tc.o.Out); err == nil {
				t.Errorf("%s written despite the error", tc.o.Out)
			}
		})
	}
	// And the same inputs with the static binary, a CA bundle and a full tag
	// do build.
	ok := options{Binary: static, CACerts: ca, Tags: []string{defaultTag}, Out: filepath.Join(dir, "ok.tar")}
	if err := build(ok); err != nil {
		t.Fatalf("valid inputs: %v", err)
	}
}

// hasInterp reports whether the ELF file at p asks for a dynamic loader.
func hasInterp(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}
