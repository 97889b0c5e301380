package store

// Tigris inlines small objects' content in ListObjectsV2 responses when
// the request carries X-Tigris-List-Content: true: each <Contents> element
// then has a <Data> element holding the object's bytes in standard base64
// (as tigrisfs reads it, core/backend_s3.go). The SDK's deserializer does
// not know the element, so the listing's raw body is kept as it arrives
// and read a second time for it.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// HeaderListContent asks Tigris to inline small objects in listings.
const HeaderListContent = "X-Tigris-List-Content"

// withListContent makes one ListObjectsV2 call ask for inline content and
// keep the response body it received in *raw.
func withListContent(raw *[]byte) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, smithyhttp.AddHeaderValue(HeaderListContent, "true"), func(stack *middleware.Stack) error {
			// After: next to the transport, so the body is read here
			// before the SDK's deserializer reads the copy.
			return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("bucketfsKeepListBody",
				func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleDeserialize(ctx, in)
					if err != nil {
						return out, md, err
					}
					if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp != nil && resp.Body != nil && resp.StatusCode/100 == 2 {
						b, rerr := io.ReadAll(resp.Body)
						resp.Body.Close()
						resp.Body = io.NopCloser(bytes.NewReader(b))
						if rerr != nil {
							return out, md, rerr
						}
						*raw = b
					}
					return out, md, err
				}), middleware.After)
		})
	}
}

// inlined is one listed object's inline content, as listed.
type inlined struct {
	data []byte
}

// inlineContent returns the inline content of a ListObjectsV2 body by key
// as listed (still URL-encoded when the listing is). Content that does not
// decode is left out; a body that does not parse gives nothing.
func inlineContent(body []byte) map[string]inlined {
	var res struct {
		Contents []struct {
			Key  string
			Data *string
		}
	}
	if xml.Unmarshal(body, &res) != nil {
		return nil
	}
	out := map[string]inlined{}
	for _, c := range res.Contents {
		if c.Data == nil {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(*c.Data)
		if err != nil {
			continue
		}
		out[c.Key] = inlined{data: b}
	}
	return out
}

// checkedContent returns c's bytes if they are o's: as many as o.Size,
// and with o.ETag as MD5 when o.ETag is a plain MD5. Anything else
// (another size, a multipart or opaque ETag that cannot be checked) gives
// nil, and the object is read with GETs as usual.
func checkedContent(c inlined, o Object) []byte {
	if int64(len(c.data)) != o.Size {
		return nil
	}
	want, err := hex.DecodeString(unquote(o.ETag))
	if err != nil || len(want) != md5.Size {
		return nil
	}
	sum := md5.Sum(c.data)
	if !bytes.Equal(sum[:], want) {
		return nil
	}
	if c.data == nil {
		return []byte{}
	}
	return c.data
}
