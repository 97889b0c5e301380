package main

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	bfs "github.com/bucketfs/bucketfs/fs"
	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// mountOptions is every setting of a mount. Its flag set (bindFlags) is the
// one source of names, defaults and help text.
type mountOptions struct {
	// Positional
	Bucket     string // empty: all buckets
	Prefix     string // "" or ends in "/"
	Mountpoint string

	// S3
	Endpoint  string
	Region    string
	PathStyle bool
	Profile   string

	// Presentation
	UID, GID    uint32
	FileMode    os.FileMode
	DirMode     os.FileMode
	AllowOther  bool
	MetadataTTL time.Duration
	NegativeTTL time.Duration

	// Read path
	CacheMemory  int64 // bytes for blocks: resident, in flight, read ahead
	BlockSize    int64
	MaxReadahead int64  // per open file
	MaxGets      int    // read-ahead GETs in flight, whole mount
	FilesAhead   bool   // fetch a directory's next small files when read in listing order
	ListContent  string // auto, on or off: Tigris listings carry small files' content

	// Disk cache (off when CacheDir is empty)
	CacheDir            string
	CacheSize           int64
	CacheMinFree        int64   // bytes, or
	CacheMinFreePercent float64 // percent of the cache filesystem

	// Faults
	MaxRetries     int
	RequestTimeout time.Duration
	SlowRead       time.Duration // log reads that take this long (0: never)

	// Write path
	ReadOnly       bool          // every change fails with EROFS
	WriteBack      bool          // close returns once the bytes are on local disk (needs CacheDir)
	StorageClass   string        // class of new objects; empty: the bucket's default
	WritePartSize  int64         // size of the first 1,000 parts of an upload
	MaxUploads     int           // part uploads in flight, whole mount
	UnmountWait    time.Duration // how long unmounting waits for write-back uploads
	TigrisRename   string        // auto, on or off
	RenameDirLimit int           // keys a directory rename moves server-side

	// Archive tier
	AutoRestoreDays int32         // > 0: opening an archived object restores it
	RestoreCheck    time.Duration // first interval between checks of a running restore
	RestoreRate     float64       // HEADs per second checking running restores, all files together

	// Operation
	MetricsAddr    string
	StartupTimeout time.Duration
	LogLevel       string
	LogFile        string
	LogFormat      string
	DebugFUSE      bool
	CPUProfile     string

	fileModeStr, dirModeStr                    string
	cacheMemoryStr, blockSizeStr, maxReadahead string
	cacheSizeStr, cacheMinFreeStr              string
	writePartSizeStr                           string
}

// Default metadata TTL: archives of finished recordings and model weights
// change rarely, so five minutes saves a LIST per directory visit and a HEAD
// per open while new uploads still appear within minutes.
const (
	defaultMetadataTTL = 5 * time.Minute
	defaultNegativeTTL = 10 * time.Second
)

// storageClasses are the classes --storage-class and bucketfs tier accept:
// the S3 API's, of which each server implements some (Tigris: STANDARD,
// STANDARD_IA, GLACIER, GLACIER_IR). The server refuses one it lacks.
var storageClasses = []string{
	"STANDARD", "STANDARD_IA", "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE",
	"INTELLIGENT_TIERING", "ONEZONE_IA", "REDUCED_REDUNDANCY", "EXPRESS_ONEZONE",
}

// parseStorageClass returns the class named by s in upper case, or an
// error naming flag and the classes there are.
func parseStorageClass(flag, s string) (string, error) {
	up := strings.ToUpper(strings.TrimSpace(s))
	if slices.Contains(storageClasses, up) {
		return up, nil
	}
	return "", fmt.Errorf("%s: %q is not a storage class (%s)", flag, s, strings.Join(storageClasses, ", "))
}

func bindFlags(fl *pflag.FlagSet, o *mountOptions) {
	fl.StringVar(&o.Endpoint, "endpoint", "", "S3 endpoint URL, e.g. https://t3.storage.dev (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS)")
	fl.StringVar(&o.Region, "region", "", "region; Tigris uses auto (default: AWS_REGION or the profile's, else us-east-1)")
	fl.BoolVar(&o.PathStyle, "path-style", false, "use path-style URLs (http://host/bucket/key), needed by MinIO and versitygw; Tigris wants virtual-hosted")
	fl.StringVar(&o.Profile, "profile", "", "shared config profile (default: AWS_PROFILE or default)")
	fl.Uint32Var(&o.UID, "uid", uint32(os.Getuid()), "owner of every file and directory (default: the mounting user)")
	fl.Uint32Var(&o.GID, "gid", uint32(os.Getgid()), "group of every file and directory (default: the mounting user's group)")
	fl.StringVar(&o.fileModeStr, "file-mode", "0644", "permission bits of files, in octal")
	fl.StringVar(&o.dirModeStr, "dir-mode", "0755", "permission bits of directories, in octal")
	fl.BoolVar(&o.AllowOther, "allow-other", false, "let users other than the mounting one access the mount")
	fl.DurationVar(&o.MetadataTTL, "metadata-ttl", defaultMetadataTTL, "how long listings, lookups and attributes are cached")
	fl.DurationVar(&o.NegativeTTL, "negative-metadata-ttl", defaultNegativeTTL, "how long a name that does not exist is remembered as missing")
	fl.StringVar(&o.cacheMemoryStr, "cache-memory", "512MiB", "memory for data blocks: cached, in flight and read ahead, for all files together")
	fl.StringVar(&o.blockSizeStr, "block-size", "4MiB", "unit of caching and of read-ahead GETs")
	fl.StringVar(&o.maxReadahead, "max-readahead", "64MiB", "largest read-ahead window of one sequentially read file")
	fl.IntVar(&o.MaxGets, "max-parallel-gets", 32, "read-ahead GET requests in flight, for all files together")
	fl.BoolVar(&o.FilesAhead, "prefetch-files", true, "when a directory's files are opened one after another in listing order (cp -r, tar, cat dir/*), fetch the next files no larger than --block-size whole and in parallel before they are opened, within the read-ahead budget and --max-parallel-gets; files opened in any other order fetch nothing extra")
	fl.StringVar(&o.CacheDir, "cache-dir", "", "keep blocks in this directory too, across restarts (created with mode 0700; one mount per directory)")
	fl.StringVar(&o.cacheSizeStr, "cache-size", "10GiB", "largest size of the --cache-dir cache")
	fl.StringVar(&o.cacheMinFreeStr, "cache-min-free", "5%", "free space the --cache-dir cache leaves on its filesystem: a size (20GiB) or a percentage (5%)")
	fl.IntVar(&o.MaxRetries, "max-retries", 5, "times a failed request (5xx, throttling, connection error, timeout) is retried, with capped exponential backoff and jitter")
	fl.DurationVar(&o.RequestTimeout, "request-timeout", 10*time.Second, "how long a request may wait for the store's answer, or a download for its next bytes, before it is retried or resumed")
	fl.DurationVar(&o.SlowRead, "log-slow-reads", time.Second, "log each read that takes this long, with what it waited for (0: never)")
	fl.BoolVar(&o.ReadOnly, "read-only", false, "refuse every change (EROFS): no file is created, written, removed or renamed")
	fl.BoolVar(&o.WriteBack, "write-back", false, "close and fsync return once the bytes are on local disk, the upload going on in the background and surviving restarts (needs --cache-dir)")
	fl.StringVar(&o.StorageClass, "storage-class", "", "storage class of new objects: "+strings.Join(storageClasses, ", ")+" (default: the bucket's)")
	fl.StringVar(&o.writePartSizeStr, "write-part-size", "8MiB", "size of the parts of a multipart upload, 5MiB to 64MiB (parts after the 1,000th grow)")
	fl.IntVar(&o.MaxUploads, "max-uploads", 8, "part uploads and server-side part copies in flight, for all files together")
	fl.DurationVar(&o.UnmountWait, "unmount-wait", 5*time.Minute, "how long unmounting waits for pending --write-back uploads; what is left is uploaded at the next start")
	fl.StringVar(&o.ListContent, "tigris-list-content", "auto", "ask Tigris to put small files' content in directory listings (X-Tigris-List-Content), so reading them costs no GET: auto (when the store is Tigris), on or off; content is used only when its size and MD5 match the listed size and ETag")
	fl.StringVar(&o.TigrisRename, "tigris-rename", "auto", "rename files with Tigris's server-side rename: auto (when the store is Tigris), on or off")
	fl.IntVar(&o.RenameDirLimit, "rename-dir-limit", bfs.DefaultRenameDirLimit, "most keys a directory rename moves server-side; a larger directory fails with EXDEV, so mv copies it")
	fl.Int32Var(&o.AutoRestoreDays, "auto-restore", 0, "opening an archived object starts a restore for this many days (--auto-restore alone: 1 day) and fails with EAGAIN until it completes")
	fl.Lookup("auto-restore").NoOptDefVal = "1"
	fl.DurationVar(&o.RestoreCheck, "restore-check-interval", time.Minute, "first interval between checks of a running restore (it doubles up to 16x)")
	fl.Float64Var(&o.RestoreRate, "restore-check-rate", 50, "most HEADs per second checking running restores, all files together")
	fl.StringVar(&o.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (off when empty)")
	fl.DurationVar(&o.StartupTimeout, "startup-timeout", 10*time.Second, "how long the checks before mounting wait for the endpoint")
	fl.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&o.LogFile, "log-file", "", "append logs to this file instead of stderr")
	fl.BoolVar(&o.DebugFUSE, "debug-fuse", false, "log every FUSE request and reply (very verbose)")
	fl.StringVar(&o.CPUProfile, "cpu-profile", "", "write a Go CPU profile of the daemon to this file (for performance work)")
	fl.MarkHidden("cpu-profile")
}

// finish validates the options and parses the positional arguments
// [BUCKET[/PREFIX]] MOUNTPOINT.
func (o *mountOptions) finish(args []string) error {
	switch len(args) {
	case 1:
		o.Mountpoint = args[0]
	case 2:
		target := strings.TrimPrefix(args[0], "s3://")
		bucket, prefix, _ := strings.Cut(target, "/")
		if bucket == "" {
			return fmt.Errorf("bucket name missing in %q", args[0])
		}
		o.Bucket = bucket
		prefix = strings.Trim(prefix, "/")
		if prefix != "" {
			o.Prefix = prefix + "/"
		}
		o.Mountpoint = args[1]
	default:
		return fmt.Errorf("expected [BUCKET[/PREFIX]] MOUNTPOINT, got %d arguments", len(args))
	}
	if o.Mountpoint == "" {
		return fmt.Errorf("mountpoint missing")
	}
	if err := checkEndpoint(o.Endpoint); err != nil {
		return err
	}
	var err error
	if o.FileMode, err = parseMode("--file-mode", o.fileModeStr); err != nil {
		return err
	}
	if o.DirMode, err = parseMode("--dir-mode", o.dirModeStr); err != nil {
		return err
	}
	if o.CacheMemory, err = parseSize("--cache-memory", o.cacheMemoryStr); err != nil {
		return err
	}
	if o.BlockSize, err = parseSize("--block-size", o.blockSizeStr); err != nil {
		return err
	}
	if o.MaxReadahead, err = parseSize("--max-readahead", o.maxReadahead); err != nil {
		return err
	}
	if o.CacheSize, err = parseSize("--cache-size", o.cacheSizeStr); err != nil {
		return err
	}
	if o.CacheMinFree, o.CacheMinFreePercent, err = parseMinFree(o.cacheMinFreeStr); err != nil {
		return err
	}
	if o.CacheDir != "" && o.CacheSize < 4*o.BlockSize {
		return fmt.Errorf("--cache-size (%s) must hold at least 4 blocks of --block-size (%s)", o.cacheSizeStr, o.blockSizeStr)
	}
	if o.BlockSize < 64<<10 || o.BlockSize > 256<<20 {
		return fmt.Errorf("--block-size must be between 64KiB and 256MiB, not %s", o.blockSizeStr)
	}
	// Half of --cache-memory is the read-ahead budget, and read-ahead and
	// warming leave a quarter of it (at least two blocks) to reads waiting
	// on the store: 8 blocks is the least that grants them a block.
	if o.CacheMemory < 8*o.BlockSize {
		return fmt.Errorf("--cache-memory (%s) must hold at least 8 blocks of --block-size (%s)", o.cacheMemoryStr, o.blockSizeStr)
	}
	if o.MaxReadahead < o.BlockSize {
		return fmt.Errorf("--max-readahead (%s) must be at least --block-size (%s)", o.maxReadahead, o.blockSizeStr)
	}
	if o.WritePartSize, err = parseSize("--write-part-size", o.writePartSizeStr); err != nil {
		return err
	}
	if o.WritePartSize < 5<<20 || o.WritePartSize > 64<<20 {
		return fmt.Errorf("--write-part-size must be between 5MiB and 64MiB, not %s", o.writePartSizeStr)
	}
	if o.StorageClass != "" {
		if o.StorageClass, err = parseStorageClass("--storage-class", o.StorageClass); err != nil {
			return err
		}
	}
	if o.WriteBack && o.CacheDir == "" {
		return fmt.Errorf("--write-back needs --cache-dir: the pending uploads' journal must outlive the daemon")
	}
	if o.WriteBack && o.ReadOnly {
		return fmt.Errorf("--write-back and --read-only exclude each other")
	}
	if o.MaxUploads < 1 {
		return fmt.Errorf("--max-uploads must be at least 1")
	}
	if o.UnmountWait < 0 {
		return fmt.Errorf("--unmount-wait must not be negative")
	}
	switch o.TigrisRename {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--tigris-rename must be auto, on or off, not %q", o.TigrisRename)
	}
	switch o.ListContent {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--tigris-list-content must be auto, on or off, not %q", o.ListContent)
	}
	if o.RenameDirLimit < 1 {
		return fmt.Errorf("--rename-dir-limit must be at least 1")
	}
	if o.AutoRestoreDays < 0 || o.AutoRestoreDays > 36500 {
		return fmt.Errorf("--auto-restore takes a number of days from 1 to 36500")
	}
	if !(o.RestoreRate > 0) || o.RestoreRate > 10000 {
		return fmt.Errorf("--restore-check-rate must be above 0 and at most 10000 per second")
	}
	if o.RestoreCheck < time.Second {
		return fmt.Errorf("--restore-check-interval must be at least 1s")
	}
	if o.MaxGets < 1 {
		return fmt.Errorf("--max-parallel-gets must be at least 1")
	}
	if o.MetadataTTL < 0 || o.NegativeTTL < 0 {
		return fmt.Errorf("--metadata-ttl and --negative-metadata-ttl must not be negative")
	}
	if o.MaxRetries < 0 || o.MaxRetries > 100 {
		return fmt.Errorf("--max-retries must be from 0 to 100")
	}
	if o.RequestTimeout < 100*time.Millisecond {
		return fmt.Errorf("--request-timeout must be at least 100ms")
	}
	if o.SlowRead < 0 {
		return fmt.Errorf("--log-slow-reads must not be negative")
	}
	if o.StartupTimeout <= 0 {
		return fmt.Errorf("--startup-timeout must be positive")
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return fmt.Errorf("--log-format must be text or json, not %q", o.LogFormat)
	}
	return nil
}

// parseSize parses a byte size such as 512MiB, 4M or 1048576.
func parseSize(flag, s string) (int64, error) {
	v, err := humanize.ParseBytes(s)
	if err != nil || v == 0 || v > 1<<50 {
		return 0, fmt.Errorf("%s: %q is not a size such as 512MiB", flag, s)
	}
	return int64(v), nil
}

// checkEndpoint accepts an empty endpoint (the AWS chain decides) or an
// http(s) URL with a host.
func checkEndpoint(ep string) error {
	if ep == "" {
		return nil
	}
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(ep, " \t") {
		return fmt.Errorf("--endpoint %q is not a URL such as https://t3.storage.dev or http://127.0.0.1:9000", ep)
	}
	return nil
}

// parseMinFree parses --cache-min-free: a size or a percentage.
func parseMinFree(s string) (int64, float64, error) {
	if pct, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || v < 0 || v >= 100 || v != v {
			return 0, 0, fmt.Errorf("--cache-min-free: %q is not a percentage from 0%% to 99%%", s)
		}
		return 0, v, nil
	}
	if s == "0" {
		return 0, 0, nil
	}
	n, err := parseSize("--cache-min-free", s)
	if err != nil {
		return 0, 0, fmt.Errorf("--cache-min-free: %q is not a size (20GiB) or a percentage (5%%)", s)
	}
	return n, 0, nil
}

// parseMode parses octal permission bits such as 0644.
func parseMode(flag, s string) (os.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("%s: %q is not an octal mode between 0000 and 0777", flag, s)
	}
	return os.FileMode(v), nil
}
