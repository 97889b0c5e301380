package compare

import (
	"fmt"
	"os/exec"
	"strings"
)

// Peer is another FUSE mount of S3 that the comparison runs, and how.
type Peer struct {
	Name    string
	Exe     string // the executable's name on PATH
	EnvVar  string // an environment variable naming the executable's path, for peers not packaged here
	Package string // the Debian package `make compare` installs it from, if any
	// Args returns the mount command's arguments (without the executable);
	// Env the environment variables it needs besides the inherited ones.
	Args func(c MountConfig) []string
	Env  func(c MountConfig) []string
	// Version is the argument that prints its version.
	Version string
}

// MountConfig is what a mount command needs to know.
type MountConfig struct {
	Endpoint   string // the proxy's URL: http://127.0.0.1:PORT
	Region     string
	Bucket     string
	Dir        string // the mount point
	CacheDir   string // an empty directory the tool may use as its cache
	PasswdFile string // s3fs's ACCESS:SECRET file
	AccessKey  string
	SecretKey  string
}

// Peers returns the peers in column order: the packaged ones first, then
// those run only when installed.
func Peers() []Peer {
	awsEnv := func(c MountConfig) []string {
		return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.SecretKey, "AWS_REGION=" + c.Region}
	}
	return []Peer{
		{
			Name: "rclone", Exe: "rclone", Package: "rclone", Version: "version",
			// rclone's docs: --vfs-cache-mode full makes ordinary programs'
			// writes work and fetches only the parts of a file that are read
			// (sparse cache files), which suits random reads (here it also
			// read sequentially faster than "writes": 174 against 123 MB/s,
			// and randomly 70 against 18 MB/s); chunked reads with
			// --vfs-read-chunk-size (doubling each chunk) bound what a seek
			// wastes; --use-server-modtime saves a HEAD per file when
			// listing; more --transfers and --s3-upload-concurrency upload
			// in parallel; --vfs-write-back 0s starts an upload at close
			// instead of 5 s later.
			Args: func(c MountConfig) []string {
				return []string{"mount", ":s3:" + c.Bucket, c.Dir,
					"--s3-provider", "Other", "--s3-endpoint", c.Endpoint, "--s3-region", c.Region,
					"--s3-force-path-style", "--s3-no-check-bucket",
					"--vfs-cache-mode", "full", "--vfs-write-back", "0s", "--cache-dir", c.CacheDir,
					"--vfs-read-chunk-size", "8M", "--buffer-size", "32M",
					"--use-server-modtime", "--dir-cache-time", "5m",
					"--transfers", "8", "--s3-upload-concurrency", "8", "--s3-chunk-size", "16M",
					"--config", "/dev/null", "--log-level", "NOTICE"}
			},
			Env: func(c MountConfig) []string {
				return []string{"RCLONE_S3_ACCESS_KEY_ID=" + c.AccessKey, "RCLONE_S3_SECRET_ACCESS_KEY=" + c.SecretKey}
			},
		},
		{
			Name: "s3fs", Exe: "s3fs", Package: "s3fs", Version: "--version",
			// s3fs's man page: use_path_request_style for servers without
			// virtual-hosted buckets; parallel_count and multipart_size for
			// parallel transfers of large files; multireq_max for parallel
			// HEADs while listing; a stat cache as large as the largest
			// directory; enable_noobj_cache to remember names that are not
			// there. (notsup_compat_dir would save requests but hides
			// directories that have no directory object, like every one
			// here.)
			Args: func(c MountConfig) []string {
				return []string{c.Bucket, c.Dir, "-f", "-o", strings.Join([]string{
					"url=" + c.Endpoint, "use_path_request_style", "endpoint=" + c.Region,
					"passwd_file=" + c.PasswdFile,
					"parallel_count=16", "multipart_size=16", "multireq_max=32",
					"max_stat_cache_size=200000", "enable_noobj_cache",
				}, ",")}
			},
			Env: func(MountConfig) []string { return nil },
		},
		{
			Name: "geesefs", Exe: "geesefs", EnvVar: "GEESEFS", Version: "--version",
			Args: func(c MountConfig) []string {
				return []string{"-f", "--endpoint", c.Endpoint, "--region", c.Region, "--cache", c.CacheDir, c.Bucket, c.Dir}
			},
			Env: awsEnv,
		},
		{
			Name: "tigrisfs", Exe: "tigrisfs", EnvVar: "TIGRISFS", Version: "--version",
			Args: func(c MountConfig) []string {
				return []string{"-f", "--endpoint", c.Endpoint, "--region", c.Region, c.Bucket, c.Dir}
			},
			Env: awsEnv,
		},
		{
			Name: "mountpoint-s3", Exe: "mount-s3", EnvVar: "MOUNT_S3", Version: "--version",
			Args: func(c MountConfig) []string {
				return []string{c.Bucket, c.Dir, "--foreground", "--endpoint-url", c.Endpoint, "--force-path-style",
					"--region", c.Region, "--allow-delete", "--allow-overwrite"}
			},
			Env: awsEnv,
		},
	}
}

// Discover finds p's executable: the path in p.EnvVar when that is set,
// else p.Exe on PATH. When it cannot run, it returns "" and why, the
// reason the report gives for skipping p.
func Discover(p Peer, getenv func(string) string, lookPath func(string) (string, error)) (path, why string) {
	if p.EnvVar != "" {
		if v := getenv(p.EnvVar); v != "" {
			got, err := lookPath(v)
			if err != nil {
				return "", fmt.Sprintf("%s=%s is not an executable (%v)", p.EnvVar, v, err)
			}
			return got, ""
		}
	}
	got, err := lookPath(p.Exe)
	if err == nil {
		return got, ""
	}
	switch {
	case p.Package != "":
		return "", fmt.Sprintf("%s is not on PATH (`make compare` installs the Debian package %s)", p.Exe, p.Package)
	case p.EnvVar != "":
		return "", fmt.Sprintf("%s is not on PATH and %s is not set; it is not packaged for this machine's Debian and cannot be fetched here", p.Exe, p.EnvVar)
	}
	return "", fmt.Sprintf("%s is not on PATH", p.Exe)
}

// CommandLine renders a command as a shell line, quoting what needs it.
func CommandLine(env []string, exe string, args []string) string {
	var parts []string
	parts = append(parts, env...)
	parts = append(parts, exe)
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// VersionLine returns the first non-empty line of a version command's
// output, without the tool's name in front ("rclone v1.60.1" -> "v1.60.1").
func VersionLine(name, out string) string {
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			for _, prefix := range []string{name + " ", "Amazon Simple Storage Service File System "} {
				if len(l) > len(prefix) && strings.EqualFold(l[:len(prefix)], prefix) {
					l = l[len(prefix):]
				}
			}
			return l
		}
	}
	return "unknown version"
}

// LookPath is exec.LookPath, for Discover.
func LookPath(file string) (string, error) { return exec.LookPath(file) }
