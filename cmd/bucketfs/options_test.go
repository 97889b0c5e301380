package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	bfs "github.com/bucketfs/bucketfs/fs"
	"github.com/sirupsen/logrus"
)

// parse runs the command line args through the real command tree with a
// recorder in place of the mount, and returns the options the mount would
// have received (nil if it was not called) and the command's error.
func parse(t *testing.T, args ...string) (*mountOptions, error) {
	t.Helper()
	var got *mountOptions
	calls := 0
	root := newRootCmd(func(o *mountOptions) error {
		calls++
		cp := *o
		got = &cp
		return nil
	})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	if calls > 1 {
		t.Fatalf("mount ran %d times", calls)
	}
	if err != nil && got != nil {
		t.Fatalf("mount ran although the command failed with %v", err)
	}
	return got, err
}

// TestParsePositional checks the positional forms MOUNTPOINT,
// BUCKET MOUNTPOINT, BUCKET/PREFIX MOUNTPOINT and s3://BUCKET[/PREFIX]
// MOUNTPOINT: the bucket, the prefix normalised to end in one "/", and the
// mountpoint.
func TestParsePositional(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantBucket string
		wantPrefix string
		wantMnt    string
	}{
		{name: "mountpoint only: all buckets", args: []string{"/mnt/s3"}, wantMnt: "/mnt/s3"},
		{name: "bucket", args: []string{"my-bucket", "/mnt/b"}, wantBucket: "my-bucket", wantMnt: "/mnt/b"},
		{name: "bucket with a trailing slash", args: []string{"my-bucket/", "/mnt/b"}, wantBucket: "my-bucket", wantMnt: "/mnt/b"},
		{name: "bucket and prefix", args: []string{"bkt/PRE/FIX", "mnt"}, wantBucket: "bkt", wantPrefix: "PRE/FIX/", wantMnt: "mnt"},
		{name: "prefix with slashes around", args: []string{"bkt//PRE/FIX//", "mnt"}, wantBucket: "bkt", wantPrefix: "PRE/FIX/", wantMnt: "mnt"},
		{name: "s3 URL", args: []string{"s3://bkt", "/m"}, wantBucket: "bkt", wantMnt: "/m"},
		{name: "s3 URL with a prefix", args: []string{"s3://bkt/a/b/", "/m"}, wantBucket: "bkt", wantPrefix: "a/b/", wantMnt: "/m"},
		{name: "flags after the arguments", args: []string{"bkt", "/m", "--region", "auto"}, wantBucket: "bkt", wantMnt: "/m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parse(t, append([]string{"mount"}, tt.args...)...)
			if err != nil {
				t.Fatalf("parse %q: %v", tt.args, err)
			}
			if o == nil {
				t.Fatal("mount did not run")
			}
			if o.Bucket != tt.wantBucket || o.Prefix != tt.wantPrefix || o.Mountpoint != tt.wantMnt {
				t.Errorf("bucket %q prefix %q mountpoint %q, want %q %q %q", o.Bucket, o.Prefix, o.Mountpoint, tt.wantBucket, tt.wantPrefix, tt.wantMnt)
			}
		})
	}
}

// field is one option compared by name, so that adding options does not
// disturb these tests.
type field struct {
	name      string
	got, want any
}

func checkFields(t *testing.T, fields []field) {
	t.Helper()
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
}

// TestParseDefaults checks the value of each option when no flag is given.
func TestParseDefaults(t *testing.T) {
	o, err := parse(t, "mount", "bkt", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, []field{
		{"Endpoint", o.Endpoint, ""},
		{"Region", o.Region, ""},
		{"PathStyle", o.PathStyle, false},
		{"Profile", o.Profile, ""},
		{"UID", o.UID, uint32(os.Getuid())},
		{"GID", o.GID, uint32(os.Getgid())},
		{"FileMode", o.FileMode, os.FileMode(0o644)},
		{"DirMode", o.DirMode, os.FileMode(0o755)},
		{"AllowOther", o.AllowOther, false},
		{"MetadataTTL", o.MetadataTTL, 5 * time.Minute},
		{"NegativeTTL", o.NegativeTTL, 10 * time.Second},
		{"StartupTimeout", o.StartupTimeout, 10 * time.Second},
		{"LogLevel", o.LogLevel, "info"},
		{"LogFormat", o.LogFormat, "text"},
		{"DebugFUSE", o.DebugFUSE, false},
		{"ReadOnly", o.ReadOnly, false},
		{"WriteBack", o.WriteBack, false},
		{"StorageClass", o.StorageClass, ""},
		{"WritePartSize", o.WritePartSize, int64(8 << 20)},
		{"MaxUploads", o.MaxUploads, 8},
		{"UnmountWait", o.UnmountWait, 5 * time.Minute},
		{"TigrisRename", o.TigrisRename, "auto"},
		{"RenameDirLimit", o.RenameDirLimit, bfs.DefaultRenameDirLimit},
	})
}

// TestParseWriteFlags sets each write flag to a value other than its
// default and checks that it lands in its field, the storage class in
// upper case whatever case it was given in.
func TestParseWriteFlags(t *testing.T) {
	o, err := parse(t, "mount", "--cache-dir", "/var/cache/b", "--write-back",
		"--storage-class", "standard_ia", "--write-part-size", "16MiB", "--max-uploads", "3",
		"--unmount-wait", "30s", "--tigris-rename", "off", "--rename-dir-limit", "50",
		"bkt", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, []field{
		{"ReadOnly", o.ReadOnly, false},
		{"WriteBack", o.WriteBack, true},
		{"StorageClass", o.StorageClass, "STANDARD_IA"},
		{"WritePartSize", o.WritePartSize, int64(16 << 20)},
		{"MaxUploads", o.MaxUploads, 3},
		{"UnmountWait", o.UnmountWait, 30 * time.Second},
		{"TigrisRename", o.TigrisRename, "off"},
		{"RenameDirLimit", o.RenameDirLimit, 50},
	})
	o, err = parse(t, "mount", "--read-only", "--tigris-rename", "on", "--write-part-size", "5MiB", "--unmount-wait", "0", "bkt", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, []field{
		{"ReadOnly", o.ReadOnly, true},
		{"TigrisRename", o.TigrisRename, "on"},
		{"WritePartSize", o.WritePartSize, int64(5 << 20)},
		{"UnmountWait", o.UnmountWait, time.Duration(0)},
	})
	for _, class := range storageClasses {
		o, err := parse(t, "mount", "--storage-class", class, "bkt", "/mnt")
		if err != nil || o.StorageClass != class {
			t.Errorf("--storage-class %s: %v, class %q", class, err, o.StorageClass)
		}
	}
}

// TestParseFlags sets flags to values other than their defaults and checks
// that each lands in its field.
func TestParseFlags(t *testing.T) {
	o, err := parse(t, "mount",
		"--endpoint", "https://t3.storage.dev", "--region", "auto", "--path-style", "--profile", "work",
		"--uid", "1000", "--gid", "2000", "--file-mode", "0600", "--dir-mode", "700", "--allow-other",
		"--metadata-ttl", "30s", "--negative-metadata-ttl", "0", "--startup-timeout", "1m",
		"--log-level", "debug", "--log-format", "json", "--debug-fuse",
		"bkt/p", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, []field{
		{"Bucket", o.Bucket, "bkt"},
		{"Prefix", o.Prefix, "p/"},
		{"Mountpoint", o.Mountpoint, "/mnt"},
		{"Endpoint", o.Endpoint, "https://t3.storage.dev"},
		{"Region", o.Region, "auto"},
		{"PathStyle", o.PathStyle, true},
		{"Profile", o.Profile, "work"},
		{"UID", o.UID, uint32(1000)},
		{"GID", o.GID, uint32(2000)},
		{"FileMode", o.FileMode, os.FileMode(0o600)},
		{"DirMode", o.DirMode, os.FileMode(0o700)},
		{"AllowOther", o.AllowOther, true},
		{"MetadataTTL", o.MetadataTTL, 30 * time.Second},
		{"NegativeTTL", o.NegativeTTL, time.Duration(0)},
		{"StartupTimeout", o.StartupTimeout, time.Minute},
		{"LogLevel", o.LogLevel, "debug"},
		{"LogFormat", o.LogFormat, "json"},
		{"DebugFUSE", o.DebugFUSE, true},
	})
}

// TestParseErrors checks that malformed command lines fail with a message
// naming the problem, without mounting.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr []string // substrings of the error
	}{
		{name: "no arguments", args: []string{"mount"}, wantErr: []string{"arg"}},
		{name: "three arguments", args: []string{"mount", "a", "b", "c"}, wantErr: []string{"arg"}},
		{name: "empty bucket", args: []string{"mount", "/prefix", "/mnt"}, wantErr: []string{"bucket name missing", `"/prefix"`}},
		{name: "empty s3 URL", args: []string{"mount", "s3://", "/mnt"}, wantErr: []string{"bucket name missing"}},
		{name: "empty mountpoint", args: []string{"mount", "bkt", ""}, wantErr: []string{"mountpoint missing"}},
		{name: "file mode not octal", args: []string{"mount", "--file-mode", "0999", "b", "/m"}, wantErr: []string{"--file-mode", `"0999"`}},
		{name: "file mode a word", args: []string{"mount", "--file-mode", "rw-r--r--", "b", "/m"}, wantErr: []string{"--file-mode"}},
		{name: "file mode with high bits", args: []string{"mount", "--file-mode", "01777", "b", "/m"}, wantErr: []string{"--file-mode", "0777"}},
		{name: "dir mode empty", args: []string{"mount", "--dir-mode", "", "b", "/m"}, wantErr: []string{"--dir-mode"}},
		{name: "log format", args: []string{"mount", "--log-format", "yaml", "b", "/m"}, wantErr: []string{"--log-format", `"yaml"`}},
		{name: "negative metadata TTL", args: []string{"mount", "--metadata-ttl", "-1s", "b", "/m"}, wantErr: []string{"--metadata-ttl", "negative"}},
		{name: "negative negative TTL", args: []string{"mount", "--negative-metadata-ttl", "-5s", "b", "/m"}, wantErr: []string{"negative"}},
		{name: "zero startup timeout", args: []string{"mount", "--startup-timeout", "0", "b", "/m"}, wantErr: []string{"--startup-timeout", "positive"}},
		{name: "bad duration", args: []string{"mount", "--metadata-ttl", "five", "b", "/m"}, wantErr: []string{"metadata-ttl", "see 'bucketfs mount --help'"}},
		{name: "unknown flag", args: []string{"mount", "--bogus", "b", "/m"}, wantErr: []string{"unknown flag: --bogus", "see 'bucketfs mount --help'"}},
		{name: "uid not a number", args: []string{"mount", "--uid", "root", "b", "/m"}, wantErr: []string{"uid"}},
		{name: "unknown command", args: []string{"mnt", "b", "/m"}, wantErr: []string{"unknown command"}},
		{name: "endpoint with a space", args: []string{"mount", "--endpoint", "ht tp://x", "b", "/m"}, wantErr: []string{"--endpoint", "not a URL"}},
		{name: "endpoint without a scheme", args: []string{"mount", "--endpoint", "t3.storage.dev", "b", "/m"}, wantErr: []string{"--endpoint", "not a URL"}},
		{name: "endpoint ftp", args: []string{"mount", "--endpoint", "ftp://127.0.0.1:1", "b", "/m"}, wantErr: []string{"--endpoint"}},
		{name: "endpoint broken", args: []string{"mount", "--endpoint", "http://[::1", "b", "/m"}, wantErr: []string{"--endpoint"}},
		{name: "max retries negative", args: []string{"mount", "--max-retries", "-1", "b", "/m"}, wantErr: []string{"--max-retries"}},
		{name: "request timeout tiny", args: []string{"mount", "--request-timeout", "1ms", "b", "/m"}, wantErr: []string{"--request-timeout"}},
		{name: "cache size a word", args: []string{"mount", "--cache-dir", "/c", "--cache-size", "lots", "b", "/m"}, wantErr: []string{"--cache-size", `"lots"`}},
		{name: "cache size below 4 blocks", args: []string{"mount", "--cache-dir", "/c", "--cache-size", "8MiB", "b", "/m"}, wantErr: []string{"--cache-size", "4 blocks"}},
		{name: "block size over the default memory", args: []string{"mount", "--block-size", "128MiB", "b", "/m"}, wantErr: []string{"--cache-memory (512MiB) must hold at least 8 blocks of --block-size (128MiB)"}},
		{name: "memory below 8 blocks", args: []string{"mount", "--cache-memory", "31MiB", "b", "/m"}, wantErr: []string{"--cache-memory (31MiB)", "8 blocks"}},
		{name: "min free over 99%", args: []string{"mount", "--cache-min-free", "100%", "b", "/m"}, wantErr: []string{"--cache-min-free", "percentage"}},
		{name: "min free negative", args: []string{"mount", "--cache-min-free", "-5%", "b", "/m"}, wantErr: []string{"--cache-min-free"}},
		{name: "min free a word", args: []string{"mount", "--cache-min-free", "some", "b", "/m"}, wantErr: []string{"--cache-min-free", "size (20GiB) or a percentage"}},
		{name: "write-back without a cache dir", args: []string{"mount", "--write-back", "b", "/m"}, wantErr: []string{"--write-back needs --cache-dir"}},
		{name: "write-back and read-only", args: []string{"mount", "--cache-dir", "/c", "--write-back", "--read-only", "b", "/m"}, wantErr: []string{"--write-back and --read-only"}},
		{name: "storage class unknown", args: []string{"mount", "--storage-class", "COLD", "b", "/m"}, wantErr: []string{"--storage-class", `"COLD"`, "GLACIER_IR", "EXPRESS_ONEZONE"}},
		{name: "storage class empty after trimming", args: []string{"mount", "--storage-class", " ", "b", "/m"}, wantErr: []string{"--storage-class"}},
		{name: "write part size below 5MiB", args: []string{"mount", "--write-part-size", "4MiB", "b", "/m"}, wantErr: []string{"--write-part-size", "5MiB and 64MiB", "4MiB"}},
		{name: "write part size above 64MiB", args: []string{"mount", "--write-part-size", "65MiB", "b", "/m"}, wantErr: []string{"--write-part-size", "5MiB and 64MiB"}},
		{name: "write part size a word", args: []string{"mount", "--write-part-size", "big", "b", "/m"}, wantErr: []string{"--write-part-size", `"big"`}},
		{name: "max uploads zero", args: []string{"mount", "--max-uploads", "0", "b", "/m"}, wantErr: []string{"--max-uploads", "at least 1"}},
		{name: "unmount wait negative", args: []string{"mount", "--unmount-wait", "-1s", "b", "/m"}, wantErr: []string{"--unmount-wait", "negative"}},
		{name: "tigris rename yes", args: []string{"mount", "--tigris-rename", "yes", "b", "/m"}, wantErr: []string{"--tigris-rename", "auto, on or off", `"yes"`}},
		{name: "rename dir limit zero", args: []string{"mount", "--rename-dir-limit", "0", "b", "/m"}, wantErr: []string{"--rename-dir-limit", "at least 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parse(t, tt.args...)
			if err == nil {
				t.Fatalf("parse %q succeeded with %+v", tt.args, o)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestParseCacheFlags checks the disk cache flags and their defaults.
func TestParseCacheFlags(t *testing.T) {
	o, err := parse(t, "mount", "b", "/m")
	if err != nil {
		t.Fatal(err)
	}
	if o.CacheDir != "" || o.CacheSize != 10<<30 || o.CacheMinFreePercent != 5 || o.CacheMinFree != 0 {
		t.Errorf("defaults: dir %q size %d min free %d / %v%%", o.CacheDir, o.CacheSize, o.CacheMinFree, o.CacheMinFreePercent)
	}
	o, err = parse(t, "mount", "--cache-dir", "/var/cache/b", "--cache-size", "200GiB", "--cache-min-free", "20GiB", "b", "/m")
	if err != nil {
		t.Fatal(err)
	}
	if o.CacheDir != "/var/cache/b" || o.CacheSize != 200<<30 || o.CacheMinFree != 20<<30 || o.CacheMinFreePercent != 0 {
		t.Errorf("parsed: dir %q size %d min free %d / %v%%", o.CacheDir, o.CacheSize, o.CacheMinFree, o.CacheMinFreePercent)
	}
	o, err = parse(t, "mount", "--cache-min-free", "2.5%", "b", "/m")
	if err != nil || o.CacheMinFreePercent != 2.5 {
		t.Errorf("2.5%%: %v %+v", err, o)
	}
}

// TestVersion checks that the version command prints the build's version.
func TestVersion(t *testing.T) {
	root := newRootCmd(func(*mountOptions) error {
		t.Error("version mounted")
		return nil
	})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "bucketfs "+version+"\n" {
		t.Errorf("version printed %q", got)
	}
}

// TestParseMode checks octal permission parsing at its bounds.
func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    os.FileMode
		wantErr bool
	}{
		{in: "0644", want: 0o644},
		{in: "644", want: 0o644},
		{in: "0", want: 0},
		{in: "0777", want: 0o777},
		{in: "1000", wantErr: true},
		{in: "0o644", wantErr: true},
		{in: "8", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseMode("--file-mode", tt.in)
			if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
				t.Errorf("parseMode(%q) = %o, %v; want %o, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestNewLogger checks log level and format handling: a bad level is
// refused with the list of good ones, json selects the JSON formatter.
func TestNewLogger(t *testing.T) {
	tests := []struct {
		level, format string
		wantLevel     logrus.Level
		wantJSON      bool
		wantErr       bool
	}{
		{level: "info", format: "text", wantLevel: logrus.InfoLevel},
		{level: "debug", format: "json", wantLevel: logrus.DebugLevel, wantJSON: true},
		{level: "warn", format: "text", wantLevel: logrus.WarnLevel},
		{level: "error", format: "text", wantLevel: logrus.ErrorLevel},
		{level: "loud", format: "text", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			log, err := newLogger(&mountOptions{LogLevel: tt.level, LogFormat: tt.format})
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "--log-level") || !strings.Contains(err.Error(), `"loud"`) {
					t.Errorf("newLogger: %v, want an error naming --log-level and the value", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if log.GetLevel() != tt.wantLevel {
				t.Errorf("level %v, want %v", log.GetLevel(), tt.wantLevel)
			}
			if _, isJSON := log.Formatter.(*logrus.JSONFormatter); isJSON != tt.wantJSON {
				t.Errorf("formatter %T, want JSON %v", log.Formatter, tt.wantJSON)
			}
		})
	}
}

// TestOneLine checks that error messages are cut to their first line.
func TestOneLine(t *testing.T) {
	tests := map[string]string{
		"plain":                   "plain",
		"  padded \n":             "padded",
		"first\nsecond\nthird":    "first",
		"\n\nafter blank lines\n": "after blank lines",
	}
	for in, want := range tests {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
