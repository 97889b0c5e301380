package store

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
)

// ETags. S3 gives an object written in one request the hex MD5 of its
// bytes as ETag, and an object a multipart upload assembled the hex MD5 of
// the concatenated binary MD5s of its parts followed by "-" and the number
// of parts. Servers quote ETags ("...") in headers and XML, and not always
// consistently, so ETags are compared without their quotes.

// md5ETag is the quoted ETag S3 gives data written in one request.
func md5ETag(data []byte) string {
	sum := md5.Sum(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// multipartETag is the quoted ETag S3 gives the object that parts (in
// order) assemble into. It fails for a part ETag that is not a hex MD5
// (servers with encryption or their own ETag scheme): such an upload has
// no ETag to predict.
func multipartETag(parts []CompletedPart) (string, error) {
	if len(parts) == 0 {
		return "", fmt.Errorf("no parts")
	}
	h := md5.New()
	for _, p := range parts {
		sum, err := hex.DecodeString(unquote(p.ETag))
		if err != nil || len(sum) != md5.Size {
			return "", fmt.Errorf("part %d: ETag %q is not an MD5", p.Part, p.ETag)
		}
		h.Write(sum)
	}
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(h.Sum(nil)), len(parts)), nil
}

// sameETag compares two ETags without their quotes.
func sameETag(a, b string) bool {
	return a != "" && unquote(a) == unquote(b)
}

func unquote(etag string) string {
	return strings.TrimSuffix(strings.TrimPrefix(etag, `"`), `"`)
}
