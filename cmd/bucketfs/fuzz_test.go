package main

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseSize: any text is either a positive size no larger than 1 PiB or
// an error naming the flag; never a panic.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MiB", "4M", "1048576", "0", "-1", "1e30", "18446744073709551616", "1.5GiB", " 4 MiB", "MiB", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseSize("--cache-memory", s)
		if err != nil {
			if !strings.Contains(err.Error(), "--cache-memory") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q", err)
			}
			return
		}
		if v <= 0 || v > 1<<50 {
			t.Errorf("parseSize(%q) = %d", s, v)
		}
	})
}

// FuzzParseMinFree: a size, a percentage from 0 to 99, or an error.
func FuzzParseMinFree(f *testing.F) {
	for _, s := range []string{"5%", "0", "20GiB", "99.9%", "100%", "-1%", "NaN%", "%", "1e2%", "Inf%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, pct, err := parseMinFree(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q", err)
			}
			return
		}
		if n < 0 || pct < 0 || pct >= 100 || pct != pct || (n > 0 && pct > 0) {
			t.Errorf("parseMinFree(%q) = %d, %v", s, n, pct)
		}
	})
}

// FuzzMountCommandLine runs arbitrary arguments through the mount command:
// it either yields options that pass validation or fails with one line,
// never a panic.
func FuzzMountCommandLine(f *testing.F) {
	for _, s := range []string{
		"bkt\x00/mnt",
		"--cache-size\x0010GiB\x00--cache-dir\x00/c\x00bkt/p\x00/m",
		"--block-size\x000\x00b\x00/m",
		"s3://\x00/m",
		"--metadata-ttl\x00-1h\x00b\x00/m",
		"--max-retries\x00-3\x00b\x00/m",
		"--request-timeout\x001ns\x00b\x00/m",
		"--unknown\x00b\x00/m",
		"--write-back\x00b\x00/m",
		"--cache-dir\x00/c\x00--write-back\x00--read-only\x00b\x00/m",
		"--storage-class\x00glacier_ir\x00--write-part-size\x0064MiB\x00b\x00/m",
		"--storage-class\x00COLD\x00b\x00/m",
		"--write-part-size\x005000000\x00b\x00/m",
		"--max-uploads\x000\x00--unmount-wait\x00-1s\x00b\x00/m",
		"--tigris-rename\x00On\x00--rename-dir-limit\x00-5\x00b\x00/m",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		args := append([]string{"mount"}, strings.Split(joined, "\x00")...)
		for _, a := range args {
			if a == "--help" || a == "-h" || strings.HasPrefix(a, "--cpu-profile") {
				return // prints help, or writes a file
			}
		}
		o, err := parse(t, args...)
		if err != nil {
			if strings.Contains(oneLine(err.Error()), "\n") || err.Error() == "" {
				t.Errorf("error %q", err)
			}
			return
		}
		if o.Mountpoint == "" || o.BlockSize < 64<<10 || o.CacheMemory < 8*o.BlockSize || o.MaxRetries < 0 {
			t.Errorf("accepted options %+v", o)
		}
		if o.WritePartSize < 5<<20 || o.WritePartSize > 64<<20 || o.MaxUploads < 1 || o.UnmountWait < 0 || o.RenameDirLimit < 1 ||
			(o.WriteBack && (o.CacheDir == "" || o.ReadOnly)) ||
			(o.StorageClass != "" && !slices.Contains(storageClasses, o.StorageClass)) ||
			!slices.Contains([]string{"auto", "on", "off"}, o.TigrisRename) {
			t.Errorf("accepted write options %+v", o)
		}
	})
}
