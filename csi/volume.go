package csi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// volume is where a volume's files live and how to reach the store.
type volume struct {
	Bucket string
	// Prefix is "" (the whole bucket) or a key prefix ending in "/".
	Prefix string
	// OwnBucket: the controller created the bucket for this volume, and
	// DeleteVolume removes the bucket itself.
	OwnBucket bool
	// Endpoint and Region are empty when they come from the secret or the
	// AWS chain.
	Endpoint, Region string
	// PathStyle is "true", "false" or "" (unset: virtual-hosted URLs).
	PathStyle string
}

// Volume ids of dynamically provisioned volumes.
//
// DeleteVolume gets only the volume id and the secrets, never the
// StorageClass parameters or the volume context, so the id carries what
// finds the volume again: its bucket and prefix, whether the bucket is
// the volume's own, and the endpoint, region and URL style given as
// parameters (those given in the secret come from the secret again).
// Six fields joined by '|', which neither bucket names nor URLs contain
// and prefixes are refused with:
//
//	1p|media|volumes/recordings/|https://t3.storage.dev|auto|
//	1b|recordings||http://nas.local:9000|us-east-1|true
//
// "1" is the format's version; "p" a prefix in a shared bucket, "b" a
// bucket of its own. The CSI spec limits ids to 128 bytes; CreateVolume
// shortens the name part of the prefix to fit.
const (
	idVersion    = "1"
	idPrefixMode = idVersion + "p"
	idBucketMode = idVersion + "b"
	idSep        = "|"
	maxIDLen     = 128
)

// volumeID renders v as a volume id.
func (v volume) volumeID() string {
	mode := idPrefixMode
	if v.OwnBucket {
		mode = idBucketMode
	}
	return strings.Join([]string{mode, v.Bucket, v.Prefix, v.Endpoint, v.Region, v.PathStyle}, idSep)
}

// parseVolumeID decodes an id volumeID made. ok is false for any other
// string: a static volume's handle, or an id of no volume of ours.
func parseVolumeID(id string) (v volume, ok bool) {
	f := strings.Split(id, idSep)
	if len(f) != 6 || (f[0] != idPrefixMode && f[0] != idBucketMode) {
		return volume{}, false
	}
	v = volume{Bucket: f[1], Prefix: f[2], OwnBucket: f[0] == idBucketMode, Endpoint: f[3], Region: f[4], PathStyle: f[5]}
	if checkBucketName(v.Bucket) != nil || checkPrefix(v.Prefix) != nil || (v.PathStyle != "" && v.PathStyle != "true" && v.PathStyle != "false") {
		return volume{}, false
	}
	if v.OwnBucket != (v.Prefix == "") {
		return volume{}, false // a prefix volume always has a prefix; an own bucket none
	}
	return v, true
}

// source is the bucketfs mount source: "s3://bucket" or
// "s3://bucket/prefix" (the s3:// form is never taken for a command name
// by the mount helper).
func (v volume) source() string {
	return "s3://" + v.Bucket + "/" + strings.TrimSuffix(v.Prefix, "/")
}

// checkBucketName accepts what S3 accepts as a bucket name in a path or
// host (3 to 63 lower-case letters, digits, dots and hyphens, starting and
// ending with a letter or digit), loosely enough for older buckets with
// upper case or underscores, which some servers still hold.
func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 255 {
		return fmt.Errorf("bucket name %q: must be 3 to 63 characters (255 for older buckets)", b)
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return fmt.Errorf("bucket name %q: %q is not allowed", b, c)
		}
	}
	return nil
}

// normalizePrefix turns a prefix as written ("a/b", "/a/b/", "") into the
// stored form ("a/b/" or "").
func normalizePrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	p += "/"
	return p, checkPrefix(p)
}

// checkPrefix refuses a prefix that cannot be a directory of a mount: an
// empty, "." or ".." component, a control character, or the id separator.
func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if !strings.HasSuffix(p, "/") || strings.HasPrefix(p, "/") {
		return fmt.Errorf("prefix %q: must not start with / and must end with /", p)
	}
	for _, part := range strings.Split(strings.TrimSuffix(p, "/"), "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("prefix %q: empty, . or .. component", p)
		}
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f || string(c) == idSep {
			return fmt.Errorf("prefix %q: character %q is not allowed", p, c)
		}
	}
	return nil
}

// parseBool reads a boolean parameter: "true"/"false" in any case, or ""
// (unset).
func parseBool(name, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("%s: %q is not true or false", name, s)
	}
	return strconv.FormatBool(b), nil
}

// checkEndpoint refuses an endpoint that is not an http(s) URL or would
// break the volume id.
func checkEndpoint(e string) error {
	if e == "" {
		return nil
	}
	if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
		return fmt.Errorf("endpoint %q: must start with http:// or https://", e)
	}
	if strings.ContainsAny(e, idSep+" \t\r\n") {
		return fmt.Errorf("endpoint %q: must not contain %q or spaces", e, idSep)
	}
	return nil
}

// checkRegion refuses a region that would break the volume id.
func checkRegion(r string) error {
	if strings.ContainsAny(r, idSep+" \t\r\n/") {
		return fmt.Errorf("region %q: not a region name", r)
	}
	return nil
}

// shortHash is 8 hex digits of the SHA-256 of s: what keeps shortened
// names distinct.
func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

// keyName turns a volume or PVC name into one path component of a key:
// letters, digits, '.', '_' and '-' kept, anything else '-'. A name that
// would be "." or ".." (never a Kubernetes name) gets a hash.
func keyName(name string) string {
	var b strings.Builder
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	s := b.String()
	if s == "" || s == "." || s == ".." {
		s = "v-" + shortHash(name)
	}
	return s
}

// fitPrefix returns the volume with Prefix base+name+"/" where name is cut
// (and made distinct with a hash of the whole name) as far as needed for
// the volume id to fit in maxIDLen bytes, or an error when even a hash
// alone does not fit.
func fitPrefix(v volume, base, name string) (volume, error) {
	v.Prefix = base + name + "/"
	if len(v.volumeID()) <= maxIDLen {
		return v, nil
	}
	h := shortHash(name)
	v.Prefix = base + h + "/"
	room := maxIDLen - len(v.volumeID()) // bytes left for name[:k]+"-"
	if room < 0 {
		return volume{}, fmt.Errorf("the volume id (bucket, prefix, endpoint, region) would be longer than %d bytes: shorten the prefix parameter, or give endpoint and region in the secret instead", maxIDLen)
	}
	if room >= 2 {
		cut := strings.TrimRight(name[:min(len(name), room-1)], ".-_")
		if cut != "" {
			v.Prefix = base + cut + "-" + h + "/"
		}
	}
	return v, nil
}

// bucketName makes an S3 bucket name from base (the StorageClass's bucket
// parameter, may be empty) and a PVC or volume name: lower case letters,
// digits and single hyphens, starting and ending with a letter or digit,
// 3 to 63 characters; a name cut to fit ends in a hash of the whole. No
// dots (they break TLS for virtual-hosted URLs), so none of S3's reserved
// prefixes and suffixes (xn--, --ol-s3, --x-s3, -s3alias...) can form but
// "sthree-" and "amzn-s3-demo-", which get a "v" in front.
func bucketName(base, name string) string {
	full := name
	if base != "" {
		full = base + "-" + name
	}
	var b strings.Builder
	dash := true // no leading hyphen
	for _, c := range strings.ToLower(full) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b.WriteRune(c)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if strings.HasPrefix(s, "sthree-") || strings.HasPrefix(s, "amzn-s3-demo-") || strings.HasSuffix(s, "-s3alias") {
		s = "v" + s
	}
	switch {
	case len(s) > 63:
		s = strings.TrimRight(s[:54], "-") + "-" + shortHash(full)
	case len(s) < 3:
		s = strings.TrimLeft(s+"-"+shortHash(full), "-")
	}
	return s
}
