package csi

import (
	"regexp"
	"strings"
	"testing"
)

// TestVolumeIDRoundTrip: every kind of volume renders as an id that
// parses back to the same volume; ids of other drivers, static volume
// handles and damaged ids do not parse.
func TestVolumeIDRoundTrip(t *testing.T) {
	for _, v := range []volume{
		{Bucket: "media", Prefix: "vols/recordings/"},
		{Bucket: "media", Prefix: "a/", Endpoint: "https://t3.storage.dev", Region: "auto"},
		{Bucket: "recordings", OwnBucket: true, Endpoint: "http://nas.local:9000", Region: "us-east-1", PathStyle: "true"},
		{Bucket: "my.dotted.bucket", Prefix: "x y/z/", PathStyle: "false"},
	} {
		id := v.volumeID()
		got, ok := parseVolumeID(id)
		if !ok || got != v {
			t.Errorf("parseVolumeID(%q) = %+v, %v; want %+v", id, got, ok, v)
		}
	}
	for _, id := range []string{
		"", "fake-vol-id", "my-static-pv", "media/vols/",
		"2p|media|a/|||",            // unknown version
		"1p|media||||",              // a prefix volume without a prefix
		"1b|media|a/|||",            // an own bucket with a prefix
		"1p|me|a/|||",               // bucket too short
		"1p|media|../|||",           // prefix escapes
		"1p|media|a/|||maybe",       // bad pathStyle
		"1p|media|a/||",             // five fields
		"1p|media|a/|x|y|true|more", // seven
	} {
		if v, ok := parseVolumeID(id); ok {
			t.Errorf("parseVolumeID(%q) = %+v, want no volume", id, v)
		}
	}
}

// TestFitPrefix: a name that fits is kept; a long one (csi-sanity's
// 128-byte name, a long PVC name) is cut and given a hash so that the id
// stays within 128 bytes and two long names with the same start stay
// apart; a prefix parameter too long for any id fails.
func TestFitPrefix(t *testing.T) {
	base := volume{Bucket: "csi-sanity", Endpoint: "http://127.0.0.1:41234", Region: "us-east-1", PathStyle: "true"}
	v, err := fitPrefix(base, "vols/", "pvc-short")
	if err != nil || v.Prefix != "vols/pvc-short/" {
		t.Fatalf("short name: %+v %v", v, err)
	}
	long1 := strings.Repeat("a", 120) + "-one"
	long2 := strings.Repeat("a", 120) + "-two"
	v1, err1 := fitPrefix(base, "vols/", long1)
	v2, err2 := fitPrefix(base, "vols/", long2)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	for _, v := range []volume{v1, v2} {
		if n := len(v.volumeID()); n > maxIDLen {
			t.Errorf("id %q is %d bytes", v.volumeID(), n)
		}
		if got, ok := parseVolumeID(v.volumeID()); !ok || got != v {
			t.Errorf("cut id %q does not round-trip", v.volumeID())
		}
		if !regexp.MustCompile(`^vols/a+-[0-9a-f]{8}/$`).MatchString(v.Prefix) {
			t.Errorf("cut prefix %q", v.Prefix)
		}
	}
	if v1.Prefix == v2.Prefix {
		t.Errorf("two long names share prefix %q", v1.Prefix)
	}
	if _, err := fitPrefix(base, strings.Repeat("p", 100)+"/", "x"); err == nil {
		t.Error("a 100-byte prefix parameter fitted in a 128-byte id")
	}
}

// TestBucketName: PVC names become valid S3 bucket names, lower case,
// no dots, 3 to 63 characters, cut with a hash when long.
func TestBucketName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	tests := []struct{ base, name, want string }{
		{"", "recordings", "recordings"},
		{"", "pvc-5f0c8a1e-3b2a-4c1d-9e8f-0a1b2c3d4e5f", "pvc-5f0c8a1e-3b2a-4c1d-9e8f-0a1b2c3d4e5f"},
		{"homelab", "Data.Set_1", "homelab-data-set-1"},
		{"", "--x--", ""},
		{"", "a", ""},
		{"", "sthree-x", "vsthree-x"},
		{"", "x-s3alias", "vx-s3alias"},
		{"", strings.Repeat("long", 20), ""},
	}
	for _, tt := range tests {
		got := bucketName(tt.base, tt.name)
		if !valid.MatchString(got) || strings.Contains(got, "--") {
			t.Errorf("bucketName(%q, %q) = %q: not a valid bucket name", tt.base, tt.name, got)
		}
		if tt.want != "" && got != tt.want {
			t.Errorf("bucketName(%q, %q) = %q, want %q", tt.base, tt.name, got, tt.want)
		}
	}
	if a, b := bucketName("", strings.Repeat("x", 70)+"1"), bucketName("", strings.Repeat("x", 70)+"2"); a == b {
		t.Errorf("two long names give one bucket %q", a)
	}
}

// TestParseCreateParams: the StorageClass parameters, what each error
// names, and Kubernetes' own keys ignored but for the PVC name.
func TestParseCreateParams(t *testing.T) {
	p, err := parseCreateParams(map[string]string{
		"bucket": "media", "prefix": "/vols", "endpoint": "https://t3.storage.dev", "region": "auto",
		"pathStyle": "False", "mountOptions": "uid=1000, cache_memory=256MiB",
		"csi.storage.k8s.io/pvc/name": "recordings", "csi.storage.k8s.io/pvc/namespace": "media",
		"csi.storage.k8s.io/pv/name": "pvc-123",
	})
	want := createParams{Bucket: "media", Prefix: "vols/", Endpoint: "https://t3.storage.dev", Region: "auto",
		PathStyle: "false", MountOptions: "cache-memory=256MiB,uid=1000", PVCName: "recordings"}
	if err != nil || p != want {
		t.Errorf("parseCreateParams = %+v, %v\nwant %+v", p, err, want)
	}
	v, err := p.volume("pvc-123")
	if err != nil || v.Prefix != "vols/recordings/" || v.Bucket != "media" {
		t.Errorf("volume of the PVC: %+v %v", v, err)
	}
	for _, tt := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{}, `"bucket" is required`},
		{map[string]string{"bucket": "media", "bukket": "x"}, `unknown parameter "bukket"`},
		{map[string]string{"bucket": "media", "pathStyle": "yes please"}, "not true or false"},
		{map[string]string{"bucket": "media", "newBucket": "true", "prefix": "x"}, "do not go together"},
		{map[string]string{"bucket": "media", "endpoint": "t3.storage.dev"}, "http:// or https://"},
		{map[string]string{"bucket": "media", "mountOptions": "log-file=/etc/passwd"}, "not allowed"},
		{map[string]string{"bucket": "media", "prefix": "a/../b"}, ".. component"},
		{map[string]string{"bucket": "x"}, "3 to 63"},
	} {
		if _, err := parseCreateParams(tt.params); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseCreateParams(%v) = %v, want an error with %q", tt.params, err, tt.want)
		}
	}
	p, err = parseCreateParams(map[string]string{"newBucket": "true"})
	if err != nil || !p.NewBucket {
		t.Errorf("newBucket without bucket: %+v %v", p, err)
	}
}

// TestParseMountOptions: the allow-list. Flags of mount's own spelling
// (underscores, a leading --, ro) are accepted; flags the volume
// attributes or the driver own (endpoint, log-file, profile, metrics-addr)
// and unknown ones are refused; a value flag needs a value; booleans take
// true or false.
func TestParseMountOptions(t *testing.T) {
	got, err := parseMountOptions("cache-memory=256MiB,uid=1000,write-back,cache-dir=/var/cache/x", "ro,noatime,--file_mode=0640,auto-restore")
	if err != nil {
		t.Fatal(err)
	}
	if s := formatMountOptions(got); s != "auto-restore,cache-dir=/var/cache/x,cache-memory=256MiB,file-mode=0640,read-only,uid=1000,write-back" {
		t.Errorf("parsed %q", s)
	}
	got, err = parseMountOptions("write-back,write-back=false,read-only=true")
	if err != nil || formatMountOptions(got) != "read-only" {
		t.Errorf("booleans: %q %v", formatMountOptions(got), err)
	}
	for _, bad := range []string{
		"endpoint=http://evil", "region=x", "path-style", "profile=prod", "log-file=/x", "metrics-addr=:9100",
		"debug-fuse", "no-such-flag", "uid", "cache-memory=", "write-back=maybe",
	} {
		if _, err := parseMountOptions(bad); err == nil {
			t.Errorf("parseMountOptions(%q) accepted", bad)
		}
	}
}
