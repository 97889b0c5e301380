// Command image builds bucketfs's container image without Docker: an empty
// base, one layer holding a static bucketfs binary at /bucketfs and the build
// machine's CA bundle at /etc/ssl/certs/ca-certificates.crt (so https
// endpoints verify), and the entrypoint ["/bucketfs"]. Nothing else is in it:
// no shell, no mount or umount, no fusermount, no systemd-run. bucketfs mounts
// with go-fuse's DirectMount (the mount syscall, as root), so it needs none of
// them.
//
// The archive is written in the docker-archive format (tarball.Write:
// manifest.json, the config blob, gzip layers), which both `docker load` and
// containerd's importer (`ctr images import`, `k3s ctr images import`) read.
//
//	go run ./deploy/image -bin bin/bucketfs-static -out bin/bucketfs-image.tar \
//	    -tag ghcr.io/bucketfs/bucketfs:VERSION -tag ghcr.io/bucketfs/bucketfs:latest
//
// `make image` builds the static binary and runs this.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Paths inside the image.
const (
	binaryPath = "bucketfs"
	caPath     = "etc/ssl/certs/ca-certificates.crt"
)

// defaultTag is what the manifests under deploy/kubernetes run.
const defaultTag = "ghcr.io/bucketfs/bucketfs:latest"

// options are the builder's inputs, one per flag.
type options struct {
	Binary  string    // a statically linked linux bucketfs binary
	CACerts string    // the CA bundle to copy into the image
	Out     string    // the archive to write
	Tags    []string  // references the archive carries (RepoTags)
	Created time.Time // image creation time and the layer's file times
}

func main() {
	var o options
	var tags tagList
	flag.StringVar(&o.Binary, "bin", "bin/bucketfs-static", "static bucketfs binary (CGO_ENABLED=0)")
	flag.StringVar(&o.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied to /etc/ssl/certs/ca-certificates.crt")
	flag.StringVar(&o.Out, "out", "bin/bucketfs-image.tar", "image archive to write (docker-archive format)")
	flag.Var(&tags, "tag", "image reference the archive carries; repeat for more (default "+defaultTag+")")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "image: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	o.Tags = tags
	if len(o.Tags) == 0 {
		o.Tags = []string{defaultTag}
	}
	created, err := createdTime()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
	o.Created = created
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s)\n", o.Out, strings.Join(o.Tags, ", "))
}

// tagList collects repeated -tag flags.
type tagList []string

func (t *tagList) String() string     { return strings.Join(*t, ",") }
func (t *tagList) Set(s string) error { *t = append(*t, s); return nil }

// createdTime is SOURCE_DATE_EPOCH when set (reproducible builds), else now.
func createdTime() (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %v", s, err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Now().UTC().Truncate(time.Second), nil
}

// build writes the image archive described by o. The archive is written to a
// temporary file beside o.Out and renamed into place, so a failed build never
// leaves a truncated archive behind.
func build(o options) error {
	img, err := image(o)
	if err != nil {
		return err
	}
	refs := make(map[name.Reference]v1.Image, len(o.Tags))
	for _, t := range o.Tags {
		// StrictValidation: "bucketfs" alone would silently become
		// index.docker.io/library/bucketfs:latest.
		tag, err := name.NewTag(t, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("tag %q: %v (want REGISTRY/REPOSITORY:TAG)", t, err)
		}
		refs[tag] = img
	}
	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(o.Out), ".bucketfs-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tarball.MultiRefWrite(refs, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %v", o.Out, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), o.Out)
}

// image assembles the image: an empty base, one layer, the config.
func image(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	arch, err := staticLinuxArch(o.Binary)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %v (https endpoints need one; pass -ca-certs)", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", o.CACerts)
	}
	layerTar, err := layerTar(bin, ca, o.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "deploy/image: /bucketfs and /etc/ssl/certs/ca-certificates.crt",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	// The platform is what containerd matches against the node's when it
	// imports and runs the image: an image without one is not picked.
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config.Entrypoint = []string{"/" + binaryPath}
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.source":      "https://github.com/bucketfs/bucketfs",
		"org.opencontainers.image.title":       "bucketfs",
		"org.opencontainers.image.description": "bucketfs: S3 buckets as FUSE filesystems, and its Kubernetes CSI driver",
	}
	if v := versionOf(o.Tags); v != "" {
		cf.Config.Labels["org.opencontainers.image.version"] = v
	}
	return mutate.ConfigFile(img, cf)
}

// versionOf is the tag of the first reference that is not "latest".
func versionOf(tags []string) string {
	for _, t := range tags {
		i := strings.LastIndex(t, ":")
		if i < 0 || strings.Contains(t[i:], "/") {
			continue
		}
		if v := t[i+1:]; v != "latest" {
			return v
		}
	}
	return ""
}

// layerTar is the single layer's uncompressed tar: the directories, then
// /bucketfs (0755) and the CA bundle (0644), all owned by root. /tmp is there
// (1777) because Go's os.TempDir and some libraries expect it.
func layerTar(bin, ca []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, step := range []func() error{
		func() error { return dir("etc/", 0o755) },
		func() error { return dir("etc/ssl/", 0o755) },
		func() error { return dir("etc/ssl/certs/", 0o755) },
		func() error { return dir("tmp/", 0o1777) },
		func() error { return file(binaryPath, 0o755, bin) },
		func() error { return file(caPath, 0o644, ca) },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// staticLinuxArch checks that path is a statically linked Linux ELF
// executable (an empty image has no dynamic loader: a dynamic binary fails
// there with a bare "no such file or directory") and returns its GOARCH.
func staticLinuxArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: not a Linux executable: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0 (make image does)", path)
		}
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%s: not an executable (ELF type %v)", path, f.Type)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	// 32-bit arm would need its variant (v6, v7) in the platform, which the
	// ELF header does not say; other machines were never tried.
	return "", errors.New(path + ": unsupported machine " + f.Machine.String())
}
